"""Grounder: template, tiny model answer and parse, with no ROS in between."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_grounding.grounder import Grounder
from internvla_grounding.parsing import CoordinateConvention, parse_answer
from internvla_grounding.prompts import DEFAULT_TEMPLATES, GroundingKind, render
from internvla_policy.model import load_model_cached

FRAME = np.random.default_rng(5).integers(0, 256, (120, 160, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def model(tiny_run):
    return load_model_cached(tiny_run)


@pytest.mark.parametrize("kind", list(GroundingKind))
def test_ground_asks_with_the_kinds_template_and_parses_the_answer_in_frame_pixels(model, kind):
    grounding = Grounder(model, max_new_tokens=8).ground(FRAME, "Open the drawer.", kind)
    assert grounding.kind is kind
    assert grounding.instruction == "Open the drawer."
    assert grounding.prompt == render(DEFAULT_TEMPLATES[kind], "Open the drawer.")
    assert grounding.raw_answer == model.answer(FRAME, grounding.prompt, max_new_tokens=8)
    assert grounding.inference_s > 0
    model_size = model.processor_image_size(160, 120)
    assert grounding.result == parse_answer(grounding.raw_answer, (160, 120), model_size, kind=kind)


def test_templates_and_coordinate_convention_are_the_callers(model):
    templates = {**DEFAULT_TEMPLATES, GroundingKind.BOX: "Where is {instruction}? Answer with bbox_2d JSON."}
    grounder = Grounder(model, templates, CoordinateConvention.NORMALIZED_1000, max_new_tokens=4)
    grounding = grounder.ground(FRAME, "the red block", GroundingKind.BOX)
    assert grounding.prompt == "Where is the red block? Answer with bbox_2d JSON."
    expected = parse_answer(
        grounding.raw_answer, (160, 120), None, CoordinateConvention.NORMALIZED_1000, "box"
    )
    assert grounding.result.status == expected.status
