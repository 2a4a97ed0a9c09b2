"""The four spatial-prompt modes: what reaches the model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from internvla_policy.control.spatial_prompt import (
    SpatialPrompt,
    apply_spatial_prompt,
    grounding_text,
    matching_camera,
    needs_prompt,
)
from internvla_policy.vision.geometry import Box2D, GroundingResult, Keypoint2D, Point2D, Trace2D

GROUNDING = GroundingResult(
    image_width=640,
    image_height=480,
    boxes=(Box2D(64.0, 48.0, 320.0, 240.0, "red block"),),
    points=(Keypoint2D(Point2D(320.0, 240.0), "bowl"),),
    traces=(Trace2D((Point2D(0.0, 0.0), Point2D(640.0, 480.0)), "gripper"),),
)
PROMPT = SpatialPrompt("pick up the red block.", "wrist", GROUNDING)
IMAGES = [np.zeros((480, 640, 3), np.uint8), np.zeros((480, 640, 3), np.uint8)]
FRAMES = ("scene", "wrist")


def same_size(width: int, height: int) -> tuple[int, int]:
    return width, height


def test_latent_and_off_leave_the_input_alone():
    for mode in ("latent", "off"):
        assert not needs_prompt(mode)
        instruction, images = apply_spatial_prompt(mode, "pick.", IMAGES, FRAMES, PROMPT, same_size)
        assert instruction == "pick." and images is IMAGES


def test_text_appends_qwen_json_scaled_to_the_models_view():
    instruction, images = apply_spatial_prompt(
        "text", "pick up the red block.", IMAGES, FRAMES, PROMPT, lambda w, h: (224, 224)
    )
    head, _, payload = instruction.partition(" Grounding: ")
    assert head == "pick up the red block." and images is IMAGES
    assert json.loads(payload) == [
        {"bbox_2d": [22, 22, 112, 112], "label": "red block"},
        {"point_2d": [112, 112], "label": "bowl"},
        {"trace": [[0, 0], [224, 224]], "label": "gripper"},
    ]
    assert grounding_text(GroundingResult(10, 10), (10, 10)) == "[]"


def test_overlay_draws_on_the_matching_camera_only():
    _, images = apply_spatial_prompt("overlay", "pick.", IMAGES, FRAMES, PROMPT, same_size)
    assert not images[0].any()
    assert images[1].any()
    assert not IMAGES[1].any()  # the caller's frame is untouched


def test_modes_that_need_a_prompt_refuse_to_guess():
    with pytest.raises(ValueError, match="needs a spatial prompt"):
        apply_spatial_prompt("text", "pick.", IMAGES, FRAMES, None, same_size)
    elsewhere = SpatialPrompt("pick.", "head_camera", GROUNDING)
    assert matching_camera(elsewhere, FRAMES) is None
    assert matching_camera(elsewhere, ("only",)) == 0
    with pytest.raises(ValueError, match="head_camera"):
        apply_spatial_prompt("overlay", "pick.", IMAGES, FRAMES, elsewhere, same_size)
