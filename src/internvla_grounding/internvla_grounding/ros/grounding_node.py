"""The grounding node: camera frames and instructions in; spatial prompts, markers, annotated images out.

Topics. Camera inputs have relative names, to be remapped to the robot's camera; the rest are
the graph's fixed names (DESIGN.md), shared with the policy node:
    in   image (sensor_msgs/Image) or image/compressed (CompressedImage), per `image_transport`
         depth/image (Image, 16UC1 mm or 32FC1 m, registered to the colour image)
         depth/camera_info (CameraInfo of the depth image)
         /instruction (std_msgs/String)
    out  /internvla/spatial_prompt (internvla_msgs/SpatialPrompt; header = the grounded frame's header)
         /internvla/grounding/markers (visualization_msgs/MarkerArray; only with depth + camera info)
         /internvla/grounding/image (sensor_msgs/Image rgb8: the frame with the grounding drawn on it)
    srv  /internvla/ground (internvla_msgs/Ground): ground one given image on demand; the result is
         returned to the caller, not published.

Timing: a new instruction is grounded on the next fresh frame; after that the newest frame is
re-grounded at `rate_hz`. Inference runs on one worker thread; a frame waiting for it is
replaced by a newer one, so there is never a queue of old frames. Bad input (malformed or oversized
images, bad instructions, unusable depth) is dropped with a throttled warning and counted; it
never stops the node and never produces output.

Run without launch:
    python -m internvla_grounding.ros.grounding_node --ros-args -p checkpoint:=<run folder or .pt>
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from internvla_msgs.msg import SpatialPrompt
from internvla_msgs.srv import Ground
from internvla_policy.control.instruction import instruction_problem
from internvla_policy.ros.msg_conversions import (
    array_to_image,
    compressed_to_rgb,
    depth_image_to_metres,
    image_to_rgb,
    intrinsics_from_camera_info,
    result_to_spatial_prompt,
)
from internvla_policy.ros.shutdown import interruptible
from internvla_policy.vision.annotate import draw_grounding
from internvla_policy.vision.geometry import ParseStatus
from internvla_policy.vision.imaging import ImageFormatError
from internvla_policy.vision.projection import DepthProjector, PinholeIntrinsics

from ..drops import DropCounter
from ..grounder import Grounder, Grounding
from ..prompts import GroundingKind
from ..settings import PARAMETERS, GroundingSettings, SettingsError, settings_from_values
from ..worker import InferenceWorker, WorkerBusyError
from .markers import grounding_markers

NODE_NAME = "internvla_grounding"
_DEPTH_HISTORY = 8


@dataclass(frozen=True)
class _Frame:
    header: Header
    rgb: np.ndarray
    received: float  # time.monotonic() on arrival
    seq: int


@dataclass(frozen=True)
class _Depth:
    stamp_ns: int
    metres: np.ndarray


def _stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class GroundingNode(Node):
    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.settings: GroundingSettings = settings_from_values(self._declare_parameters())
        self.drops = DropCounter(self.settings.warn_throttle_s)
        self.fatal_error: str | None = None
        self._lock = threading.Lock()
        self._frame: _Frame | None = None
        self._frame_seq = 0
        self._instruction: str | None = None
        self._instruction_seq = 0
        self._submitted = (0, 0)  # (frame seq, instruction seq) of the last stream job
        self._depths: collections.deque[_Depth] = collections.deque(maxlen=_DEPTH_HISTORY)
        self._intrinsics: PinholeIntrinsics | None = None
        self._depth_frame_id = ""
        self._grounder: Grounder | None = None

        sensors = MutuallyExclusiveCallbackGroup()
        if self.settings.image_transport == "compressed":
            self.create_subscription(
                CompressedImage,
                "image/compressed",
                self._on_compressed,
                qos_profile_sensor_data,
                callback_group=sensors,
            )
        else:
            self.create_subscription(
                Image, "image", self._on_image, qos_profile_sensor_data, callback_group=sensors
            )
        self.create_subscription(
            Image, "depth/image", self._on_depth, qos_profile_sensor_data, callback_group=sensors
        )
        self.create_subscription(
            CameraInfo,
            "depth/camera_info",
            self._on_camera_info,
            qos_profile_sensor_data,
            callback_group=sensors,
        )
        self.create_subscription(String, "/instruction", self._on_instruction, 10, callback_group=sensors)
        self.prompt_pub = self.create_publisher(SpatialPrompt, "/internvla/spatial_prompt", 10)
        self.marker_pub = self.create_publisher(MarkerArray, "/internvla/grounding/markers", 10)
        self.image_pub = self.create_publisher(Image, "/internvla/grounding/image", QoSProfile(depth=2))
        # Reentrant: a request waits for the worker without holding up the sensor callbacks.
        self.create_service(
            Ground, "/internvla/ground", self._on_ground, callback_group=ReentrantCallbackGroup()
        )
        if self.settings.rate_hz > 0:
            self.create_timer(1.0 / self.settings.rate_hz, self._submit_stream_job, callback_group=sensors)

        self.worker = InferenceWorker(setup=self._load_model, on_error=self._on_job_error)
        self.worker.start()

    @property
    def model(self):
        """The loaded model (None until the worker has loaded it); shared with the policy when share_model."""
        return self._grounder.model if self._grounder is not None else None

    # Parameters and model -------------------------------------------------------------------------

    def _declare_parameters(self) -> dict:
        values = {}
        for spec in PARAMETERS:
            constraints = f"one of: {', '.join(spec.choices)}" if spec.choices else ""
            if spec.minimum is not None:
                constraints = f">= {spec.minimum}"
            descriptor = ParameterDescriptor(
                description=spec.description,
                additional_constraints=constraints,
                read_only=True,
                dynamic_typing=True,  # a wrong type is reported by settings_from_values, naming the parameter
            )
            values[spec.name] = self.declare_parameter(spec.name, spec.default, descriptor).value
        return values

    def _load_model(self) -> None:
        # Imported here, on the worker: torch and transformers take seconds to import, and a bad
        # parameter should be reported before that.
        from internvla_policy.model import load_for_inference

        s = self.settings
        start = time.monotonic()
        try:
            model = load_for_inference(
                s.checkpoint, base_vlm=s.base_vlm, device=s.device, dtype=s.dtype, share=s.share_model
            )
        except Exception as exc:
            self.fatal_error = f"cannot load the model from {s.checkpoint}: {exc}"
            self.get_logger().fatal(self.fatal_error)
            # A node that cannot ground must not look healthy: end the process (main returns 1).
            self.context.try_shutdown()
            raise
        self._grounder = Grounder(model, s.templates, s.coordinates, s.max_new_tokens)
        self.get_logger().info(
            f"model loaded in {time.monotonic() - start:.1f} s from {s.checkpoint} on {s.device} ({s.dtype}, "
            f"{'shared' if s.share_model else 'private'} copy); grounding '{s.kind.value}' at {s.rate_hz} Hz"
        )

    def _on_job_error(self, exc: Exception) -> None:
        self.get_logger().error(f"grounding failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _drop(self, source: str, reason: str) -> None:
        message = self.drops.drop(source, reason)
        if message is not None:
            self.get_logger().warning(message)

    # Inputs ---------------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg, self.settings.max_image_pixels)
        except ImageFormatError as exc:
            self._drop("image", str(exc))
            return
        self._store_frame(msg.header, rgb)

    def _on_compressed(self, msg: CompressedImage) -> None:
        try:
            rgb = compressed_to_rgb(msg, self.settings.max_image_pixels)
        except ImageFormatError as exc:
            self._drop("image", str(exc))
            return
        self._store_frame(msg.header, rgb)

    def _store_frame(self, header: Header, rgb: np.ndarray) -> None:
        with self._lock:
            self._frame_seq += 1
            self._frame = _Frame(header, rgb, time.monotonic(), self._frame_seq)
            instruction_pending = self._submitted[1] != self._instruction_seq
        if instruction_pending:
            self._submit_stream_job()

    def _instruction_problem(self, text: str) -> str | None:
        """The policy node's instruction rule (length, control characters); empty has nothing to ground."""
        if not text.strip():
            return "empty instruction"
        return instruction_problem(text, self.settings.max_instruction_length)

    def _on_instruction(self, msg: String) -> None:
        problem = self._instruction_problem(msg.data)
        text = msg.data.strip()
        if problem:
            self._drop("instruction", problem)
            return
        with self._lock:
            self._instruction = text
            self._instruction_seq += 1
        self.get_logger().info(f"new instruction: {text!r}")
        self._submit_stream_job()

    def _on_depth(self, msg: Image) -> None:
        try:
            metres = depth_image_to_metres(msg, self.settings.max_image_pixels)
        except ImageFormatError as exc:
            self._drop("depth", str(exc))
            return
        if not np.isfinite(metres).any():
            self._drop("depth", "no valid reading in the depth image (all NaN, inf or 0)")
            return
        with self._lock:
            self._depths.append(_Depth(_stamp_ns(msg.header), metres))
            self._depth_frame_id = msg.header.frame_id

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intrinsics = intrinsics_from_camera_info(msg)
        except ValueError as exc:
            self._drop("camera_info", str(exc))
            return
        with self._lock:
            self._intrinsics = intrinsics

    # Stream grounding -----------------------------------------------------------------------------

    def _submit_stream_job(self) -> None:
        """Queue the newest frame with the current instruction, unless that pair was already grounded."""
        with self._lock:
            frame, instruction = self._frame, self._instruction
            if frame is None or instruction is None:
                return
            key = (frame.seq, self._instruction_seq)
            if key == self._submitted:
                return
            max_age = self.settings.max_frame_age_s
            if max_age > 0 and time.monotonic() - frame.received > max_age:
                return  # the camera went quiet: wait for the next frame rather than ground an old one
            self._submitted = key
        self.worker.submit_latest(lambda: self._ground_and_publish(frame, instruction))

    def _ground_and_publish(self, frame: _Frame, instruction: str) -> None:
        grounding = self._grounder.ground(frame.rgb, instruction, self.settings.kind)
        latency = time.monotonic() - frame.received
        self.prompt_pub.publish(self._spatial_prompt(grounding, frame.header, latency))
        status = grounding.result.status.name
        caption = f"{instruction} [{grounding.kind.value}: {status}]"
        annotated = draw_grounding(frame.rgb, grounding.result, caption=caption)
        self.image_pub.publish(array_to_image(annotated, "rgb8", frame.header))
        markers = self._markers(grounding, frame.header)
        if markers is not None:
            self.marker_pub.publish(markers)

    def _spatial_prompt(self, grounding: Grounding, header: Header, latency_s: float) -> SpatialPrompt:
        return result_to_spatial_prompt(
            grounding.result, header, grounding.instruction, grounding.prompt, grounding.raw_answer, latency_s
        )

    def _markers(self, grounding: Grounding, header: Header) -> MarkerArray | None:
        """3-D markers when depth and camera info close in time to the frame exist, else None."""
        with self._lock:
            intrinsics, depths, frame_id = self._intrinsics, list(self._depths), self._depth_frame_id
        if intrinsics is None or not depths:
            self.get_logger().info(
                "no depth image and camera info yet (depth/image, depth/camera_info): no 3-D markers",
                once=True,
            )
            return None
        stamp = _stamp_ns(header)
        depth = min(depths, key=lambda d: abs(d.stamp_ns - stamp))
        gap_s = abs(depth.stamp_ns - stamp) / 1e9
        if gap_s > self.settings.depth_sync_tolerance_s:
            self._drop(
                "depth",
                f"nearest depth frame is {gap_s:.3f} s from the colour frame "
                f"(depth_sync_tolerance_s={self.settings.depth_sync_tolerance_s})",
            )
            return None
        height, width = grounding.result.image_height, grounding.result.image_width
        projector = DepthProjector(depth.metres, intrinsics, width, height)
        marker_header = Header(stamp=header.stamp, frame_id=frame_id or header.frame_id)
        markers, missing = grounding_markers(grounding.result, projector, marker_header)
        if missing:
            self._drop("depth", f"no valid depth under {missing} grounded item(s): left out of the markers")
        return markers

    # Ground service -------------------------------------------------------------------------------

    def _on_ground(self, request: Ground.Request, response: Ground.Response) -> Ground.Response:
        received = time.monotonic()
        response.spatial_prompt.header = request.image.header
        instruction = request.instruction.strip()
        try:
            rgb = image_to_rgb(request.image, self.settings.max_image_pixels)
            kind = GroundingKind.from_code(request.kind)
        except ValueError as exc:  # ImageFormatError included
            return self._reject(response, str(exc))
        problem = self._instruction_problem(request.instruction)
        if problem:
            return self._reject(response, problem)
        try:
            grounding = self.worker.request(
                lambda: self._grounder.ground(rgb, instruction, kind), self.settings.service_timeout_s
            )
        except TimeoutError:
            return self._reject(
                response, f"no result within service_timeout_s={self.settings.service_timeout_s}"
            )
        except WorkerBusyError as exc:
            return self._reject(response, str(exc))
        except Exception as exc:  # the model failed on this request: answer it, keep serving
            return self._reject(response, f"grounding failed: {type(exc).__name__}: {exc}")
        latency = time.monotonic() - received
        response.spatial_prompt = self._spatial_prompt(grounding, request.image.header, latency)
        response.success = grounding.result.status is not ParseStatus.FAILED
        response.message = grounding.result.status_message or "ok"
        return response

    def _reject(self, response: Ground.Response, reason: str) -> Ground.Response:
        self._drop("request", reason)
        response.success = False
        response.message = reason
        return response


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown; 1 when the model failed to load, 2 for a bad parameter."""
    try:
        with rclpy.init(args=args):
            node = GroundingNode()
            try:
                executor = MultiThreadedExecutor(num_threads=4)
                executor.add_node(node)
                with interruptible():
                    executor.spin()
            finally:
                node.worker.stop()
            return 1 if node.fatal_error else 0
    except SettingsError as exc:
        get_logger(NODE_NAME).fatal(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
