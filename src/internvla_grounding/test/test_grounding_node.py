"""The grounding node over real DDS with the tiny model: topics, timing, markers and the Ground service."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo
from visualization_msgs.msg import Marker

from internvla_grounding.parsing import parse_answer
from internvla_grounding.prompts import DEFAULT_TEMPLATES, GroundingKind, render
from internvla_msgs.msg import SpatialPrompt
from internvla_msgs.srv import Ground
from internvla_policy.model import load_model_cached
from internvla_policy.ros.msg_conversions import array_to_image, duration_to_seconds, image_to_rgb

INSTRUCTION = "Pick up the red block."
TIMEOUT_S = 30.0
MAX_FRAME_AGE_S = 6.0  # long enough for a loaded CI machine to ground a frame before it turns stale


@pytest.fixture(scope="module")
def node(start_node, graph):
    started = start_node(max_frame_age_s=MAX_FRAME_AGE_S)
    graph.wait_for_subscribers()
    graph.instruct(INSTRUCTION)
    return started


def ground(graph, stamp_sec: int, pixels=None) -> SpatialPrompt:
    """Publish a frame until its spatial prompt arrives (sensor topics are best effort)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        graph.publish_frame(stamp_sec, pixels)
        try:
            return graph.wait_for(lambda: graph.prompt_for(stamp_sec), 2.0, f"prompt for frame {stamp_sec}")
        except AssertionError:
            continue
    raise AssertionError(f"frame {stamp_sec} was never grounded")


def test_a_frame_gives_a_spatial_prompt_with_its_header_from_the_models_answer(node, graph, tiny_run):
    frame = graph.publish_frame(100)
    prompt = ground(graph, 100)

    assert prompt.header == frame.header
    assert (prompt.image_width, prompt.image_height) == (160, 120)
    assert prompt.instruction == INSTRUCTION
    assert prompt.prompt == render(DEFAULT_TEMPLATES[GroundingKind.BOX], INSTRUCTION)
    assert 0.0 < duration_to_seconds(prompt.latency) < TIMEOUT_S
    # The node ran the model on exactly this frame and prompt (greedy decoding is deterministic) ...
    model = load_model_cached(tiny_run)
    assert prompt.raw_answer == model.answer(image_to_rgb(frame), prompt.prompt, max_new_tokens=8)
    # ... and reports what the parser makes of that answer (the random tiny model writes no JSON).
    expected = parse_answer(
        prompt.raw_answer, (160, 120), model.processor_image_size(160, 120), kind=GroundingKind.BOX
    )
    assert prompt.parse_status == expected.status.value
    assert prompt.status_message == expected.status_message != ""
    assert len(prompt.boxes) == len(expected.boxes)


def test_the_annotated_image_is_the_frame_with_the_instruction_and_status(node, graph):
    source = image_to_rgb(graph.publish_frame(110))
    ground(graph, 110)
    annotated = graph.wait_for(
        lambda: next((m for m in graph.images if m.header.stamp.sec == 110), None),
        TIMEOUT_S,
        "annotated image",
    )
    assert annotated.header == graph.header(110)
    assert (annotated.width, annotated.height, annotated.encoding) == (160, 120, "rgb8")
    pixels = image_to_rgb(annotated)
    assert not np.array_equal(pixels[:12], source[:12])  # the caption band
    # No geometry in the answer: nothing is drawn below the caption.
    np.testing.assert_array_equal(pixels[30:], source[30:])


def test_without_depth_no_markers_are_published_and_that_is_said_once(node, graph):
    for stamp in (120, 121, 122):
        ground(graph, stamp)
    assert graph.markers == []
    assert len(node.lines_matching("no 3-D markers")) == 1


def test_only_the_newest_of_a_burst_of_frames_is_grounded(node, graph):
    before = len(graph.prompts)
    burst = list(range(200, 220))
    for stamp in burst:
        graph.publish_frame(stamp)
        time.sleep(0.002)
    graph.wait_for(lambda: graph.prompt_for(burst[-1]), TIMEOUT_S, "the newest frame of the burst")
    time.sleep(0.5)
    grounded = [p.header.stamp.sec for p in graph.prompts[before:]]
    assert grounded[-1] == burst[-1]
    assert set(grounded) <= set(burst)
    assert len(grounded) <= 3, f"frames were queued instead of skipped: {grounded}"


def test_a_new_instruction_is_grounded_on_the_newest_frame(node, graph):
    ground(graph, 230)
    graph.instruct("Put the red block in the bowl")
    prompt = graph.wait_for(
        lambda: next((p for p in graph.prompts if p.instruction == "Put the red block in the bowl"), None),
        TIMEOUT_S,
        "a prompt for the new instruction",
    )
    assert prompt.header.stamp.sec == 230  # no new frame was needed
    graph.instruct(INSTRUCTION)
    graph.wait_for(lambda: graph.prompts[-1].instruction == INSTRUCTION, TIMEOUT_S, "the instruction back")


def test_an_instruction_after_the_camera_went_quiet_waits_for_the_next_frame(node, graph):
    ground(graph, 240)
    time.sleep(MAX_FRAME_AGE_S + 0.5)  # frame 240 is now too old to ground
    graph.instruct("Open the drawer")
    time.sleep(1.0)
    assert all(p.instruction != "Open the drawer" for p in graph.prompts)
    prompt = ground(graph, 241)
    assert prompt.instruction == "Open the drawer"
    graph.instruct(INSTRUCTION)
    graph.wait_for(lambda: graph.prompts[-1].instruction == INSTRUCTION, TIMEOUT_S, "the instruction back")


def test_with_depth_and_camera_info_markers_come_in_the_depth_cameras_frame(node, graph):
    k = [150.0, 0.0, 80.0, 0.0, 150.0, 60.0, 0.0, 0.0, 1.0]
    for stamp in range(300, 310):  # sensor topics are best effort: retry with a new stamp if one is lost
        depth_header = graph.header(stamp, "depth_optical_frame")
        graph.info_pub.publish(CameraInfo(header=depth_header, width=160, height=120, k=k))
        graph.depth_pub.publish(array_to_image(np.full((120, 160), 0.8, np.float32), "32FC1", depth_header))
        time.sleep(0.1)
        ground(graph, stamp)
        try:
            graph.wait_for(lambda: graph.markers, 1.0, "markers")
            break
        except AssertionError:
            continue
    markers = graph.markers[-1]
    assert markers.markers[0].action == Marker.DELETEALL  # RViz shows only the newest grounding
    assert markers.markers[0].header.stamp == graph.prompts[-1].header.stamp
    assert markers.markers[0].header.frame_id == "depth_optical_frame"
    # The tiny model grounds nothing, so nothing else is drawn (marker geometry: test_markers.py).
    assert len(markers.markers) == 1


def request(graph, image, instruction: str, kind: int) -> Ground.Response:
    future = graph.ground.call_async(Ground.Request(image=image, instruction=instruction, kind=kind))
    return graph.wait_for(lambda: future.result() if future.done() else None, TIMEOUT_S, "Ground response")


def test_the_ground_service_answers_for_the_requested_image_and_kind(node, graph, tiny_run):
    before = len(graph.prompts)
    image = array_to_image(np.full((48, 64, 3), 90, np.uint8), "bgr8", graph.header(400, "wrist_camera"))
    response = request(graph, image, "Point at the handle", Ground.Request.KIND_POINT)

    prompt = response.spatial_prompt
    assert prompt.header == image.header
    assert (prompt.image_width, prompt.image_height) == (64, 48)
    assert prompt.instruction == "Point at the handle"
    assert prompt.prompt == render(DEFAULT_TEMPLATES[GroundingKind.POINT], "Point at the handle")
    assert response.success == (prompt.parse_status != SpatialPrompt.PARSE_FAILED)
    assert response.message == (prompt.status_message or "ok")
    model_size = load_model_cached(tiny_run).processor_image_size(64, 48)
    assert (
        prompt.parse_status
        == parse_answer(prompt.raw_answer, (64, 48), model_size, kind=GroundingKind.POINT).status
    )
    time.sleep(0.3)
    assert all(p.header.stamp.sec != 400 for p in graph.prompts[before:])  # answered, not published


@pytest.mark.parametrize(
    ("change", "instruction", "kind", "message"),
    [
        ({"step": 10}, "Point at the handle", 1, "step 10 is smaller"),
        ({"encoding": "yuv422"}, "Point at the handle", 1, "camera image has encoding 'yuv422'"),
        ({}, "   ", 1, "empty instruction"),
        ({}, "x" * 10_000, 1, "10000 characters, more than max_instruction_length=1000"),
        ({}, "Point at the handle", 7, "unknown grounding kind code 7"),
    ],
)
def test_bad_ground_requests_fail_with_a_reason(node, graph, change, instruction, kind, message):
    image = array_to_image(np.zeros((48, 64, 3), np.uint8), "rgb8", graph.header(410))
    for field, value in change.items():
        setattr(image, field, value)
    response = request(graph, image, instruction, kind)
    assert response.success is False
    assert message in response.message
    assert response.spatial_prompt.header == image.header
