"""The policy node: cameras, joints, instruction and spatial prompt in; safe robot commands out.

A thin ROS 2 wrapper around `internvla_policy.control`: it declares and validates the parameters,
turns messages into the control core's plain types, owns the control timer, and publishes what
`PolicyController.tick` decides. Inference runs in a worker thread, so the executor never waits
for the model. Run with `ros2 run internvla_policy policy_node --ros-args --params-file profile.yaml`.

Topics (names are defaults; remap them in the launch file)
-----------------------------------------------------------
Subscribed:
- each of `camera_topics`: sensor_msgs/Image, or sensor_msgs/CompressedImage (JPEG/PNG) where
  `camera_compressed` says so; sensor-data QoS. Raw encodings: rgb8, bgr8, rgba8, bgra8, mono8.
  Frames are decoded on receipt: only a frame that decoded, with a stamp neither further than
  `future_stamp_tolerance_s` ahead of the clock nor older than `camera_max_age_s`, makes the
  camera fresh.
- `/joint_states` sensor_msgs/JointState, sensor-data QoS; matched by name (any order, extra
  joints ignored). A message missing a controlled joint, with a non-finite position or with a
  joint outside its URDF limits by more than `joint_limit_tolerance_rad` is a fault: the node
  holds until a valid one arrives. Stamps are judged like camera stamps.
- `/instruction` std_msgs/String, reliable. A new text replaces the task; an empty one stops it.
  A text longer than `max_instruction_length` or with control characters is refused (the same
  rule as the grounding node's, control/instruction.py): the task stops and the robot holds.
- `/internvla/spatial_prompt` internvla_msgs/SpatialPrompt, reliable (only when
  `spatial_prompt_mode` is 'text' or 'overlay'; used only when its instruction matches; a prompt
  over the size bounds of control/spatial_prompt.py is refused and the robot holds).
- `/internvla/estop` std_msgs/Bool: true latches the e-stop. Two subscriptions: reliable with
  keep-all history, so that a reliable press is never pushed out of the queue by other samples
  (a flood of false from any best-effort publisher cannot touch it), and best effort, so that
  best-effort publishers (some panels and joystick drivers) are heard too. Send presses reliably
  (`ros2 topic pub` does): a best-effort sample may be dropped by the network itself. A reliable
  publisher flooding the topic faster than the node reads it can delay a topic press; the
  `~/estop` service below cannot be delayed by anything on the topic.
- `/internvla/heartbeat` std_msgs/Bool, best effort (only when `heartbeat_timeout_s` > 0): the
  operator's deadman; commands flow only while true messages keep arriving within the timeout.

Published:
- `/internvla/joint_command` trajectory_msgs/JointTrajectory, reliable: one point per tick,
  positions for `joint_names`, time_from_start = one control period, header.stamp = tick time.
- `/internvla/ee_target` geometry_msgs/PoseStamped, reliable: the clamped end-effector target the
  joint command solves for, in `base_frame`, header.stamp = tick time.
- `/internvla/gripper_command` std_msgs/Float64, reliable (`gripper_mode` 'fraction'): opening
  fraction, 0 = closed, 1 = fully open; sent with every joint command.
- `/internvla/action_chunk` internvla_msgs/ActionChunk, reliable: each chunk as received,
  unnormalised, header.stamp = the newest camera frame it was computed from.
- `/internvla/policy_status` internvla_msgs/PolicyStatus, reliable: at `status_rate_hz` and on
  every state change.

Services: `~/estop` std_srvs/Trigger latches the e-stop like a press on the topic: a second
reliable input that nothing published on the topic can delay (a reliable publisher flooding the
topic faster than the node reads it can hold a topic press back; it cannot hold back this call).
`~/enable` std_srvs/SetBool (refused while the e-stop is latched); `~/reset_estop`
std_srvs/Trigger (clears the latch once the e-stop input reads false; the node stays disabled
until enabled again).

Parameters (type, default; all read-only, validated at start, unit in the name)
--------------------------------------------------------------------------------
Required (robot profile): joint_names (string[]), urdf_path (string), base_frame (string),
ee_frame (string), camera_topics (string[]), workspace_min / workspace_max (double[3], m, in
base_frame), checkpoint (string: run folder, .pt or .safetensors).

Robot and timing: camera_compressed (bool[], [] = all raw), control_rate_hz (double, 10.0),
camera_max_age_s (double, 0.5), joint_state_max_age_s (double, 0.25), instruction_max_age_s
(double, 0.0 = never), spatial_prompt_max_age_s (double, 0.0 = until the instruction changes),
future_stamp_tolerance_s (double, 0.1), max_instruction_length (int, 1000), heartbeat_timeout_s
(double, 0.0 = no deadman), start_enabled (bool, false), status_rate_hz (double, 2.0).

Action space (see control/action.py): action_frame ('base' | 'ee', 'base'),
action_rotation_format ('rpy' | 'rotvec', 'rpy'), action_axis_signs (double[6], all +1),
action_translation_scale (double, 1.0), action_rotation_scale (double, 1.0), unnorm_key
(string, '' = the checkpoint's only key), gripper_mode ('fraction' | 'none', 'fraction'),
gripper_inverted (bool, false), gripper_binary (bool, true).

Safety: max_translation_per_tick_m (double, 0.02), max_rotation_per_tick_rad (double, 0.1),
joint_position_margin_rad (double, 0.01), joint_velocity_scale (double in (0, 1], 0.5),
joint_limit_tolerance_rad (double, 0.05), workspace_tolerance_m (double, 0.05: a tool measured
further outside the workspace box holds the robot). Joint position and velocity limits come from
the URDF.

Kinematics: kinematics_backend ('pinocchio' | 'moveit', 'pinocchio'), moveit_group (string, ''),
ik_max_iterations (int, 200), ik_damping (double, 0.01).

Model: base_vlm (string, '' = from the checkpoint config), device ('cpu' | 'cuda' | 'cuda:N',
'cpu'), dtype ('float32' | 'bfloat16' | 'float16', 'float32'), cfg_scale (double, 1.5),
ddim_steps (int, 10), seed (int, -1 = fresh noise per chunk), torch_threads (int, 0 = all cores
but one), share_model (bool, true), inference_backend ('local' | 'remote', 'local'), server_uri
(string, 'ws://127.0.0.1:10093'), server_timeout_s (double, 1.0). With 'remote' the node loads no
model: it asks `internvla-m1 serve` (token from $INTERNVLA_M1_TOKEN) and is in ERROR, sending no
commands, from the moment the connection is lost until it is back (the current chunk is not played
out); replies that are errors, late or not a finite [horizon, 7] chunk are inference errors.

Action selection: ensemble_mode ('adaptive' | 'newest', 'adaptive'), ensemble_k (int, 2),
ensemble_alpha (double, 0.1), spatial_prompt_mode ('latent' | 'text' | 'overlay' | 'off',
'latent'; see control/spatial_prompt.py).

The descriptions, bounds and choices live in `internvla_policy.control.config.PolicyParams`.
Integers are accepted where a double is expected (YAML `10` for 10.0).
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool, Float64, Header, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from internvla_msgs.msg import ActionChunk, PolicyStatus
from internvla_msgs.msg import SpatialPrompt as SpatialPromptMsg
from internvla_policy.control.action import ACTION_SPACE, DIMENSION_NAMES
from internvla_policy.control.config import ConfigError, PolicyParams
from internvla_policy.control.controller import WAITING_FOR_CHUNK, Command, PolicyController, ReceivedChunk
from internvla_policy.control.inference import ChunkPolicy, InferenceWorker
from internvla_policy.control.observation import CameraFrame, InvalidInputError
from internvla_policy.control.spatial_prompt import SpatialPrompt, needs_prompt, prompt_size_problem
from internvla_policy.control.state import PolicyState
from internvla_policy.ros.msg_conversions import (
    compressed_to_rgb,
    duration_from_seconds,
    image_to_rgb,
    spatial_prompt_to_result,
)
from internvla_policy.ros.shutdown import interruptible
from internvla_policy.vision.imaging import ImageFormatError

if TYPE_CHECKING:
    from internvla_policy.control.remote_policy import RemoteChunkPolicy

NODE_NAME = "internvla_policy"
MAX_CAMERA_PIXELS = 4096 * 4096
"""Frames above this are rejected before decoding (a malformed header must not cost memory)."""
WARMUP_IMAGE_SIZE = (224, 224)
COMMAND_QOS = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
ANY_PUBLISHER_QOS = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.BEST_EFFORT)
ESTOP_RELIABLE_QOS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_ALL, depth=1, reliability=QoSReliabilityPolicy.RELIABLE
)
"""A reliable press waits in the queue behind other samples; keep-last would let a flood overwrite it."""
LOG_THROTTLE_S = 2.0


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _stamp(seconds: float):
    return Time(nanoseconds=round(seconds * 1e9)).to_msg()


class PolicyNode(Node):
    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.params = self._read_params()
        self.controller = PolicyController.from_params(self.params, self._now)
        self._closing = threading.Event()
        self._worker: InferenceWorker | None = None
        self._remote: RemoteChunkPolicy | None = None  # with inference_backend 'remote'
        self._warmup_s = 0.0
        self._last_state: PolicyState | None = None
        self._last_detail = ""
        self._create_interfaces()
        self._loader = threading.Thread(target=self._load_model, name="internvla-model-load", daemon=True)
        self._loader.start()

    # Set-up ------------------------------------------------------------------------------------

    def _read_params(self) -> PolicyParams:
        values = {}
        for spec in PolicyParams.specs():
            descriptor = ParameterDescriptor(
                description=f"[{spec.metadata['kind']}] {spec.metadata['description']}",
                read_only=True,
                dynamic_typing=True,  # type checks (and int -> double) happen in PolicyParams
            )
            default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            values[spec.name] = self.declare_parameter(spec.name, default, descriptor).value
        return PolicyParams.from_mapping(values)

    def _create_interfaces(self) -> None:
        p, c = self.params, self.controller
        for index, (topic, compressed) in enumerate(
            zip(p.camera_topics, p.camera_is_compressed, strict=True)
        ):
            msg_type = CompressedImage if compressed else Image
            decode = compressed_to_rgb if compressed else image_to_rgb
            callback = functools.partial(self._on_camera, index, decode)
            self.create_subscription(msg_type, topic, callback, qos_profile_sensor_data)
        self.create_subscription(JointState, "/joint_states", self._on_joint_state, qos_profile_sensor_data)
        self.create_subscription(String, "/instruction", self._on_instruction, COMMAND_QOS)
        if needs_prompt(p.spatial_prompt_mode):
            self.create_subscription(
                SpatialPromptMsg, "/internvla/spatial_prompt", self._on_prompt, COMMAND_QOS
            )
        self.create_subscription(Bool, "/internvla/estop", self._on_estop, ESTOP_RELIABLE_QOS)
        self.create_subscription(Bool, "/internvla/estop", self._on_estop, ANY_PUBLISHER_QOS)
        if p.heartbeat_timeout_s > 0.0:
            self.create_subscription(
                Bool,
                "/internvla/heartbeat",
                lambda m: c.gate.on_heartbeat(m.data, self._now()),
                ANY_PUBLISHER_QOS,
            )
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_service(Trigger, "~/reset_estop", self._on_reset_estop)
        self.create_service(Trigger, "~/estop", self._on_estop_service)
        self._joint_pub = self.create_publisher(JointTrajectory, "/internvla/joint_command", COMMAND_QOS)
        self._pose_pub = self.create_publisher(PoseStamped, "/internvla/ee_target", COMMAND_QOS)
        self._gripper_pub = (
            self.create_publisher(Float64, "/internvla/gripper_command", COMMAND_QOS)
            if p.gripper_mode == "fraction"
            else None
        )
        self._chunk_pub = self.create_publisher(ActionChunk, "/internvla/action_chunk", COMMAND_QOS)
        self._status_pub = self.create_publisher(PolicyStatus, "/internvla/policy_status", COMMAND_QOS)
        self.create_timer(p.control_period_s, self._on_tick)
        self.create_timer(1.0 / p.status_rate_hz, self._publish_status)

    def _load_model(self) -> None:
        """Load and warm up the model off the executor (or connect to the inference server); the node
        reports STARTING meanwhile."""
        p = self.params
        policy = self._remote_policy() if p.inference_backend == "remote" else self._local_policy()
        if policy is None:
            return
        worker = InferenceWorker(
            policy,
            p.spatial_prompt_mode,
            self.controller.next_request,
            self.controller.on_chunk,
            self._on_inference_error,
        )
        if self._closing.is_set():
            return
        self._worker = worker
        worker.start()
        if p.inference_backend == "local":
            self.controller.set_model_ready()  # remote: once connected (_on_server_connected)

    def _remote_policy(self) -> ChunkPolicy:
        """The inference server as the worker's policy; commands flow only while it is connected."""
        from internvla_policy.control.remote_policy import RemoteChunkPolicy

        p = self.params
        self._remote = RemoteChunkPolicy(
            p.server_uri,
            cfg_scale=p.cfg_scale,
            ddim_steps=p.ddim_steps,
            seed=None if p.seed < 0 else p.seed,
            unnorm_key=p.unnorm_key or None,
            prompt_template=p.spatial_prompt_mode != "off",
            control_period_s=p.control_period_s,
            timeout_s=p.server_timeout_s,
            on_connected=self._on_server_connected,
            on_lost=self._on_server_lost,
        )
        self._remote.start()
        return self._remote

    def _on_server_connected(self, metadata: dict) -> None:
        self.controller.set_model_ready()
        self.get_logger().info(
            f"inference server {self.params.server_uri}: {metadata.get('model')} on "
            f"{metadata.get('device')}/{metadata.get('dtype')}, unnorm keys {metadata.get('unnorm_keys')}"
        )

    def _on_server_lost(self, reason: str) -> None:
        """Block commands at once: the schedule alone would keep executing the current chunk."""
        uri = self.params.server_uri
        self.controller.set_model_error(f"inference server {uri} unreachable ({reason}); reconnecting")
        self.get_logger().error(f"inference server {uri} unreachable: {reason}; holding and reconnecting")

    def _local_policy(self) -> ChunkPolicy | None:
        """The checkpoint loaded and warmed up in this process; None (and the ERROR state) when it fails."""
        # Imported here so that torch and transformers load on this thread, not before the first status.
        from internvla_policy.control.model_policy import ModelChunkPolicy, set_torch_threads
        from internvla_policy.model import load_for_inference

        p = self.params
        try:
            started = time.perf_counter()
            threads = set_torch_threads(p.torch_threads)
            model = load_for_inference(
                p.checkpoint, base_vlm=p.base_vlm, device=p.device, dtype=p.dtype, share=p.share_model
            )
            policy = ModelChunkPolicy(
                model,
                cfg_scale=p.cfg_scale,
                ddim_steps=p.ddim_steps,
                seed=None if p.seed < 0 else p.seed,
                unnorm_key=p.unnorm_key or None,
                prompt_template=p.spatial_prompt_mode != "off",
            )
            loaded = time.perf_counter()
            blank = np.zeros((*WARMUP_IMAGE_SIZE, 3), dtype=np.uint8)
            policy.predict([blank] * len(p.camera_topics), "warm up")
            self._warmup_s = time.perf_counter() - loaded
        except Exception as exc:  # any load failure becomes the ERROR state, never a dead node
            self.controller.set_model_error(f"model could not be loaded: {type(exc).__name__}: {exc}")
            self.get_logger().error(f"cannot load checkpoint {p.checkpoint!r}: {exc}")
            return None
        self.get_logger().info(
            f"model ready: {p.checkpoint} on {p.device}/{p.dtype} ({threads} CPU threads), unnorm_key "
            f"'{policy.unnorm_key}', load {loaded - started:.1f} s, warm-up {self._warmup_s:.2f} s"
        )
        return policy

    def shutdown(self) -> None:
        """Stop inference; a model still loading will not start it."""
        self._closing.set()
        if self._remote is not None:
            self._remote.close()  # first: a request waiting for its reply fails at once
        if self._worker is not None:
            self._worker.stop()

    # Inputs ------------------------------------------------------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _stamp_or_now(self, header: Header) -> float:
        """Header stamp in seconds; receive time for publishers that leave it zero."""
        stamp = _seconds(header.stamp)
        return stamp if stamp > 0.0 else self._now()

    def _on_camera(self, index: int, decode, msg) -> None:
        """Decode before the frame counts: a malformed frame must not keep the camera fresh."""
        try:
            image = decode(msg, MAX_CAMERA_PIXELS)
        except ImageFormatError as exc:
            self.controller.drop_input()
            self.get_logger().warning(f"dropped camera frame: {exc}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        frame = CameraFrame(self._stamp_or_now(msg.header), msg.header.frame_id, image)
        problem = self.controller.on_camera(index, frame, self._now())
        if problem:
            self.get_logger().warning(f"dropped {problem}", throttle_duration_sec=LOG_THROTTLE_S)
        elif self._worker is not None:
            self._worker.wake()

    def _on_joint_state(self, msg: JointState) -> None:
        stamp = self._stamp_or_now(msg.header)
        problem = self.controller.on_joint_state(msg.name, msg.position, stamp, self._now())
        if problem:
            self.get_logger().warning(f"dropped joint state: {problem}", throttle_duration_sec=LOG_THROTTLE_S)

    def _on_instruction(self, msg: String) -> None:
        try:
            changed = self.controller.on_instruction(msg.data, self._now())
        except InvalidInputError as exc:
            self.get_logger().warning(
                f"refused instruction, holding: {exc}", throttle_duration_sec=LOG_THROTTLE_S
            )
            return
        if changed:
            text = msg.data.strip()
            self.get_logger().info(f"instruction: {text!r}" if text else "instruction cleared")

    def _on_prompt(self, msg: SpatialPromptMsg) -> None:
        try:
            problem = prompt_size_problem(msg.boxes, msg.points, msg.traces)
            if problem is not None:
                raise ValueError(problem)
            grounding = spatial_prompt_to_result(msg)
        except ValueError as exc:
            self.controller.refuse_spatial_prompt(str(exc))
            self.get_logger().warning(f"refused spatial prompt: {exc}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        prompt = SpatialPrompt(msg.instruction, msg.header.frame_id, grounding)
        self.controller.on_spatial_prompt(prompt, self._now())

    def _on_estop(self, msg: Bool) -> None:
        was = self.controller.gate.estopped
        self.controller.gate.on_estop(msg.data)
        if msg.data and not was:
            self.get_logger().error("E-STOP latched: commands stopped until ~/reset_estop and ~/enable")

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        response.success, response.message = self.controller.gate.set_enabled(request.data)
        self.get_logger().info(f"enable({request.data}): {response.message}")
        return response

    def _on_estop_service(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.controller.gate.latch_estop()
        self.get_logger().error("E-STOP latched (service): commands stopped until ~/reset_estop and ~/enable")
        response.success, response.message = True, "e-stop latched"
        return response

    def _on_reset_estop(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.controller.gate.reset_estop()
        self.get_logger().info(f"reset_estop: {response.message}")
        return response

    def _on_inference_error(self, exc: Exception) -> None:
        self.controller.on_inference_error()
        self.get_logger().error(
            f"inference failed: {type(exc).__name__}: {exc}", throttle_duration_sec=LOG_THROTTLE_S
        )

    # Outputs -----------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        result = self.controller.tick(self._now())
        for chunk in result.new_chunks:
            self._chunk_pub.publish(self._chunk_msg(chunk))
            horizon = len(chunk.result.prediction.actions)
            if chunk.scheduled.skipped_steps >= horizon:
                self.get_logger().warning(
                    f"inference took {chunk.result.latency_s:.2f} s: all {horizon} steps of the chunk "
                    f"({horizon * self.params.control_period_s:.2f} s) were past when it arrived, so the "
                    "robot holds. Use a faster device, fewer ddim_steps or a lower control_rate_hz",
                    throttle_duration_sec=LOG_THROTTLE_S,
                )
        if result.command is not None:
            self._publish_command(result.command)
        changed = result.state != self._last_state
        self._last_state, self._last_detail = result.state, result.detail
        if changed:
            # Slow inference makes RUNNING and the wait between chunks alternate every few ticks.
            routine = result.state is PolicyState.RUNNING or result.detail == WAITING_FOR_CHUNK
            log = self.get_logger().debug if routine else self.get_logger().info
            log(f"state {result.state.name}: {result.detail}")
            self._publish_status()

    def _publish_command(self, command: Command) -> None:
        stamp = _stamp(command.stamp)
        trajectory = JointTrajectory(joint_names=list(self.params.joint_names))
        trajectory.header.stamp = stamp
        trajectory.points = [
            JointTrajectoryPoint(
                positions=command.joint_positions.tolist(),
                time_from_start=duration_from_seconds(self.params.control_period_s),
            )
        ]
        self._joint_pub.publish(trajectory)
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, self.params.base_frame
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = command.ee_target.position.tolist()
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = command.ee_target.quaternion_xyzw()
        self._pose_pub.publish(pose)
        if self._gripper_pub is not None:
            self._gripper_pub.publish(Float64(data=command.gripper_opening))

    def _chunk_msg(self, chunk: ReceivedChunk) -> ActionChunk:
        p = self.params
        actions = chunk.result.prediction.actions
        msg = ActionChunk(
            instruction=chunk.result.request.instruction,
            action_space=ACTION_SPACE,
            dimension_names=list(DIMENSION_NAMES),
            horizon=actions.shape[0],
            dimension=actions.shape[1],
            step_period=duration_from_seconds(p.control_period_s),
            data=actions.astype(np.float32).ravel().tolist(),
            normalized=False,
        )
        msg.header.stamp = _stamp(chunk.scheduled.stamp)
        msg.header.frame_id = p.base_frame if p.action_frame == "base" else p.ee_frame
        return msg

    def _publish_status(self) -> None:
        stats, gate = self.controller.stats, self.controller.gate
        msg = PolicyStatus(
            state=int(self._last_state if self._last_state is not None else PolicyState.STARTING),
            detail=self._last_detail,
            instruction=self.controller.instruction,
            model=self.params.server_uri
            if self.params.inference_backend == "remote"
            else self.params.checkpoint,
            device=self.params.device,
            last_inference_latency=duration_from_seconds(stats.last_inference_latency_s),
            warmup_duration=duration_from_seconds(self._warmup_s),
            chunk_count=stats.chunk_count,
            commands_published=stats.commands,
            dropped_inputs=stats.dropped_inputs,
            inference_errors=stats.inference_errors,
            enabled=gate.enabled,
            estopped=gate.estopped,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    with rclpy.init(args=args):
        try:
            node = PolicyNode()
        except ConfigError as exc:
            rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
            return 2
        try:
            with interruptible():
                rclpy.spin(node)
        finally:
            node.shutdown()
            node.destroy_node()
    return 0


if __name__ == "__main__":
    sys.exit(main())
