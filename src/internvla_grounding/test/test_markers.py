"""RViz markers of parsed groundings, lifted with depth (message objects only, no graph)."""

from __future__ import annotations

import numpy as np
import pytest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from internvla_grounding.parsing import parse_answer
from internvla_grounding.prompts import GroundingKind
from internvla_grounding.ros.markers import grounding_markers
from internvla_policy.vision.annotate import color_for
from internvla_policy.vision.projection import DepthProjector, PinholeIntrinsics

K = PinholeIntrinsics(fx=300.0, fy=300.0, cx=159.5, cy=119.5, width=320, height=240)
HEADER = Header(frame_id="scene_camera_optical_frame")
ANSWER = (
    '[{"bbox_2d": [60, 40, 100, 80], "label": "red block", "point_2d": [80, 60]},'
    ' {"trace": [[80, 60], [120, 60], [160, 60]], "label": "gripper"}]'
)


def parsed(answer: str = ANSWER):
    # Model image 160x120, source image 320x240: every coordinate doubles.
    return parse_answer(answer, (320, 240), (160, 120), kind=GroundingKind.TRACE)


def by_namespace(markers) -> dict[str, list[Marker]]:
    groups: dict[str, list[Marker]] = {}
    for marker in markers.markers[1:]:
        groups.setdefault(marker.ns, []).append(marker)
    return groups


def test_boxes_points_and_traces_become_markers_in_the_camera_frame():
    projector = DepthProjector(np.full((240, 320), 2.0, np.float32), K, 320, 240)
    markers, missing = grounding_markers(parsed(), projector, HEADER)
    assert missing == 0
    assert markers.markers[0].action == Marker.DELETEALL
    groups = by_namespace(markers)
    assert sorted(groups) == ["boxes", "boxes/labels", "points", "points/labels", "traces", "traces/labels"]
    assert len({m.id for m in markers.markers[1:]}) == len(markers.markers) - 1
    assert all(m.header == HEADER for m in markers.markers)

    (box,) = groups["boxes"]
    assert box.type == Marker.LINE_STRIP and len(box.points) == 5
    corners = np.array([[p.x, p.y, p.z] for p in box.points])
    # Box [120, 80, 200, 160] in the 320x240 source at 2 m: x from (120 - 0.5 - 159.5) * 2 / 300.
    np.testing.assert_allclose(corners[0], [(120 - 160) * 2 / 300, (80 - 120) * 2 / 300, 2.0])
    np.testing.assert_allclose(corners[2], [(200 - 160) * 2 / 300, (160 - 120) * 2 / 300, 2.0])
    np.testing.assert_allclose(corners[0], corners[4])
    assert (box.color.r, box.color.g, box.color.b) == pytest.approx(
        tuple(c / 255 for c in color_for("red block"))
    )
    assert groups["boxes/labels"][0].text == "red block"

    (point,) = groups["points"]
    assert point.type == Marker.SPHERE_LIST
    assert (point.points[0].x, point.points[0].y, point.points[0].z) == pytest.approx((0.0, 0.0, 2.0))

    (trace,) = groups["traces"]
    assert trace.type == Marker.LINE_STRIP and len(trace.points) == 3
    assert [p.x for p in trace.points] == pytest.approx([0.0, 80 * 2 / 300, 160 * 2 / 300])
    assert all(m.pose.orientation.w == 1.0 for m in markers.markers[1:])


def test_items_without_valid_depth_are_left_out_and_counted():
    depth = np.full((240, 320), np.nan, np.float32)
    depth[:, 210:] = 1.0  # only the right third of the image has readings
    projector = DepthProjector(depth, K, 320, 240)
    markers, missing = grounding_markers(parsed(), projector, HEADER)
    groups = by_namespace(markers)
    assert missing == 2  # the box (x 120..200) and the point (x 160)
    assert "boxes" not in groups and "points" not in groups
    # The trace keeps the points that have depth (x = 240 and 320 source pixels) and is still drawn.
    assert len(groups["traces"][0].points) == 2


def test_nothing_grounded_gives_only_the_clearing_marker():
    projector = DepthProjector(np.ones((240, 320), np.float32), K, 320, 240)
    markers, missing = grounding_markers(parsed("no JSON here"), projector, HEADER)
    assert [m.action for m in markers.markers] == [Marker.DELETEALL]
    assert missing == 0
