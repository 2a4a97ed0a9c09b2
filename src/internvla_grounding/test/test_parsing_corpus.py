"""The parser over a corpus of realistic model answers, each with the geometry it must yield.

Source image 640x480 and model image 320x240, so model pixels map to source pixels by exactly x2
(and 0..1000 normalised coordinates by x0.64 / x0.48).
"""

from __future__ import annotations

import pytest

from internvla_grounding.parsing import CoordinateConvention, parse_answer
from internvla_grounding.prompts import GroundingKind
from internvla_policy.vision.geometry import ParseStatus

SOURCE = (640, 480)
MODEL = (320, 240)
OK, PARTIAL, EMPTY, FAILED = ParseStatus.OK, ParseStatus.PARTIAL, ParseStatus.EMPTY, ParseStatus.FAILED
RED = (20.0, 40.0, 220.0, 240.0)  # [10, 20, 110, 120] in model pixels
BOWL = (300.0, 60.0, 400.0, 180.0)  # [150, 30, 200, 90]
TWO = (
    '[{"bbox_2d": [10, 20, 110, 120], "label": "red block"}, '
    '{"bbox_2d": [150, 30, 200, 90], "label": "bowl"}]'
)


def case(answer, status, boxes=(), points=(), traces=(), kind=None, normalized=False, message="", id=None):
    expected = {"status": status, "boxes": boxes, "points": points, "traces": traces, "message": message}
    return pytest.param(answer, kind, normalized, expected, id=id)


CORPUS = [
    # Well-formed answers in the Qwen2.5-VL format.
    case('[{"bbox_2d": [10, 20, 110, 120], "label": "red block"}]', OK, [(*RED, "red block")], id="one-box"),
    case(TWO, OK, [(*RED, "red block"), (*BOWL, "bowl")], id="two-boxes"),
    case(f"```json\n{TWO}\n```", OK, [(*RED, "red block"), (*BOWL, "bowl")], id="fenced-json"),
    case(f"```\n{TWO}\n```", OK, [(*RED, "red block"), (*BOWL, "bowl")], id="fenced-no-language"),
    case(f"```json\n{TWO}", OK, [(*RED, "red block"), (*BOWL, "bowl")], id="fence-never-closed"),
    case(
        '```json\n[\n\t{"bbox_2d": [10, 20, 110, 120], "label": "red block"},\n'
        '\t{"bbox_2d": [150, 30, 200, 90], "label": "bowl"}\n]\n```',
        OK,
        [(*RED, "red block"), (*BOWL, "bowl")],
        id="pretty-printed-qwen",
    ),
    case(
        '{"bbox_2d": [10, 20, 110, 120], "label": "bowl"}', OK, [(*RED, "bowl")], id="single-object-no-list"
    ),
    case(
        '{"objects": [{"bbox_2d": [10, 20, 110, 120], "label": "cup"}]}',
        OK,
        [(*RED, "cup")],
        id="wrapped-objects",
    ),
    case('[{"bbox": [10, 20, 110, 120], "name": "cup"}]', OK, [(*RED, "cup")], id="alias-keys"),
    case('[{"BBOX_2D": [10, 20, 110, 120], "Label": "cup"}]', OK, [(*RED, "cup")], id="upper-case-keys"),
    case(
        '[{"bbox_2d": [10.5, 20.25, 110, 120], "label": "cup"}]',
        OK,
        [(21.0, 40.5, 220.0, 240.0, "cup")],
        id="fractional-pixels",
    ),
    case(
        '[{"bbox_2d": [10, 20, 110, 120], "label": "红色方块"}]', OK, [(*RED, "红色方块")], id="unicode-label"
    ),
    case(
        '[{"bbox_2d": [10, 20, 110, 120], "label": "red   block\\n"}]',
        OK,
        [(*RED, "red block")],
        id="label-whitespace-normalised",
    ),
    case(
        '[{"bbox_2d": [10, 20, 110, 120], "label": "cup", "score": 0.8}]',
        OK,
        [(*RED, "cup", 0.8)],
        id="score",
    ),
    case(
        '{"bbox_2d": [[10, 20, 110, 120], [150, 30, 200, 90]], "label": "cups"}',
        OK,
        [(*RED, "cups"), (*BOWL, "cups")],
        id="two-boxes-one-label",
    ),
    # Prose around the JSON.
    case(
        f"Sure! Here are the key objects:\n```json\n{TWO}\n```\nLet me know if you need more.",
        OK,
        [(*RED, "red block"), (*BOWL, "bowl")],
        id="prose-around-fence",
    ),
    case(f"The objects are {TWO}.", OK, [(*RED, "red block"), (*BOWL, "bowl")], id="inline-prose"),
    case(
        "The red block (the small one) is at [10, 20, 110, 120].", OK, [(*RED, "")], id="prose-aside-and-list"
    ),
    case(
        "Box: [10, 20, 110, 120]. Grasp here: [60, 70].",
        OK,
        [(*RED, "")],
        [(120.0, 140.0, "")],
        id="box-and-point-in-prose",
    ),
    # Python-isms and sloppy JSON.
    case("[{'bbox_2d': [10, 20, 110, 120], 'label': 'cup'}]", OK, [(*RED, "cup")], id="single-quotes"),
    case(
        "[{'point_2d': (100, 50), 'label': 'handle'}]",
        OK,
        points=[(200.0, 100.0, "handle")],
        id="python-tuple",
    ),
    case('[{"bbox_2d": [10, 20, 110, 120,], "label": "cup",},]', OK, [(*RED, "cup")], id="trailing-commas"),
    case('[{bbox_2d: [10, 20, 110, 120], label: "cup"}]', OK, [(*RED, "cup")], id="bare-keys"),
    # Points and traces.
    case(
        '[{"point_2d": [100, 50], "label": "handle"}, {"point_2d": [160, 120], "label": "bowl"}]',
        OK,
        points=[(200.0, 100.0, "handle"), (320.0, 240.0, "bowl")],
        kind=GroundingKind.POINT,
        id="points",
    ),
    case(
        '[{"bbox_2d": [10, 20, 110, 120], "point_2d": [60, 70], "label": "mug"}]',
        OK,
        [(*RED, "mug")],
        [(120.0, 140.0, "mug")],
        id="box-and-point-same-object",
    ),
    case("[160, 120]", OK, points=[(320.0, 240.0, "")], kind=GroundingKind.POINT, id="plain-point"),
    case(
        "[[10, 20], [30, 40]]",
        OK,
        points=[(20.0, 40.0, ""), (60.0, 80.0, "")],
        kind=GroundingKind.POINT,
        id="plain-pairs-as-points",
    ),
    case(
        "[[10, 20], [30, 40], [50, 60]]",
        OK,
        traces=[((20.0, 40.0), (60.0, 80.0), (100.0, 120.0))],
        kind=GroundingKind.TRACE,
        id="plain-pairs-as-trace",
    ),
    case(
        '[{"trace": [[10, 20], [30, 40], [50, 60]], "label": "gripper"}]',
        OK,
        traces=[((20.0, 40.0), (60.0, 80.0), (100.0, 120.0), "gripper")],
        kind=GroundingKind.TRACE,
        id="trace",
    ),
    case(
        '{"points": [[10, 20], [30, 40]], "label": "path"}',
        OK,
        traces=[((20.0, 40.0), (60.0, 80.0), "path")],
        kind=GroundingKind.TRACE,
        id="trace-under-points-key",
    ),
    case(
        '[{"trace": [[10, 20]], "label": "gripper"}]',
        FAILED,
        kind=GroundingKind.TRACE,
        message="fewer than 2",
        id="trace-one-point",
    ),
    # Plain coordinate lists.
    case("[10, 20, 110, 120]", OK, [(*RED, "")], id="plain-box"),
    case("[[10, 20, 110, 120], [150, 30, 200, 90]]", OK, [(*RED, ""), (*BOWL, "")], id="plain-boxes"),
    case("[10, 20, 110]", FAILED, message="coordinate list of length 3", id="plain-three-numbers"),
    # Truncated by the token limit.
    case(
        '[{"bbox_2d": [10, 20, 110, 120], "label": "red block"}, {"bbox_2d": [150, 30, 2',
        PARTIAL,
        [(*RED, "red block")],
        message="truncated",
        id="truncated-in-second-box",
    ),
    case(
        '[{"bbox_2d": [10, 20, 110, 120], "label": "red bl',
        PARTIAL,
        [(*RED, "")],
        message="label cut off",
        id="truncated-in-label",
    ),
    case(
        '[{"bbox_2d": [10, 20, 110, 120], "label": "cup"}',
        PARTIAL,
        [(*RED, "cup")],
        message="truncated",
        id="truncated-before-closing-bracket",
    ),
    case('```json\n[{"bbox_2d": [10, 20', FAILED, message="bbox_2d cut off", id="truncated-in-first-box"),
    case(
        '[{"trace": [[10, 20], [30, 40], [5',
        FAILED,
        kind=GroundingKind.TRACE,
        message="trace cut off",
        id="truncated-trace",
    ),
    case("[" * 200, FAILED, message="truncated", id="unclosed-brackets"),
    # Wrong types.
    case(
        '[{"bbox_2d": ["10", "20", "110", "120"], "label": "cup"}]',
        FAILED,
        message="bbox_2d is not 4 numbers",
        id="coordinates-as-strings",
    ),
    case(
        '[{"bbox_2d": "10,20,110,120", "label": "cup"}]',
        FAILED,
        message="bbox_2d is not 4 numbers",
        id="box-as-string",
    ),
    case('[{"bbox_2d": [10, null, 110, 120], "label": "cup"}]', FAILED, id="null-coordinate"),
    case('[{"bbox_2d": [true, 20, 110, 120], "label": "cup"}]', FAILED, id="bool-coordinate"),
    case(
        '[{"bbox_2d": [10, 20, 110], "label": "cup"}]',
        FAILED,
        message="bbox_2d is not 4 numbers",
        id="box-with-three-numbers",
    ),
    case(
        '[{"bbox_2d": [10, 20, 110, 120], "label": 42}]',
        PARTIAL,
        [(*RED, "")],
        message="label that is not text",
        id="numeric-label",
    ),
    case(
        '[{"bbox_2d": [10, 20, 110, 120], "label": "cup", "score": 87}]',
        PARTIAL,
        [(*RED, "cup")],
        message="score",
        id="score-out-of-range",
    ),
    case('[{"label": "cup"}]', FAILED, message="without bbox_2d", id="object-without-geometry"),
    case(
        f'[{TWO[1:-1]}, {{"bbox_2d": "n/a", "label": "lid"}}]',
        PARTIAL,
        [(*RED, "red block"), (*BOWL, "bowl")],
        message="bbox_2d is not 4 numbers",
        id="good-and-bad-objects",
    ),
    # Huge, negative and non-finite numbers.
    case(
        '[{"bbox_2d": [10, 20, 1e12, 120], "label": "cup"}]', FAILED, message="outside the image", id="huge"
    ),
    case('[{"bbox_2d": [1e400, 20, 110, 120], "label": "cup"}]', FAILED, id="overflow-to-infinity"),
    case('[{"bbox_2d": [NaN, 20, 110, 120], "label": "cup"}]', FAILED, id="nan"),
    case(
        '[{"bbox_2d": [-5, -3, 110, 120], "label": "cup"}]',
        OK,
        [(0.0, 0.0, 220.0, 240.0, "cup")],
        id="slightly-negative-clipped",
    ),
    case(
        '[{"bbox_2d": [-200, 20, 110, 120], "label": "cup"}]',
        FAILED,
        message="outside the image",
        id="far-negative",
    ),
    case(
        '[{"bbox_2d": [300, 200, 330, 245], "label": "cup"}]',
        OK,
        [(600.0, 400.0, 640.0, 480.0, "cup")],
        id="overshoot-clipped",
    ),
    case('[{"point_2d": [500, 50], "label": "cup"}]', FAILED, message="point outside", id="point-outside"),
    case('[{"bbox_2d": [110, 120, 10, 20], "label": "cup"}]', OK, [(*RED, "cup")], id="swapped-corners"),
    case('[{"bbox_2d": [10, 20, 10, 120], "label": "cup"}]', FAILED, message="no area", id="zero-width"),
    # Empty and refusals.
    case("", EMPTY, id="empty"),
    case("  \n\t ", EMPTY, id="whitespace"),
    case("[]", EMPTY, id="empty-list"),
    case("```json\n[]\n```", EMPTY, id="fenced-empty-list"),
    case("I cannot find a red block in this image.", FAILED, message="no JSON", id="refusal"),
    case("Step (1): look. Step (2): point.", FAILED, message="no JSON", id="prose-with-asides-only"),
    # Normalised 0..1000 (by parameter).
    case(
        '[{"bbox_2d": [100, 200, 500, 600], "label": "cup"}]',
        OK,
        [(64.0, 96.0, 320.0, 288.0, "cup")],
        normalized=True,
        id="normalized-1000",
    ),
    case(
        '[{"point_2d": [1000, 1000], "label": "corner"}]',
        OK,
        points=[(640.0, 480.0, "corner")],
        normalized=True,
        id="normalized-corner",
    ),
]


@pytest.mark.parametrize(("answer", "kind", "normalized", "expected"), CORPUS)
def test_corpus(answer, kind, normalized, expected):
    convention = CoordinateConvention.NORMALIZED_1000 if normalized else CoordinateConvention.PIXELS
    result = parse_answer(answer, SOURCE, MODEL, convention, kind)

    assert result.status is expected["status"], result.status_message
    assert (result.image_width, result.image_height) == SOURCE
    assert len(result.boxes) == len(expected["boxes"])
    for box, want in zip(result.boxes, expected["boxes"], strict=True):
        assert (box.x_min, box.y_min, box.x_max, box.y_max) == pytest.approx(want[:4])
        assert box.label == want[4]
        assert box.score == pytest.approx(want[5] if len(want) > 5 else 1.0)
    assert [k.label for k in result.points] == [want[2] for want in expected["points"]]
    for keypoint, want in zip(result.points, expected["points"], strict=True):
        assert (keypoint.point.x, keypoint.point.y) == pytest.approx(want[:2])
    assert len(result.traces) == len(expected["traces"])
    for trace, want in zip(result.traces, expected["traces"], strict=True):
        coords = [w for w in want if isinstance(w, tuple)]
        assert [c for p in trace.points for c in (p.x, p.y)] == pytest.approx(
            [c for xy in coords for c in xy]
        )
        assert trace.label == (want[-1] if isinstance(want[-1], str) else "")
    if result.status is OK:
        assert result.status_message == ""
    else:
        assert expected["message"] in result.status_message


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


def test_overlong_answer_is_read_up_to_the_limit():
    answer = "[10, 20, 110, 120]" + " " * 30_000 + "[150, 30, 200, 90]"
    result = parse_answer(answer, SOURCE, MODEL)
    assert result.status is PARTIAL
    assert len(result.boxes) == 1
    assert "longer than" in result.status_message


def test_model_size_is_required_for_pixel_coordinates():
    with pytest.raises(ValueError, match="model_size"):
        parse_answer("[1, 2, 3, 4]", SOURCE)


def test_repeated_problems_are_counted_once_in_the_message():
    result = parse_answer('[{"bbox_2d": "x"}, {"bbox_2d": "x"}, {"bbox_2d": "x"}]', SOURCE, MODEL)
    assert result.status_message == "bbox_2d is not 4 numbers: 'x' (x3)"


def test_message_length_is_bounded():
    answer = "[" + ", ".join(f'{{"bbox_2d": "bad {i}"}}' for i in range(200)) + "]"
    result = parse_answer(answer, SOURCE, MODEL)
    assert result.status is FAILED
    assert len(result.status_message) <= 600
