"""The simulated robot node over real DDS: sensor rates, commands move the arm, silence holds it.

One node process (simulated Franka, seed 0) serves the module; this process is the probe that
plays the policy: it listens to the sensors and publishes joint trajectories and gripper commands.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

ARM = tuple(f"panda_joint{i}" for i in range(1, 8))
JOINT_RATE_HZ, CAMERA_RATE_HZ = 100.0, 10.0
STARTUP_TIMEOUT_S = 60.0


class Probe(Node):
    """Records every message of the simulated robot with its arrival time."""

    def __init__(self, context: rclpy.Context) -> None:
        super().__init__("sim_robot_probe", context=context)
        self.received: dict[str, list[tuple[float, object]]] = defaultdict(list)
        topics = {"/joint_states": JointState, "/sim/task_status": String}
        for cam in ("scene_camera", "wrist_camera"):
            topics |= {f"/{cam}/image_raw": Image, f"/{cam}/depth": Image, f"/{cam}/camera_info": CameraInfo}
        for topic, kind in topics.items():
            qos = QoSProfile(depth=10) if topic == "/sim/task_status" else qos_profile_sensor_data
            self.create_subscription(kind, topic, self._recorder(topic), qos)
        self.trajectory = self.create_publisher(JointTrajectory, "/joint_command", QoSProfile(depth=10))
        self.gripper = self.create_publisher(Float64, "/internvla/gripper_command", QoSProfile(depth=10))
        self.instruction = self.create_publisher(String, "/instruction", QoSProfile(depth=10))
        self.reset = self.create_client(Trigger, "/sim_robot/reset")

    def _recorder(self, topic: str) -> Callable[[object], None]:
        return lambda msg: self.received[topic].append((time.monotonic(), msg))

    def latest(self, topic: str):
        return self.received[topic][-1][1]

    def arm(self) -> np.ndarray:
        msg = self.latest("/joint_states")
        index = {name: i for i, name in enumerate(msg.name)}
        return np.array([msg.position[index[j]] for j in ARM])

    def status(self) -> dict:
        return json.loads(self.latest("/sim/task_status").data)


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Probe, SingleThreadedExecutor]]:
    log = tmp_path_factory.mktemp("sim_robot") / "sim_robot_node.log"
    command = [
        sys.executable, "-m", "internvla_bringup.ros.sim_robot_node", "--ros-args",
        "-p", "robot:=franka", "-p", "seed:=0", "-p", "status_rate_hz:=5.0",
        "-p", f"joint_state_rate_hz:={JOINT_RATE_HZ}", "-p", f"camera_rate_hz:={CAMERA_RATE_HZ}",
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Probe(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        spin_until(
            executor, lambda: len(node.received["/scene_camera/image_raw"]) > 2, STARTUP_TIMEOUT_S, log
        )
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        process.terminate()
        process.wait(timeout=10)


def spin_until(
    executor: SingleThreadedExecutor, done: Callable[[], bool], timeout: float, log: Path | None = None
):
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            detail = log.read_text()[-2000:] if log is not None else ""
            raise TimeoutError(f"condition not met within {timeout} s\n{detail}")
        executor.spin_once(timeout_sec=0.05)


def spin_for(executor: SingleThreadedExecutor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)


def rate(samples: list[tuple[float, object]], since: float) -> float:
    times = [t for t, _ in samples if t >= since]
    return (len(times) - 1) / (times[-1] - times[0])


def send_trajectory(node: Probe, names: tuple[str, ...], positions: np.ndarray, seconds: float = 0.0) -> None:
    msg = JointTrajectory()
    msg.joint_names = list(names)
    point = JointTrajectoryPoint(positions=[float(p) for p in positions])
    point.time_from_start.sec, point.time_from_start.nanosec = int(seconds), int(seconds % 1 * 1e9)
    msg.points = [point]
    node.trajectory.publish(msg)


def test_sensors_arrive_at_their_rates(probe) -> None:
    node, executor = probe
    since = time.monotonic()
    spin_for(executor, 3.0)
    assert rate(node.received["/joint_states"], since) == pytest.approx(JOINT_RATE_HZ, rel=0.3)
    for cam in ("scene_camera", "wrist_camera"):
        assert rate(node.received[f"/{cam}/image_raw"], since) == pytest.approx(CAMERA_RATE_HZ, rel=0.3)
        image, depth = node.latest(f"/{cam}/image_raw"), node.latest(f"/{cam}/depth")
        info = node.latest(f"/{cam}/camera_info")
        assert (image.encoding, image.width, image.height, image.step) == ("rgb8", 224, 224, 672)
        assert (depth.encoding, depth.step) == ("32FC1", 896)
        assert (
            image.header.frame_id == depth.header.frame_id == info.header.frame_id == f"{cam}_optical_frame"
        )
        pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(224, 224, 3)
        metres = np.frombuffer(bytes(depth.data), np.float32).reshape(224, 224)
        assert pixels.std() > 20 and 0.02 < np.nanmin(metres) < 3.0
        assert info.k[2] == pytest.approx(111.5) and info.k[0] == info.k[4] > 0
    stamps = {  # all but the newest image, whose camera_info may still be in flight
        (m.header.stamp.sec, m.header.stamp.nanosec) for _, m in node.received["/scene_camera/image_raw"][:-1]
    }
    info_stamps = {
        (m.header.stamp.sec, m.header.stamp.nanosec) for _, m in node.received["/scene_camera/camera_info"]
    }
    assert stamps <= info_stamps  # each image has the camera_info of the same instant
    joints = node.latest("/joint_states")
    assert tuple(joints.name[:7]) == ARM and len(joints.position) == len(joints.effort) == 9
    status = node.status()
    assert (
        status["robot"] == "franka" and status["seed"] == 0 and status["task"] and status["success"] is False
    )


def test_trajectory_moves_the_arm_then_it_holds(probe) -> None:
    node, executor = probe
    start = node.arm()
    target = start + np.array([0.3, -0.2, 0.0, 0.2, 0.0, 0.1, -0.3])
    send_trajectory(node, ARM, target, seconds=0.5)
    since = time.monotonic()
    spin_until(executor, lambda: np.abs(node.arm() - target).max() < 0.01, 10.0)
    velocity = np.array([m.velocity[:7] for t, m in node.received["/joint_states"] if t >= since])
    limits = np.array([2.175] * 4 + [2.61] * 3)  # the Panda's joint velocity limits
    assert np.all(np.abs(velocity).max(axis=0) < limits * 1.1)
    assert np.abs(velocity[:, 0]).max() > 0.3  # it really moved, at a visible pace
    assert node.status()["commands"] >= 1
    # No further command: the robot settles on the last target and holds it.
    spin_for(executor, 1.0)
    held = node.arm()
    assert np.abs(held - target).max() < 2e-3
    spin_for(executor, 1.5)
    assert np.abs(node.arm() - held).max() < 1e-3
    send_trajectory(node, ARM, start, seconds=0.5)
    spin_until(executor, lambda: np.abs(node.arm() - start).max() < 0.01, 10.0)


def test_a_policy_like_command_stream_is_tracked(probe) -> None:
    """Like the policy node: every 0.1 s one trajectory point 0.1 s ahead plus a gripper command."""
    node, executor = probe
    start = node.arm()
    for tick in range(1, 21):
        send_trajectory(node, ARM, start + np.array([0.02 * tick, 0, 0, 0, 0, 0, 0]), seconds=0.1)
        node.gripper.publish(Float64(data=1.0))
        spin_for(executor, 0.1)
    spin_for(executor, 0.5)
    assert node.arm()[0] - start[0] == pytest.approx(0.4, abs=0.01)
    assert np.abs(node.arm()[1:] - start[1:]).max() < 2e-3
    send_trajectory(node, ARM, start, seconds=0.5)
    spin_until(executor, lambda: np.abs(node.arm() - start).max() < 0.01, 10.0)


def test_bad_commands_are_dropped_and_nothing_moves(probe) -> None:
    node, executor = probe
    spin_for(executor, 0.3)
    before, dropped = node.arm(), node.status()["dropped"]
    send_trajectory(node, ARM, before + np.array([5.0, 0, 0, 0, 0, 0, 0]))  # beyond the joint 1 limit
    send_trajectory(node, ("panda_joint1", "elbow"), [0.1, 0.2])  # unknown joint
    send_trajectory(node, ARM, np.full(7, np.nan))
    node.gripper.publish(Float64(data=float("nan")))
    spin_for(executor, 1.0)
    assert node.status()["dropped"] == dropped + 4
    assert np.abs(node.arm() - before).max() < 2e-3


def test_gripper_command_closes_the_fingers(probe) -> None:
    node, executor = probe

    def fingers() -> float:
        msg = node.latest("/joint_states")
        return msg.position[list(msg.name).index("panda_finger_joint1")]

    node.gripper.publish(Float64(data=0.0))
    spin_until(executor, lambda: fingers() < 0.002, 5.0)
    node.gripper.publish(Float64(data=1.0))
    spin_until(executor, lambda: fingers() > 0.038, 5.0)


def test_reset_service_starts_the_next_seed(probe) -> None:
    node, executor = probe
    assert node.reset.wait_for_service(timeout_sec=10.0)
    future = node.reset.call_async(Trigger.Request())
    spin_until(executor, future.done, 10.0)
    response = future.result()
    assert response.success and json.loads(response.message)["seed"] == 1
    spin_until(executor, lambda: node.status()["seed"] == 1, 5.0)


def test_instruction_selects_the_judged_task(probe) -> None:
    node, executor = probe
    node.instruction.publish(String(data="Put the yellow block in the bowl."))
    spin_until(executor, lambda: node.status()["task"] == "put the yellow block in the bowl", 5.0)
    node.instruction.publish(String(data="sing a song"))  # not a task of the family: ignored
    spin_for(executor, 0.5)
    assert node.status()["task"] == "put the yellow block in the bowl"


def test_invalid_parameter_is_a_clear_error() -> None:
    command = [sys.executable, "-m", "internvla_bringup.ros.sim_robot_node", "--ros-args", "-p", "robot:=ur5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "parameter 'robot' must be one of franka, widowx, humanoid" in result.stderr
    assert "Traceback" not in result.stderr
