"""Dataset replay node: plays one LeRobot episode as robot topics and scores what the policy commanded.

With no robot and no simulator, a recorded episode is the quickest way to see the policy react to real
images. This node publishes the episode frame by frame, as a camera driver and the arm would, and
compares every action chunk the policy sends back with what the demonstrator did at the frame that
chunk was computed from. The reading, matching and error files live in `internvla_policy.data`; this
node only translates messages and owns the timing.

    replay_node --ros-args -p dataset_path:=../shared/data/sim_pick_place -p episode_index:=2 \
        -p camera_keys:="[video.ego_view, video.base_view]" -p rate_multiplier:=0.5 -p exit_when_done:=true

Parameters are declared read-only with descriptions (PARAMETERS below) and checked at start: a bad
value stops the node with exit code 2 and a message naming the parameter.

Published (names are defaults; remap them)
------------------------------------------
- one `sensor_msgs/Image` (rgb8) topic per camera, sensor-data QoS: `camera_topics`, by default
  `/<camera>/image_raw` (`video.ego_view` -> `/ego_view/image_raw`), frame_id `<camera>_optical_frame`.
- `/joint_states` sensor_msgs/JointState, reliable (serves best-effort and reliable subscribers).
  If the dataset has a `state.joints` key (and `state_keys` is empty) it is published as joint
  positions, named by `joint_names` (default `joint_1`..`joint_N`), with `state.joints_velocity` as
  velocities when present. Otherwise (or when `state_keys` is set) the chosen state keys' values are
  published as positions of named dimensions (`eef_position_0`, ..., from the dataset's feature
  names where it has them), so that logging tools and the policy's state input see them.
  Every message of one frame (all images and the joint state) carries the same header stamp: the
  time the frame was sent.
- `/instruction` std_msgs/String, reliable, transient local (late joiners get it): the episode's
  instruction, sent at start and at the start of every loop pass.
- `/replay/status` std_msgs/String holding JSON, reliable, transient local: `state` (waiting,
  playing, finishing, finished), episode, pass, frame, frames, chunk counters, the topics still
  without a subscriber while waiting, the files written and the last summary. Sent on every state
  change and at 2 Hz.

Playback starts `start_delay_s` after start and, with `wait_for_subscribers` (default), only once
every image topic and /joint_states has a subscriber, so a policy that is still loading its model
does not miss the start of the episode.

Subscribed: `/internvla/action_chunk` internvla_msgs/ActionChunk, reliable. A chunk is matched to
the published frame whose stamp is nearest its header stamp (within `stamp_tolerance_s`); its first
step is compared with the dataset's `action_keys` at that frame. Normalised chunks, chunks whose
dimension differs from the dataset action's, and malformed ones are rejected; unmatched stamps are
counted. All of these are reported with a throttled warning and in the status, never fatal.

After the last frame the node waits `finish_grace_s` for chunks still in flight, then writes
`<output_dir>/episode_<EEEEEE>_pass_<P>_errors.csv` (frame_index, dataset_<dim>...,
commanded_<dim>..., abs_error_<dim>...) and `..._summary.json` (mean/max absolute error per
dimension, counters). Frames are sent one per timer tick at `fps * rate_multiplier` and never
skipped, so a slow machine plays slower rather than dropping frames; the status reports the rate.
Note the gripper convention: the released checkpoints command gripper open in {0, 1}; a dataset's
`gripper_close` column may be -1/+1, and the error file shows the raw difference.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidTopicNameException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String

from internvla_msgs.msg import ActionChunk
from internvla_policy.data import ActionErrorLog, DatasetError, FrameStamps, ReplayEpisode
from internvla_policy.ros.msg_conversions import array_to_image
from internvla_policy.ros.shutdown import interruptible

NODE_NAME = "replay_node"
DEFAULT_ACTION_KEYS = ("action.delta_eef_position", "action.delta_eef_rotation", "action.gripper_close")
"""The released checkpoints' action space (upstream's Franka Robotiq delta-EEF data config)."""
LATCHED_QOS = QoSProfile(
    depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)
RELIABLE_QOS = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
CHUNK_QOS = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
STATUS_PERIOD_S = 0.5
LOG_THROTTLE_S = 2.0

PARAMETERS: tuple[tuple[str, Any, str], ...] = (
    (
        "dataset_path",
        Parameter.Type.STRING,
        "LeRobot v2.x dataset folder (holding meta/info.json). Required.",
    ),
    ("episode_index", 0, "Episode to play (episode_index of meta/episodes.jsonl)."),
    ("rate_multiplier", 1.0, "Playback speed as a multiple of the dataset's fps (> 0)."),
    (
        "camera_keys",
        Parameter.Type.STRING_ARRAY,
        "Cameras to publish (e.g. video.ego_view); unset = every camera with a video for this episode.",
    ),
    (
        "camera_topics",
        Parameter.Type.STRING_ARRAY,
        "Image topic per camera key, same order; unset = /<camera>/image_raw.",
    ),
    (
        "state_keys",
        Parameter.Type.STRING_ARRAY,
        "State keys published as named JointState dimensions; unset "
        "= state.joints as joints if present, else every state key.",
    ),
    (
        "joint_names",
        Parameter.Type.STRING_ARRAY,
        "JointState names, one per published value; unset = "
        "joint_1.. for joints, <key>_<i> for named dimensions.",
    ),
    (
        "action_keys",
        list(DEFAULT_ACTION_KEYS),
        "Dataset action keys compared with the commanded chunk's first step, in the chunk's dimension order.",
    ),
    ("output_dir", "replay_out", "Folder for the per-step error CSV and the summary JSON."),
    ("loop", False, "Play the episode again after each pass (files are written per pass)."),
    ("start_delay_s", 1.0, "Wait this long after start before the first frame (subscribers connect)."),
    (
        "wait_for_subscribers",
        True,
        "Also wait until every image topic and /joint_states has a subscriber (the policy is up).",
    ),
    ("finish_grace_s", 1.0, "After the last frame, wait this long for chunks still in flight."),
    ("stamp_tolerance_s", 0.001, "A chunk matches the published frame nearest its stamp within this."),
    ("exit_when_done", False, "Exit (code 0) after the files are written (ignored with loop)."),
)


class ConfigError(ValueError):
    """A parameter the node cannot start with; the message names it."""


@dataclass(frozen=True)
class ReplayParams:
    dataset_path: Path
    episode_index: int
    rate_multiplier: float
    camera_keys: tuple[str, ...]
    camera_topics: tuple[str, ...]
    state_keys: tuple[str, ...]
    joint_names: tuple[str, ...]
    action_keys: tuple[str, ...]
    output_dir: Path
    loop: bool
    start_delay_s: float
    wait_for_subscribers: bool
    finish_grace_s: float
    stamp_tolerance_s: float
    exit_when_done: bool

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> ReplayParams:
        """Check ranges and consistency of typed parameter values (unset arrays are None)."""
        if not values["dataset_path"]:
            raise ConfigError("parameter 'dataset_path' is required: the LeRobot dataset folder to play")
        if not math.isfinite(values["rate_multiplier"]) or values["rate_multiplier"] <= 0:
            raise ConfigError(f"parameter 'rate_multiplier' must be > 0, got {values['rate_multiplier']}")
        for name in ("start_delay_s", "finish_grace_s", "stamp_tolerance_s"):
            if not math.isfinite(values[name]) or values[name] < 0:
                raise ConfigError(f"parameter '{name}' must be >= 0, got {values[name]}")
        if values["episode_index"] < 0:
            raise ConfigError(f"parameter 'episode_index' must be >= 0, got {values['episode_index']}")
        arrays = {
            name: tuple(values[name] or ())
            for name in ("camera_keys", "camera_topics", "state_keys", "joint_names", "action_keys")
        }
        if arrays["camera_topics"] and len(arrays["camera_topics"]) != len(arrays["camera_keys"]):
            raise ConfigError(
                f"parameter 'camera_topics' has {len(arrays['camera_topics'])} entries but 'camera_keys' has "
                f"{len(arrays['camera_keys'])}: give one topic per camera key, or none for the defaults"
            )
        if not arrays["action_keys"]:
            raise ConfigError("parameter 'action_keys' must name at least one dataset action key")
        return cls(
            dataset_path=Path(values["dataset_path"]).expanduser(),
            output_dir=Path(values["output_dir"]).expanduser(),
            **{
                k: values[k]
                for k in (
                    "episode_index",
                    "rate_multiplier",
                    "loop",
                    "start_delay_s",
                    "wait_for_subscribers",
                    "finish_grace_s",
                    "stamp_tolerance_s",
                    "exit_when_done",
                )
            },
            **arrays,
        )


def camera_name(key: str) -> str:
    """`video.ego_view` -> `ego_view`, `observation.images.top` -> `top`."""
    return key.rsplit(".", 1)[-1]


class ReplayNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.params = p = self._read_params()
        try:
            self.data = ReplayEpisode.load(
                p.dataset_path,
                p.episode_index,
                action_keys=p.action_keys,
                camera_keys=p.camera_keys,
                state_keys=p.state_keys,
                joint_names=p.joint_names,
            )
        except DatasetError as err:
            raise ConfigError(f"parameter {err}") from err
        try:
            p.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"parameter 'output_dir': cannot create {p.output_dir} ({err})") from err
        topics = p.camera_topics or tuple(f"/{camera_name(key)}/image_raw" for key in self.data.camera_keys)
        self.cameras = tuple(zip(self.data.camera_keys, topics, strict=True))
        self.done = False
        self._state = "waiting"
        self._pass = 0
        self._frame = 0
        self._files: list[str] = []
        self._summary: dict[str, Any] | None = None
        self._counts = dict.fromkeys(("received", "matched", "unmatched", "rejected"), 0)
        self._image_errors = 0
        self._stamps = FrameStamps(round(self.params.stamp_tolerance_s * 1e9))
        self._log = ActionErrorLog(self.data.action_names)
        self._pass_started = time.monotonic()
        self._deadline = time.monotonic() + self.params.start_delay_s
        self._create_interfaces()
        self._publish_instruction()
        self._publish_status()
        self.get_logger().info(
            f"replaying episode {self.data.episode} ({self.data.frames} frames, "
            f"{len(self.cameras)} camera(s)) of {self.params.dataset_path} at "
            f"{self.params.rate_multiplier}x: {self.data.instruction!r}"
        )

    def _read_params(self) -> ReplayParams:
        values = {}
        for name, default, description in PARAMETERS:
            try:
                values[name] = self.declare_parameter(
                    name, default, ParameterDescriptor(description=description, read_only=True)
                ).value
            except InvalidParameterTypeException as err:
                raise ConfigError(f"parameter '{name}': wrong type ({err}); {description}") from err
        return ReplayParams.from_values(values)

    def _create_interfaces(self) -> None:
        try:
            self._image_pubs = [
                (key, self.create_publisher(Image, topic, qos_profile_sensor_data))
                for key, topic in self.cameras
            ]
        except InvalidTopicNameException as err:
            raise ConfigError(f"parameter 'camera_topics': {err}") from err
        self._joint_pub = self.create_publisher(JointState, "/joint_states", RELIABLE_QOS)
        self._instruction_pub = self.create_publisher(String, "/instruction", LATCHED_QOS)
        self._status_pub = self.create_publisher(String, "/replay/status", LATCHED_QOS)
        self.create_subscription(ActionChunk, "/internvla/action_chunk", self._on_chunk, CHUNK_QOS)
        fps = self.data.reader.meta.fps
        self.create_timer(1.0 / (fps * self.params.rate_multiplier), self._on_tick)
        self.create_timer(STATUS_PERIOD_S, self._publish_status)

    # --- playback ---------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        now = time.monotonic()
        if self._state == "waiting" and now >= self._deadline and not self._topics_without_subscribers():
            self._pass_started = now
            self._set_state("playing")
        if self._state == "playing":
            self._publish_frame(self._frame)
            self._frame += 1
            if self._frame == self.data.frames:
                self._deadline = now + self.params.finish_grace_s
                self._set_state("finishing")
        elif self._state == "finishing" and now >= self._deadline:
            self._finish_pass()

    def _topics_without_subscribers(self) -> list[str]:
        """Topics nobody listens to yet; empty when not waiting for subscribers."""
        if not self.params.wait_for_subscribers:
            return []
        publishers = [publisher for _, publisher in self._image_pubs] + [self._joint_pub]
        return [p.topic_name for p in publishers if p.get_subscription_count() == 0]

    def _publish_frame(self, frame: int) -> None:
        stamp = self.get_clock().now()
        for key, publisher in self._image_pubs:
            try:
                pixels = self.data.reader.image(self.data.episode, key, frame)
            except DatasetError as err:  # a damaged video skips that image, not the replay
                self._image_errors += 1
                self.get_logger().error(f"frame {frame}: {err}", throttle_duration_sec=LOG_THROTTLE_S)
                continue
            header = Header(stamp=stamp.to_msg(), frame_id=f"{camera_name(key)}_optical_frame")
            publisher.publish(array_to_image(pixels, "rgb8", header))
        joints = JointState(header=Header(stamp=stamp.to_msg()), name=list(self.data.joint_names))
        joints.position = self.data.positions[frame].tolist()
        if self.data.velocities is not None:
            joints.velocity = self.data.velocities[frame].tolist()
        self._joint_pub.publish(joints)
        self._stamps.add(stamp.nanoseconds, frame)

    def _finish_pass(self) -> None:
        stem = f"episode_{self.data.episode:06d}_pass_{self._pass}"
        error_file = self.params.output_dir / f"{stem}_errors.csv"
        summary_file = self.params.output_dir / f"{stem}_summary.json"
        elapsed = time.monotonic() - self._pass_started
        extra = {
            "dataset": str(self.params.dataset_path),
            "episode": self.data.episode,
            "pass": self._pass,
            "instruction": self.data.instruction,
            "action_keys": list(self.params.action_keys),
            "frames_published": self.data.frames,
            "chunks": dict(self._counts),
            "image_errors": self._image_errors,
        }
        try:
            self._summary = self._log.write(error_file, summary_file, extra=extra)
        except OSError as err:  # a full disk loses this pass's files, not the node
            self.get_logger().error(f"pass {self._pass}: cannot write {error_file}: {err}")
            self._summary = {**extra, **self._log.summary(), "write_error": str(err)}
        else:
            self._files += [str(error_file), str(summary_file)]
        self.get_logger().info(
            f"pass {self._pass}: {self._summary['steps']} chunk(s) compared in {elapsed:.1f} s; "
            f"mean |error| per dimension {self._summary['mean_abs_error']}; output: {self.params.output_dir}"
        )
        self._stamps.clear()
        if self.params.loop:
            self._pass += 1
            self._frame = 0
            self._log = ActionErrorLog(self.data.action_names)
            self._counts = dict.fromkeys(self._counts, 0)
            self._image_errors = 0
            self._pass_started = time.monotonic()
            self._publish_instruction()
            self._set_state("playing")
        else:
            self._set_state("finished")
            self.done = self.params.exit_when_done

    # --- commanded actions ------------------------------------------------------------------------

    def _on_chunk(self, msg: ActionChunk) -> None:
        self._counts["received"] += 1
        problem = self._chunk_problem(msg)
        if problem:
            self._counts["rejected"] += 1
            self.get_logger().warning(
                f"action chunk rejected: {problem}", throttle_duration_sec=LOG_THROTTLE_S
            )
            return
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        frame = self._stamps.match(stamp_ns) if self._state in ("playing", "finishing") else None
        if frame is None:
            self._counts["unmatched"] += 1
            self.get_logger().warning(
                f"action chunk stamped {stamp_ns} ns matches no frame of this pass",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            return
        self._counts["matched"] += 1
        self._log.record(
            frame, self.data.actions[frame], np.asarray(msg.data[: msg.dimension], dtype=np.float64)
        )

    def _chunk_problem(self, msg: ActionChunk) -> str | None:
        dimension = len(self.data.action_names)
        if msg.normalized:
            return "normalized == true; the replay compares actions in robot units"
        if msg.dimension != dimension:
            return f"dimension {msg.dimension}, but action_keys give {dimension}"
        if msg.horizon < 1 or len(msg.data) != msg.horizon * msg.dimension:
            return f"{len(msg.data)} values for horizon {msg.horizon} x dimension {msg.dimension}"
        if not all(math.isfinite(v) for v in msg.data[:dimension]):
            return "non-finite values in the first step"
        return None

    # --- status -----------------------------------------------------------------------------------

    def _publish_instruction(self) -> None:
        self._instruction_pub.publish(String(data=self.data.instruction))

    def _set_state(self, state: str) -> None:
        self._state = state
        self._publish_status()

    def _publish_status(self) -> None:
        elapsed = time.monotonic() - self._pass_started
        status = {
            "state": self._state,
            "episode": self.data.episode,
            "pass": self._pass,
            "frame": self._frame,
            "frames": self.data.frames,
            "rate_fps": round(self._frame / elapsed, 2) if self._state == "playing" and elapsed > 0 else None,
            "chunks": dict(self._counts),
            "image_errors": self._image_errors,
            "waiting_for_subscribers": self._topics_without_subscribers() if self._state == "waiting" else [],
            "files": list(self._files),
            "summary": self._summary,
        }
        self._status_pub.publish(String(data=json.dumps(status)))


def main(args: list[str] | None = None) -> int:
    with rclpy.init(args=args):
        try:
            node = ReplayNode()
        except ConfigError as err:
            rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {err}")
            return 2
        try:
            with interruptible():
                while rclpy.ok() and not node.done:
                    rclpy.spin_once(node, timeout_sec=0.1)
        finally:
            node.data.reader.close()
            node.destroy_node()
    return 0


if __name__ == "__main__":
    sys.exit(main())
