"""The node on a CompressedImage camera (image_transport:=compressed), over real DDS."""

from __future__ import annotations

import array
import io
import time

import numpy as np
import pytest
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from internvla_policy.ros.msg_conversions import rgb_to_compressed

TIMEOUT_S = 30.0
THROTTLE_S = 1.0


@pytest.fixture(scope="module")
def node(start_node, graph):
    started = start_node(image_transport="compressed", warn_throttle_s=THROTTLE_S)
    graph.wait_for(lambda: graph.compressed_pub.get_subscription_count() > 0, TIMEOUT_S, "discovery")
    graph.wait_for(lambda: graph.instruction_pub.get_subscription_count() > 0, TIMEOUT_S, "discovery")
    graph.instruct("Pick up the red block.")
    return started


def frame_pixels() -> np.ndarray:
    frame = np.full((120, 160, 3), 128, np.uint8)
    frame[40:60, 32:53] = (200, 30, 30)
    return frame


def ground_compressed(graph, stamp: int, fmt: str = "jpeg"):
    msg = rgb_to_compressed(frame_pixels(), graph.header(stamp), fmt)
    deadline = time.monotonic() + TIMEOUT_S
    while not graph.prompt_for(stamp):
        assert time.monotonic() < deadline, f"compressed frame {stamp} was not grounded"
        graph.compressed_pub.publish(msg)
        try:
            graph.wait_for(lambda: graph.prompt_for(stamp), 2.0, f"prompt for frame {stamp}")
        except AssertionError:
            continue
    return graph.prompt_for(stamp)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_frames_are_grounded_with_their_header(node, graph, fmt):
    stamp = 5000 if fmt == "jpeg" else 5001
    prompt = ground_compressed(graph, stamp, fmt)
    assert prompt.header == graph.header(stamp)
    assert (prompt.image_width, prompt.image_height) == (160, 120)
    annotated = graph.wait_for(
        lambda: next((m for m in graph.images if m.header.stamp.sec == stamp), None),
        TIMEOUT_S,
        "annotated image",
    )
    assert (annotated.width, annotated.height, annotated.encoding) == (160, 120, "rgb8")


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (16, 16)).save(buffer, format="GIF")
    return buffer.getvalue()


BAD = {
    "not-an-image": (lambda: b"this is not a JPEG", "cannot decode compressed image"),
    "gif": (gif_bytes, "compressed data is GIF, expected JPEG or PNG"),
    "truncated-jpeg": (
        lambda: bytes(rgb_to_compressed(frame_pixels(), Header()).data)[:600],
        "cannot decode compressed image",
    ),
    # A real 8000x8000 image (a few hundred kB as PNG): rejected from its header, never decompressed.
    "8000x8000": (lambda: png_bytes(8000, 8000), "image of 8000x8000 exceeds the limit of 16777216 pixels"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_compressed_frames(node, graph, case):
    make, warning = BAD[case]
    stamp = 6000 + 10 * list(BAD).index(case)
    payload = array.array("B", make())
    time.sleep(THROTTLE_S)
    mark, outputs = node.mark(), len(graph.prompts)
    for _ in range(3):
        graph.compressed_pub.publish(CompressedImage(header=graph.header(stamp), format="jpeg", data=payload))
        time.sleep(0.05)
    node.wait_for_line(rf"\[WARN\].*dropped image: {warning}", TIMEOUT_S, start=mark)
    ground_compressed(graph, stamp + 1)
    assert all(p.header.stamp.sec != stamp for p in graph.prompts[outputs:])
    assert node.process.poll() is None
