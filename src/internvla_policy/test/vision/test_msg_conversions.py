"""sensor_msgs / internvla_msgs <-> vision types (real message classes, no graph needed)."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from internvla_msgs.msg import SpatialPrompt
from internvla_policy.ros.msg_conversions import (
    array_to_image,
    compressed_to_rgb,
    depth_image_to_metres,
    duration_from_seconds,
    duration_to_seconds,
    image_to_array,
    image_to_rgb,
    intrinsics_from_camera_info,
    result_to_spatial_prompt,
    rgb_to_compressed,
    spatial_prompt_to_result,
)
from internvla_policy.vision.geometry import Box2D, GroundingResult, Keypoint2D, ParseStatus, Point2D, Trace2D
from internvla_policy.vision.imaging import ImageFormatError

HEADER = Header(stamp=Time(sec=1_700_000_000, nanosec=123_456_789), frame_id="scene_camera_optical_frame")
RGB = np.random.default_rng(0).integers(0, 256, (6, 8, 3)).astype(np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_colour_images_round_trip_through_messages(encoding):
    pixels = {
        "rgb8": RGB,
        "bgr8": RGB[:, :, ::-1],
        "rgba8": np.dstack([RGB, np.full((6, 8), 9, np.uint8)]),
        "bgra8": np.dstack([RGB[:, :, ::-1], np.full((6, 8), 9, np.uint8)]),
        "mono8": RGB[:, :, 0],
    }[encoding]
    msg = array_to_image(np.ascontiguousarray(pixels), encoding, HEADER)
    assert (msg.width, msg.height, msg.encoding, msg.is_bigendian) == (8, 6, encoding, 0)
    assert msg.header == HEADER
    np.testing.assert_array_equal(image_to_array(msg), pixels)
    expected = np.repeat(RGB[:, :, :1], 3, axis=2) if encoding == "mono8" else RGB
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


def test_a_depth_image_on_the_camera_topic_is_named_as_such():
    msg = array_to_image(np.zeros((4, 4), np.uint16), "16UC1", HEADER)
    with pytest.raises(ImageFormatError, match="camera image has encoding '16UC1'"):
        image_to_rgb(msg)


def test_malformed_messages_raise_image_format_error():
    msg = array_to_image(RGB, "rgb8", HEADER)
    msg.step = 10
    with pytest.raises(ImageFormatError, match="step 10 is smaller"):
        image_to_rgb(msg)
    big = Image(header=HEADER, width=8000, height=8000, encoding="rgb8", step=24000)
    with pytest.raises(ImageFormatError, match="exceeds the limit"):
        image_to_rgb(big, max_pixels=4096 * 4096)


def test_depth_messages_to_metres():
    msg = array_to_image(np.array([[0, 1500]], np.uint16), "16UC1", HEADER)
    np.testing.assert_allclose(depth_image_to_metres(msg), [[np.nan, 1.5]])
    msg = array_to_image(np.array([[np.nan, 0.75]], np.float32), "32FC1", HEADER)
    np.testing.assert_allclose(depth_image_to_metres(msg), [[np.nan, 0.75]])


def test_compressed_messages_round_trip():
    msg = rgb_to_compressed(RGB, HEADER, "png")
    assert msg.format == "png" and msg.header == HEADER
    np.testing.assert_array_equal(compressed_to_rgb(msg), RGB)


@pytest.mark.parametrize(
    ("seconds", "sec", "nanosec"),
    [(0.0, 0, 0), (1.5, 1, 500_000_000), (0.000000001, 0, 1), (-0.25, -1, 750_000_000), (2.9999999999, 3, 0)],
)
def test_durations_are_normalised(seconds, sec, nanosec):
    duration = duration_from_seconds(seconds)
    assert (duration.sec, duration.nanosec) == (sec, nanosec)
    assert duration_to_seconds(duration) == pytest.approx(seconds, abs=1e-9)
    assert duration_to_seconds(Duration(sec=2, nanosec=250_000_000)) == 2.25


def test_intrinsics_from_camera_info():
    info = CameraInfo(width=640, height=480, k=[606.99, 0.0, 321.73, 0.0, 606.49, 260.76, 0.0, 0.0, 1.0])
    k = intrinsics_from_camera_info(info)
    assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (606.99, 606.49, 321.73, 260.76, 640, 480)
    with pytest.raises(ValueError, match="invalid pinhole intrinsics"):
        intrinsics_from_camera_info(CameraInfo(width=640, height=480))


def test_spatial_prompt_round_trip():
    result = GroundingResult(
        640,
        480,
        boxes=(Box2D(20.5, 40.0, 220.0, 240.25, "red block", 0.75),),
        points=(Keypoint2D(Point2D(320.0, 240.0), "handle"),),
        traces=(Trace2D((Point2D(1.0, 2.0), Point2D(3.0, 4.0)), "gripper"),),
        status=ParseStatus.PARTIAL,
        status_message="the answer ends inside unfinished JSON (truncated)",
    )
    msg = result_to_spatial_prompt(result, HEADER, "pick up the red block", "Your task is: ...", "[...", 0.42)
    assert msg.header == HEADER
    assert (msg.image_width, msg.image_height) == (640, 480)
    assert (msg.instruction, msg.prompt, msg.raw_answer) == (
        "pick up the red block",
        "Your task is: ...",
        "[...",
    )
    assert msg.parse_status == SpatialPrompt.PARSE_PARTIAL
    assert (msg.latency.sec, msg.latency.nanosec) == (0, 420_000_000)
    assert msg.boxes[0].label == "red block" and msg.boxes[0].x_min == 20.5
    assert msg.traces[0].points[1].y == 4.0
    assert spatial_prompt_to_result(msg) == result


def test_parse_status_values_are_the_message_constants():
    assert [s.value for s in ParseStatus] == [
        SpatialPrompt.PARSE_OK,
        SpatialPrompt.PARSE_PARTIAL,
        SpatialPrompt.PARSE_EMPTY,
        SpatialPrompt.PARSE_FAILED,
    ]
    with pytest.raises(ValueError):
        spatial_prompt_to_result(SpatialPrompt(parse_status=9))
