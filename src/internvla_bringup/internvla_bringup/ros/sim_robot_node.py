"""The simulated robot node: a MuJoCo robot at a tabletop that behaves like a real one on ROS 2.

A thin wrapper around ``internvla_bringup.sim.SimEnv``: it declares and validates parameters,
steps physics in real time, renders the cameras, and turns messages into servo targets. Run with
``ros2 run internvla_bringup sim_robot_node --ros-args -p robot:=franka -p seed:=3``.

Published (sensor-data QoS unless noted):
- ``/joint_states`` sensor_msgs/JointState at ``joint_state_rate_hz``: every robot joint (arm,
  gripper, held joints), position, velocity, effort (actuator force).
- ``/<camera>/image_raw`` sensor_msgs/Image rgb8, ``/<camera>/depth`` 32FC1 metres along the
  optical axis, ``/<camera>/camera_info`` at ``camera_rate_hz``; all three share one stamp and the
  frame ``<camera>_optical_frame``. Cameras: ``scene_camera`` (all robots), ``wrist_camera`` (franka).
- ``/sim/task_status`` std_msgs/String (reliable), JSON at ``status_rate_hz`` and whenever success
  changes: robot, seed, task, success (latched), success_now, step (physics ticks since reset),
  sim_time, commands (joint commands accepted since reset), dropped (messages rejected).

Subscribed (reliable):
- ``/joint_command`` trajectory_msgs/JointTrajectory: any subset of the robot's joints; points
  are followed by time_from_start (from receipt), a single untimed point is a move-to target.
  Positions outside the joint limits, unknown joints, non-finite values or a header stamp older
  than 1 s reject the whole message. Without commands the robot holds the last target.
- ``/internvla/gripper_command`` std_msgs/Float64: opening fraction, 0 closed, 1 open.
- ``/instruction`` std_msgs/String: when it names a task of the family, success is judged for it
  from then on (and after resets); other text is ignored with a warning.

Service: ``~/reset`` std_srvs/Trigger: a new episode with seed + 1 (layout, and task if none was
given); the response message is the new status JSON.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.duration import Duration
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from internvla_bringup.sim.assets import ROBOT_NAMES
from internvla_bringup.sim.env import SimEnv
from internvla_bringup.sim.servo import TrajectoryPoint
from internvla_bringup.sim.tasks import parse_instruction
from internvla_policy.ros.shutdown import interruptible

MAX_CATCH_UP_S = 0.1  # physics never runs more than this behind in one tick (after a stall it slips)
MAX_COMMAND_AGE_S = 1.0
LIMIT_TOLERANCE = 1e-3  # rad or m beyond a joint limit that is still accepted (and clipped)
WARN_PERIOD_S = 5.0


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter."""


@dataclass(frozen=True)
class _Param:
    name: str
    default: object
    description: str
    bounds: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None


_PARAMS = (
    _Param("robot", "franka", "simulated robot", choices=ROBOT_NAMES),
    _Param("task", "", "instruction to judge; '' or 'random' draws one of the family from the seed"),
    _Param(
        "seed", 0, "seed of the first episode: object layout, and task when none is given", (0, 2**31 - 1)
    ),
    _Param("physics_rate_hz", 500.0, "physics integration rate, Hz", (50.0, 5000.0)),
    _Param("joint_state_rate_hz", 100.0, "physics stepping and /joint_states rate, Hz", (1.0, 1000.0)),
    _Param("camera_rate_hz", 10.0, "camera image, depth and camera_info rate, Hz", (0.5, 60.0)),
    _Param("status_rate_hz", 2.0, "task status rate, Hz", (0.1, 50.0)),
    _Param("image_width", 224, "camera image width, pixels", (16, 2048)),
    _Param("image_height", 224, "camera image height, pixels", (16, 2048)),
    _Param("publish_depth", True, "publish <camera>/depth next to each image"),
)


def _descriptor(param: _Param) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=param.description, read_only=True)
    if param.choices:
        descriptor.additional_constraints = f"one of: {', '.join(param.choices)}"
    if param.bounds is not None and isinstance(param.default, int):
        descriptor.integer_range = [
            IntegerRange(from_value=param.bounds[0], to_value=param.bounds[1], step=1)
        ]
    elif param.bounds is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=param.bounds[0], to_value=param.bounds[1], step=0.0)
        ]
    return descriptor


def _validate(param: _Param, value: object) -> object:
    """The value converted to the parameter's type, or a ParameterError naming the parameter."""
    expected = type(param.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # YAML 10 for 10.0
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ParameterError(f"parameter '{param.name}' must be {expected.__name__}, got {value!r}")
    if param.choices and value not in param.choices:
        raise ParameterError(
            f"parameter '{param.name}' must be one of {', '.join(param.choices)}, got {value!r}"
        )
    if param.bounds and not (param.bounds[0] <= value <= param.bounds[1]):
        raise ParameterError(f"parameter '{param.name}' must be within {list(param.bounds)}, got {value!r}")
    return value


class SimRobotNode(Node):
    """Publishes the simulated robot's sensors and follows joint and gripper commands."""

    def __init__(self) -> None:
        super().__init__("sim_robot")
        self.settings = {p.name: self._declare(p) for p in _PARAMS}
        task = self.settings["task"].strip()
        self._fixed_task = None if task.lower() in ("", "random") else task
        try:
            self.env = SimEnv(
                self.settings["robot"],
                self.settings["image_width"],
                self.settings["image_height"],
                self.settings["physics_rate_hz"],
                self.settings["seed"],
                self._fixed_task,
            )
        except ValueError as exc:
            raise ParameterError(f"parameter 'task': {exc}") from exc
        self._joint_limits = {name: self.env.model.joint(name).range.copy() for name in self.env.joint_names}
        self._commands = 0
        self._dropped = 0
        self._last_success = False
        self._sim_debt = 0.0
        self._last_tick = time.monotonic()

        self._joint_pub = self.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self._camera_pubs = {
            cam: (
                self.create_publisher(Image, f"/{cam}/image_raw", qos_profile_sensor_data),
                self.create_publisher(Image, f"/{cam}/depth", qos_profile_sensor_data),
                self.create_publisher(CameraInfo, f"/{cam}/camera_info", qos_profile_sensor_data),
            )
            for cam in self.env.camera_names
        }
        self._status_pub = self.create_publisher(String, "/sim/task_status", QoSProfile(depth=10))
        reliable = QoSProfile(depth=10)
        self.create_subscription(JointTrajectory, "/joint_command", self._on_joint_command, reliable)
        self.create_subscription(Float64, "/internvla/gripper_command", self._on_gripper_command, reliable)
        self.create_subscription(String, "/instruction", self._on_instruction, reliable)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_timer(1.0 / self.settings["joint_state_rate_hz"], self._on_physics_tick)
        self.create_timer(1.0 / self.settings["camera_rate_hz"], self._on_camera_tick)
        self.create_timer(1.0 / self.settings["status_rate_hz"], self._publish_status)
        self.get_logger().info(
            f"simulated {self.settings['robot']} ready: seed {self.env.seed}, "
            f"task '{self.env.task.instruction}', cameras {list(self.env.camera_names)}"
        )

    def _declare(self, param: _Param) -> object:
        descriptor = _descriptor(param)
        descriptor.dynamic_typing = True  # accept 10 for 10.0 and report type errors ourselves
        try:
            value = self.declare_parameter(param.name, param.default, descriptor).value
        except InvalidParameterValueException as exc:
            raise ParameterError(f"parameter '{param.name}': {exc}") from exc
        return _validate(param, value)

    # ----------------------------------------------------------------- timers
    def _on_physics_tick(self) -> None:
        now = time.monotonic()
        self._sim_debt += min(now - self._last_tick, MAX_CATCH_UP_S)
        self._last_tick = now
        dt = self.env.model.opt.timestep
        steps = math.floor(self._sim_debt / dt)
        if steps > 0:
            self._sim_debt -= steps * dt
            status = self.env.step(steps * dt)
            if status.success != self._last_success:
                self._publish_status()
        state = self.env.joint_state()
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = list(state.names)
        msg.position = state.position.tolist()
        msg.velocity = state.velocity.tolist()
        msg.effort = state.effort.tolist()
        self._joint_pub.publish(msg)

    def _on_camera_tick(self) -> None:
        stamp = self.get_clock().now().to_msg()
        for cam, (image_pub, depth_pub, info_pub) in self._camera_pubs.items():
            frame = f"{cam}_optical_frame"
            image_pub.publish(_image(self.env.render_rgb(cam), "rgb8", stamp, frame))
            if self.settings["publish_depth"]:
                depth_pub.publish(_image(self.env.render_depth(cam), "32FC1", stamp, frame))
            info_pub.publish(_camera_info(self.env, cam, stamp, frame))

    def _publish_status(self) -> None:
        status = self.env.status()
        self._last_success = status.success
        payload = {**status.to_json(), "commands": self._commands, "dropped": self._dropped}
        self._status_pub.publish(String(data=json.dumps(payload)))

    # --------------------------------------------------------------- commands
    def _reject(self, reason: str) -> None:
        self._dropped += 1
        self.get_logger().warning(f"command dropped: {reason}", throttle_duration_sec=WARN_PERIOD_S)

    def _on_joint_command(self, msg: JointTrajectory) -> None:
        names = list(msg.joint_names)
        unknown = [n for n in names if n not in self._joint_limits]
        if not names or not msg.points or unknown or len(set(names)) != len(names):
            self._reject(f"need unique known joint names and at least one point (unknown: {unknown})")
            return
        stamp = Time.from_msg(msg.header.stamp)
        if stamp.nanoseconds > 0 and self.get_clock().now() - stamp > Duration(seconds=MAX_COMMAND_AGE_S):
            self._reject(f"trajectory stamped more than {MAX_COMMAND_AGE_S} s ago")
            return
        lower = np.array([self._joint_limits[n][0] for n in names]) - LIMIT_TOLERANCE
        upper = np.array([self._joint_limits[n][1] for n in names]) + LIMIT_TOLERANCE
        points = []
        for point in msg.points:
            positions = np.asarray(point.positions, dtype=float)
            if positions.shape != (len(names),) or not np.all(np.isfinite(positions)):
                self._reject("each point needs one finite position per joint")
                return
            bad = (positions < lower) | (positions > upper)
            if np.any(bad):
                outside = [n for n, out in zip(names, bad, strict=True) if out]
                self._reject(f"positions outside the joint limits for {outside}")
                return
            seconds = point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
            points.append(TrajectoryPoint(seconds, positions))
        self.env.command_trajectory(names, points)
        self._commands += 1

    def _on_gripper_command(self, msg: Float64) -> None:
        if not (math.isfinite(msg.data) and -0.01 <= msg.data <= 1.01):
            self._reject(f"gripper opening {msg.data} is not a fraction in [0, 1]")
            return
        self.env.command_gripper(msg.data)

    def _on_instruction(self, msg: String) -> None:
        if parse_instruction(msg.data) is None:
            self.get_logger().warning(
                f"'{msg.data}' is not in the simulated task family; success stays judged for "
                f"'{self.env.task.instruction}'",
                throttle_duration_sec=WARN_PERIOD_S,
            )
            return
        self._fixed_task = msg.data
        self.env.set_task(msg.data)
        self.get_logger().info(f"judging task '{self.env.task.instruction}'")
        self._publish_status()

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.env.reset(self.env.seed + 1, self._fixed_task)
        self._commands = 0
        self._sim_debt = 0.0
        self._last_tick = time.monotonic()
        self._publish_status()
        response.success = True
        response.message = json.dumps(self.env.status().to_json())
        self.get_logger().info(f"reset: seed {self.env.seed}, task '{self.env.task.instruction}'")
        return response

    def destroy_node(self) -> None:
        if hasattr(self, "env"):  # absent when a parameter was rejected before the simulator started
            self.env.close()
        super().destroy_node()


def _image(array: np.ndarray, encoding: str, stamp, frame: str) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame
    msg.height, msg.width = array.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big")
    msg.step = array.strides[0]
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def _camera_info(env: SimEnv, camera: str, stamp, frame: str) -> CameraInfo:
    k = env.intrinsics(camera)
    msg = CameraInfo()
    msg.header.stamp = stamp
    msg.header.frame_id = frame
    msg.width, msg.height = k.width, k.height
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = k.matrix.reshape(-1).tolist()
    msg.r = np.eye(3).reshape(-1).tolist()
    msg.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``sim_robot_node`` console script."""
    try:
        with rclpy.init(args=args):
            node = SimRobotNode()
            try:
                with interruptible():
                    rclpy.spin(node)
            finally:
                node.destroy_node()
    except ParameterError as exc:
        print(f"sim_robot_node: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while the scene was still being built
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
