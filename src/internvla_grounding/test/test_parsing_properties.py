"""Properties of the parser on generated answers: it never raises, and what it returns is sound."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from internvla_grounding.parsing import CoordinateConvention, parse_answer
from internvla_grounding.prompts import GroundingKind
from internvla_policy.vision.geometry import GroundingResult, ParseStatus

sizes = st.tuples(st.integers(1, 4096), st.integers(1, 4096))
kinds = st.sampled_from([None, *GroundingKind])
conventions = st.sampled_from(list(CoordinateConvention))
numbers = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-50, 1200),
)
json_leaf = st.one_of(numbers, st.text(max_size=8), st.booleans(), st.none())
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.sampled_from(["bbox_2d", "point_2d", "trace", "points", "label", "score", "objects", "x"]),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=30,
)
# Characters that steer the reader into its interesting paths.
answer_alphabet = st.sampled_from(list("[]{}(),:\"'\\ \n-+.eE0123456789abxyz_")) | st.characters()


def assert_sound(result: GroundingResult, source: tuple[int, int]) -> None:
    width, height = source
    assert (result.image_width, result.image_height) == source
    for box in result.boxes:
        assert 0 <= box.x_min < box.x_max <= width
        assert 0 <= box.y_min < box.y_max <= height
        assert 0 <= box.score <= 1
    for keypoint in result.points:
        assert result.contains(keypoint.point)
    for trace in result.traces:
        assert len(trace.points) >= 2
        assert all(result.contains(p) for p in trace.points)
    found = bool(result.boxes or result.points or result.traces)
    assert found == (result.status in (ParseStatus.OK, ParseStatus.PARTIAL))
    assert (result.status_message == "") == (result.status is ParseStatus.OK)


@settings(max_examples=400, deadline=None)
@given(
    answer=st.text(alphabet=answer_alphabet, max_size=300),
    source=sizes,
    model=sizes,
    kind=kinds,
    convention=conventions,
)
def test_any_text_parses_without_raising(answer, source, model, kind, convention):
    assert_sound(parse_answer(answer, source, model, convention, kind), source)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=json_values,
    cut=st.integers(0, 400),
    prose=st.text(max_size=20),
    source=sizes,
    model=sizes,
    kind=kinds,
)
def test_json_like_answers_and_their_truncations_are_sound(value, cut, prose, source, model, kind):
    text = prose + json.dumps(value) + prose
    for answer in (text, text[:cut]):
        assert_sound(parse_answer(answer, source, model, CoordinateConvention.PIXELS, kind), source)


def flat(boxes) -> list[float]:
    return [c for b in boxes for c in (b.x_min, b.y_min, b.x_max, b.y_max)]


boxes_in_model = st.lists(
    st.tuples(st.integers(0, 99), st.integers(0, 99), st.integers(1, 100), st.integers(1, 100)).map(
        lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3])
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(boxes=boxes_in_model, cut=st.integers(0, 10_000), source=sizes)
def test_well_formed_boxes_survive_exactly_and_truncation_keeps_a_prefix(boxes, cut, source):
    model = (200, 200)
    answer = json.dumps([{"bbox_2d": list(b), "label": f"object {i}"} for i, b in enumerate(boxes)])
    sx, sy = source[0] / model[0], source[1] / model[1]
    expected = [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy, f"object {i}") for i, b in enumerate(boxes)]

    full = parse_answer(answer, source, model)
    assert full.status is ParseStatus.OK
    assert [b.label for b in full.boxes] == [e[4] for e in expected]
    assert flat(full.boxes) == pytest.approx([c for e in expected for c in e[:4]])

    # Truncated answers never invent boxes: what survives is the complete boxes before the cut,
    # with the label lost only when the cut fell inside it.
    truncated = parse_answer(answer[: cut % (len(answer) + 1)], source, model)
    kept = len(truncated.boxes)
    assert flat(truncated.boxes) == pytest.approx([c for e in expected[:kept] for c in e[:4]])
    assert all(b.label in ("", expected[i][4]) for i, b in enumerate(truncated.boxes))
