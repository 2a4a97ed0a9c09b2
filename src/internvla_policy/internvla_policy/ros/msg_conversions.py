"""ROS messages <-> the ROS-free types of internvla_policy.vision, for the grounding and policy nodes.

Conversions only: validation lives in vision.imaging (every malformed image raises
ImageFormatError there), so both nodes reject the same inputs with the same messages.
"""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Duration
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from internvla_msgs.msg import BoundingBox2D, SpatialPrompt
from internvla_msgs.msg import Keypoint2D as KeypointMsg
from internvla_msgs.msg import Point2D as PointMsg
from internvla_msgs.msg import Trace2D as TraceMsg

from ..vision.geometry import Box2D, GroundingResult, Keypoint2D, ParseStatus, Point2D, Trace2D
from ..vision.imaging import (
    COLOR_ENCODINGS,
    ImageFormatError,
    decode_compressed,
    decode_image,
    depth_to_metres,
    encode_compressed,
    encode_image,
    to_rgb8,
)
from ..vision.projection import PinholeIntrinsics

_NS = 1_000_000_000


# Images ----------------------------------------------------------------------------------------


def image_to_array(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """The pixels of a sensor_msgs/Image in its own encoding ([H, W, C] or [H, W]); may be read-only."""
    return decode_image(
        encoding=msg.encoding,
        width=msg.width,
        height=msg.height,
        step=msg.step,
        data=msg.data,
        is_bigendian=bool(msg.is_bigendian),
        max_pixels=max_pixels,
    )


def image_to_rgb(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """A colour sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) as [H, W, 3] uint8 RGB."""
    if msg.encoding not in COLOR_ENCODINGS:
        # Checked before decoding so that a depth image on the camera topic is named as such.
        raise ImageFormatError(
            f"camera image has encoding {msg.encoding!r}, expected one of {sorted(COLOR_ENCODINGS)}"
        )
    return to_rgb8(image_to_array(msg, max_pixels), msg.encoding)


def compressed_to_rgb(msg: CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    """A JPEG/PNG sensor_msgs/CompressedImage as [H, W, 3] uint8 RGB."""
    return decode_compressed(msg.data, max_pixels)


def depth_image_to_metres(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """A 16UC1 (mm) or 32FC1 (m) depth image as float32 metres, NaN where invalid."""
    return depth_to_metres(image_to_array(msg, max_pixels), msg.encoding)


def array_to_image(pixels: np.ndarray, encoding: str, header: Header) -> Image:
    """A sensor_msgs/Image holding pixels in the given encoding, stamped with header."""
    encoded = encode_image(pixels, encoding)
    return Image(
        header=header,
        height=encoded.height,
        width=encoded.width,
        encoding=encoded.encoding,
        is_bigendian=int(encoded.is_bigendian),
        step=encoded.step,
        data=array.array("B", encoded.data),
    )


def rgb_to_compressed(rgb: np.ndarray, header: Header, fmt: str = "jpeg") -> CompressedImage:
    """A sensor_msgs/CompressedImage of an RGB frame (format field as image_transport writes it)."""
    return CompressedImage(header=header, format=fmt, data=array.array("B", encode_compressed(rgb, fmt)))


def intrinsics_from_camera_info(msg: CameraInfo) -> PinholeIntrinsics:
    """K and the image size of a CameraInfo; raises ValueError for an uncalibrated (all-zero) K."""
    return PinholeIntrinsics.from_k(msg.k, msg.width, msg.height)


# Durations -------------------------------------------------------------------------------------


def duration_from_seconds(seconds: float) -> Duration:
    """builtin_interfaces/Duration, normalised so that 0 <= nanosec < 1e9 (negative values too)."""
    sec, nanosec = divmod(round(seconds * _NS), _NS)
    return Duration(sec=int(sec), nanosec=int(nanosec))


def duration_to_seconds(duration: Duration) -> float:
    return duration.sec + duration.nanosec / _NS


# Spatial prompts -------------------------------------------------------------------------------


def result_to_spatial_prompt(
    result: GroundingResult,
    header: Header,
    instruction: str = "",
    prompt: str = "",
    raw_answer: str = "",
    latency_s: float = 0.0,
) -> SpatialPrompt:
    """The SpatialPrompt message of a parse result; header is the grounded image's header."""
    return SpatialPrompt(
        header=header,
        image_width=result.image_width,
        image_height=result.image_height,
        instruction=instruction,
        prompt=prompt,
        boxes=[
            BoundingBox2D(
                label=b.label,
                score=float(b.score),
                x_min=b.x_min,
                y_min=b.y_min,
                x_max=b.x_max,
                y_max=b.y_max,
            )
            for b in result.boxes
        ],
        points=[
            KeypointMsg(label=k.label, score=float(k.score), point=_point_msg(k.point)) for k in result.points
        ],
        traces=[
            TraceMsg(label=t.label, score=float(t.score), points=[_point_msg(p) for p in t.points])
            for t in result.traces
        ],
        raw_answer=raw_answer,
        parse_status=int(result.status),
        status_message=result.status_message,
        latency=duration_from_seconds(latency_s),
    )


def spatial_prompt_to_result(msg: SpatialPrompt) -> GroundingResult:
    """The geometry of a SpatialPrompt as ROS-free dataclasses (e.g. for vision.annotate).

    Raises ValueError for a parse_status outside SpatialPrompt.PARSE_*.
    """
    return GroundingResult(
        image_width=msg.image_width,
        image_height=msg.image_height,
        boxes=tuple(Box2D(b.x_min, b.y_min, b.x_max, b.y_max, b.label, b.score) for b in msg.boxes),
        points=tuple(Keypoint2D(Point2D(k.point.x, k.point.y), k.label, k.score) for k in msg.points),
        traces=tuple(
            Trace2D(tuple(Point2D(p.x, p.y) for p in t.points), t.label, t.score) for t in msg.traces
        ),
        status=ParseStatus(msg.parse_status),
        status_message=msg.status_message,
    )


def _point_msg(p: Point2D) -> PointMsg:
    return PointMsg(x=float(p.x), y=float(p.y))
