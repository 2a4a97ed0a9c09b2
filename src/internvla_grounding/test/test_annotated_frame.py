"""A realistic grounding drawn on a real frame; writes the picture shown in docs/.

The frame is the first base-camera frame of sim_pick_place episode 2 ("Move the potato to the
top of the cooking utensils."); the answers are what a grounded model writes for it, in Qwen2.5-VL
pixels of the processor-resized 644x476 image. Set INTERNVLA_DOCS_DIR to keep the PNG
(`INTERNVLA_DOCS_DIR=docs pytest .../test_annotated_frame.py` regenerates docs/grounding_annotated.png).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from internvla_grounding.parsing import parse_answer
from internvla_grounding.prompts import GroundingKind
from internvla_policy.model import load_model_cached
from internvla_policy.vision.annotate import color_for, draw_grounding
from internvla_policy.vision.geometry import ParseStatus

SHARED = Path(os.environ["INTERNVLA_SHARED_DIR"])
VIDEO = SHARED / "data/sim_pick_place/videos/chunk-000/video.base_view/episode_000002.mp4"
INSTRUCTION = "Move the potato to the top of the cooking utensils."
BOX_ANSWER = """```json
[
    {"bbox_2d": [413, 244, 445, 274], "label": "potato"},
    {"bbox_2d": [337, 184, 447, 268], "label": "cooking utensils"}
]
```"""
POINT_ANSWER = '[{"point_2d": [429, 259], "label": "grasp"}, {"point_2d": [399, 211], "label": "place"}]'
TRACE_ANSWER = (
    '[{"trace": [[318, 60], [362, 140], [412, 214], [429, 250], [418, 222], [399, 209]], "label": "gripper"}]'
)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    video = pytest.importorskip("internvla_policy.data.video")
    if not VIDEO.is_file():
        pytest.skip(f"sim_pick_place video not found at {VIDEO} (set INTERNVLA_SHARED_DIR)")
    with video.VideoDecoder(VIDEO, fps=30.0) as decoder:
        return np.array(decoder.frame_at(0.0))


def test_a_parsed_answer_drawn_on_a_real_frame(frame, tiny_run, tmp_path):
    height, width = frame.shape[:2]
    model_size = load_model_cached(tiny_run).processor_image_size(width, height)
    assert model_size == (644, 476)  # Qwen's smart_resize of 640x480 (factor 28)
    parsed = {
        kind: parse_answer(answer, (width, height), model_size, kind=kind)
        for kind, answer in (
            (GroundingKind.BOX, BOX_ANSWER),
            (GroundingKind.POINT, POINT_ANSWER),
            (GroundingKind.TRACE, TRACE_ANSWER),
        )
    }
    assert all(result.status is ParseStatus.OK for result in parsed.values())
    potato, pan = parsed[GroundingKind.BOX].boxes
    assert (potato.x_min, potato.y_min, potato.x_max, potato.y_max) == pytest.approx(
        (410, 246, 442, 276), abs=1
    )
    assert (pan.x_min, pan.y_min, pan.x_max, pan.y_max) == pytest.approx((335, 186, 444, 270), abs=1)
    # The answer fits the picture: a yellow-brown potato, a black frying pan.
    cx, cy = round(potato.center.x), round(potato.center.y)
    r, g, b = frame[cy - 3 : cy + 3, cx - 3 : cx + 3].reshape(-1, 3).mean(axis=0)
    assert r > g > b + 30
    assert (
        frame[
            round(pan.y_min) + 5 : round(pan.y_min) + 45, round(pan.x_min) + 20 : round(pan.x_max) - 10
        ].mean()
        < 40
    )

    result = replace(
        parsed[GroundingKind.BOX],
        points=parsed[GroundingKind.POINT].points,
        traces=parsed[GroundingKind.TRACE].traces,
    )
    drawn = draw_grounding(frame, result, caption=f"{INSTRUCTION} [box, point, trace: OK]")
    left_edge = drawn[cy, round(potato.x_min)]
    assert np.abs(left_edge.astype(int) - color_for("potato")).max() <= 60
    np.testing.assert_array_equal(drawn[400:, :100], frame[400:, :100])  # nothing grounded there

    out_dir = Path(os.environ.get("INTERNVLA_DOCS_DIR", tmp_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(drawn).save(out_dir / "grounding_annotated.png")
    assert (out_dir / "grounding_annotated.png").stat().st_size > 10_000
