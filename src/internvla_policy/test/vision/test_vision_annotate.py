"""Drawing grounding results on frames."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_policy.vision.annotate import PALETTE, AnnotationStyle, color_for, draw_grounding
from internvla_policy.vision.geometry import Box2D, GroundingResult, Keypoint2D, ParseStatus, Point2D, Trace2D

THIN = AnnotationStyle(thickness=1, point_radius=3)


def result(boxes=(), points=(), traces=(), size=(200, 100)) -> GroundingResult:
    return GroundingResult(size[0], size[1], tuple(boxes), tuple(points), tuple(traces), ParseStatus.OK)


def colour_at(image: np.ndarray, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in image[y, x])


def drawn_in(image: np.ndarray, x: int, y: int, colour: tuple[int, int, int]) -> bool:
    """The pixel shows the colour (anti-aliased lines reach about 90% of it even on pixel centres)."""
    return bool(np.abs(image[y, x].astype(int) - colour).max() <= 40)


def test_the_input_frame_is_never_modified_and_the_output_matches_it():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame.flags.writeable = False  # frames decoded from messages may be read-only views
    drawn = draw_grounding(frame, result([Box2D(10, 10, 60, 50, "cup")]), caption="pick up the cup [box: OK]")
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    assert not frame.any()
    assert drawn.any()


def test_box_edges_are_drawn_in_the_labels_colour_and_the_inside_is_left_alone():
    drawn = draw_grounding(
        np.zeros((100, 200, 3), np.uint8), result([Box2D(40, 30, 120, 90, "cup")]), style=THIN
    )
    cup = color_for("cup")
    # Pixel columns 40 and 119 are the first and last inside the box (Point2D: pixel i spans [i, i+1)).
    assert drawn_in(drawn, 40, 60, cup)
    assert drawn_in(drawn, 119, 60, cup)
    assert drawn_in(drawn, 80, 89, cup)
    assert colour_at(drawn, 80, 60) == (0, 0, 0)
    assert colour_at(drawn, 150, 60) == (0, 0, 0)
    # The label tag sits above the box, filled with the same colour.
    tag = drawn[15:29, 41:60].reshape(-1, 3)
    assert (tag == cup).all(axis=1).sum() > 100


def test_keypoints_are_filled_discs_with_a_white_ring():
    style = AnnotationStyle(thickness=2, point_radius=4)
    point = Keypoint2D(Point2D(100.5, 50.5), "handle")
    drawn = draw_grounding(np.zeros((100, 200, 3), np.uint8), result(points=[point]), style=style)
    handle = color_for("handle")
    assert drawn_in(drawn, 100, 50, handle)
    assert drawn_in(drawn, 100 + 3, 50, handle)
    assert min(colour_at(drawn, 100, 50 + 6)) > 200  # the ring, radius 4 + 2
    assert colour_at(drawn, 100, 50 + 9) == (0, 0, 0)


def test_traces_are_polylines_from_a_start_dot_to_an_arrow_head():
    trace = Trace2D((Point2D(20.5, 50.5), Point2D(100.5, 50.5), Point2D(180.5, 50.5)), "gripper")
    drawn = draw_grounding(np.zeros((100, 200, 3), np.uint8), result(traces=[trace]), style=THIN)
    colour = color_for("gripper")
    for x in (20, 60, 100, 140, 175):
        assert drawn_in(drawn, x, 50, colour)
    assert drawn_in(drawn, 20, 52, colour)  # the start dot is wider than the line
    assert colour_at(drawn, 60, 53) == (0, 0, 0)
    assert drawn_in(drawn, 174, 44, colour)  # a barb of the arrow head near the end
    assert colour_at(drawn, 150, 44) == (0, 0, 0)


def test_same_label_same_colour_and_labels_spread_over_the_palette():
    assert color_for("red block") == color_for("red block")
    labels = ["red block", "bowl", "cup", "potato", "pan", "drawer", "gripper", ""]
    assert {color_for(label) for label in labels} <= set(PALETTE)
    assert len({color_for(label) for label in labels}) >= 4


def test_a_result_is_scaled_onto_a_frame_of_another_size():
    half = draw_grounding(
        np.zeros((50, 100, 3), np.uint8), result([Box2D(40, 30, 120, 90, "cup")]), style=THIN
    )
    assert drawn_in(half, 20, 30, color_for("cup"))  # x 40 -> 20 on the half-size frame
    assert colour_at(half, 40, 30) == (0, 0, 0)


def test_caption_band_is_shaded_for_contrast():
    drawn = draw_grounding(np.full((100, 200, 3), 200, np.uint8), result(), caption="open the drawer")
    assert colour_at(drawn, 199, 2) == (80, 80, 80)  # 200 * 2 // 5, right of the text
    assert colour_at(drawn, 100, 90) == (200, 200, 200)


@pytest.mark.parametrize("layout", ["bgr-view", "fortran"])
def test_frames_with_unusual_strides_are_accepted(layout):
    base = np.zeros((100, 200, 3), np.uint8)
    frame = base[:, :, ::-1] if layout == "bgr-view" else np.asfortranarray(base)
    drawn = draw_grounding(frame, result([Box2D(40, 30, 120, 90, "cup")]), style=THIN)
    assert drawn_in(drawn, 40, 60, color_for("cup"))


def test_unusual_labels_and_boxes_at_the_border_do_not_fail():
    boxes = [Box2D(0, 0, 200, 100, "红色方块"), Box2D(190, 90, 200, 100, "x" * 300, score=0.42)]
    drawn = draw_grounding(np.zeros((100, 200, 3), np.uint8), result(boxes))
    assert drawn.shape == (100, 200, 3)
