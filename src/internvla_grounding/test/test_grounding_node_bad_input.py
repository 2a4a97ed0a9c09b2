"""Bad input over real DDS: the node warns (throttled), publishes nothing for it, and keeps serving.

Each case sends a burst of one kind of bad input, then a good frame, and checks three things in
the node's own log and outputs: exactly one warning for the burst (with the running drop count),
no output traceable to the bad input, and a spatial prompt for the good frame that follows.
"""

from __future__ import annotations

import array
import time

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from internvla_policy.ros.msg_conversions import array_to_image

INSTRUCTION = "Pick up the red block."
TIMEOUT_S = 30.0
THROTTLE_S = 2.0  # wide enough that a burst handled slowly on a loaded machine still warns once
BURST = 5


@pytest.fixture(scope="module")
def node(start_node, graph):
    started = start_node(warn_throttle_s=THROTTLE_S)
    graph.wait_for_subscribers()
    graph.instruct(INSTRUCTION)
    return started


def good_frame_is_grounded(graph, stamp: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not graph.prompt_for(stamp):
        assert time.monotonic() < deadline, f"the good frame {stamp} after the bad input was not grounded"
        graph.publish_frame(stamp)
        try:
            graph.wait_for(lambda: graph.prompt_for(stamp), 2.0, f"prompt for frame {stamp}")
        except AssertionError:
            continue


def bad_image(graph, stamp: int, **fields) -> Image:
    msg = array_to_image(np.zeros((120, 160, 3), np.uint8), "rgb8", graph.header(stamp))
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


# What to corrupt in an otherwise good 160x120 rgb8 frame, and the warning that must follow.
BAD_IMAGES = {
    "wrong-encoding": ({"encoding": "yuv422"}, "camera image has encoding 'yuv422'"),
    "depth-on-camera-topic": (
        {"encoding": "16UC1", "step": 320, "data": array.array("B", bytes(320 * 120))},
        "camera image has encoding '16UC1'",
    ),
    "step-mismatch": ({"step": 160 * 3 - 1}, "step 479 is smaller than width \\* bytes per pixel = 480"),
    "data-too-short": (
        {"data": array.array("B", bytes(1000))},
        "data has 1000 bytes, expected step \\* height",
    ),
    "zero-size": (
        {"width": 0, "height": 0, "step": 0, "data": array.array("B")},
        "zero-size image \\(0x0\\)",
    ),
    # Fast DDS's default transports do not carry a real 192 MB frame between processes (best effort
    # loses its fragments), so the oversized frame arrives as what the node must judge first: its
    # size fields. A real 8000x8000 image is sent compressed in test_grounding_node_compressed.py.
    "8000x8000": ({"width": 8000, "height": 8000, "step": 24000}, "image of 8000x8000 exceeds the limit"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_camera_frames(node, graph, case):
    fields, warning = BAD_IMAGES[case]
    stamp = 1000 + 10 * list(BAD_IMAGES).index(case)
    time.sleep(THROTTLE_S)  # let the previous case's throttle expire
    mark, outputs = node.mark(), len(graph.prompts)
    for _ in range(BURST):
        graph.image_pub.publish(bad_image(graph, stamp, **fields))
        time.sleep(0.02)
    line = node.wait_for_line(rf"\[WARN\].*dropped image: {warning}", TIMEOUT_S, start=mark)
    assert "image input(s) dropped so far" in line
    good_frame_is_grounded(graph, stamp + 1)
    assert len(node.lines_matching(r"\[WARN\].*dropped image", start=mark)) == 1  # throttled
    assert all(p.header.stamp.sec != stamp for p in graph.prompts[outputs:])
    assert all(m.header.stamp.sec != stamp for m in graph.images)
    assert node.process.poll() is None


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("", "empty instruction"),
        ("   \n ", "empty instruction"),
        ("x" * 10_000, "instruction of 10000 characters, more than max_instruction_length"),
        ("pick up the red\x1b[2J block", "instruction contains a control character U\\+001B"),
    ],
)
def test_bad_instructions_keep_the_previous_one(node, graph, text, warning):
    time.sleep(THROTTLE_S)
    mark = node.mark()
    for _ in range(BURST):
        graph.instruct(text)
    node.wait_for_line(rf"\[WARN\].*dropped instruction: {warning}", TIMEOUT_S, start=mark)
    stamp = 2000 + len(text)
    good_frame_is_grounded(graph, stamp)
    assert graph.prompt_for(stamp).instruction == INSTRUCTION
    assert len(node.lines_matching(r"\[WARN\].*dropped instruction", start=mark)) == 1
    assert all(p.instruction == INSTRUCTION for p in graph.prompts)


def test_nan_depth_gives_no_markers_and_good_depth_then_does(node, graph):
    k = [150.0, 0.0, 80.0, 0.0, 150.0, 60.0, 0.0, 0.0, 1.0]
    time.sleep(THROTTLE_S)
    mark = node.mark()
    nan_depth = np.full((120, 160), np.nan, np.float32)
    for stamp in (3000, 3001, 3002):
        header = graph.header(stamp, "depth_optical_frame")
        graph.info_pub.publish(CameraInfo(header=header, width=160, height=120, k=k))
        graph.depth_pub.publish(array_to_image(nan_depth, "32FC1", header))
        time.sleep(0.05)
    node.wait_for_line(r"\[WARN\].*dropped depth: no valid reading in the depth image", TIMEOUT_S, start=mark)
    good_frame_is_grounded(graph, 3002)
    time.sleep(0.5)
    assert graph.markers == []  # no depth to lift anything with: no 3-D output at all

    for stamp in range(3010, 3020):  # the next good depth frame is used
        header = graph.header(stamp, "depth_optical_frame")
        graph.info_pub.publish(CameraInfo(header=header, width=160, height=120, k=k))
        graph.depth_pub.publish(array_to_image(np.full((120, 160), 0.9, np.float32), "32FC1", header))
        time.sleep(0.1)
        good_frame_is_grounded(graph, stamp)
        try:
            graph.wait_for(lambda: graph.markers, 1.0, "markers")
            break
        except AssertionError:
            continue
    assert graph.markers[-1].markers[0].header.stamp.sec >= 3010


def test_uncalibrated_camera_info_is_dropped(node, graph):
    time.sleep(THROTTLE_S)
    mark = node.mark()
    for _ in range(BURST):
        graph.info_pub.publish(CameraInfo(header=graph.header(4000), width=160, height=120))
    node.wait_for_line(r"\[WARN\].*dropped camera_info: invalid pinhole intrinsics", TIMEOUT_S, start=mark)
    good_frame_is_grounded(graph, 4001)
