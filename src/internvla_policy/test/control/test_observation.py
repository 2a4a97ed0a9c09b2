"""Joint states matched by name, and input freshness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from internvla_policy.control.observation import InvalidInputError, JointStateMatcher, staleness

MATCHER = JointStateMatcher(("j1", "j2", "j3"))


def test_any_order_and_extra_joints():
    q = MATCHER.match(["finger", "j3", "j1", "j2"], [0.04, 3.0, 1.0, 2.0])
    np.testing.assert_array_equal(q, [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("names", "positions", "message"),
    [
        (["j1", "j2"], [1.0, 2.0], r"lacks joints \['j3'\]"),
        (["j1", "j2", "j3"], [1.0, 2.0], "3 names but 2 positions"),
        (["j1", "j2", "j3"], [1.0, math.nan, 3.0], r"non-finite positions for \['j2'\]"),
        (["j1", "j2", "j3"], [1.0, 2.0, math.inf], "non-finite"),
    ],
)
def test_unusable_joint_states_are_errors(names, positions, message):
    with pytest.raises(InvalidInputError, match=message):
        MATCHER.match(names, positions)


def test_staleness():
    assert staleness("camera 'scene'", None, 5.0, 0.5) == "no camera 'scene' yet"
    assert staleness("camera 'scene'", 4.6, 5.0, 0.5) is None
    assert staleness("camera 'scene'", 4.4, 5.0, 0.5) == "camera 'scene' stale: 0.60 s > 0.50 s"
    assert staleness("instruction", 0.0, 1e6, 0.0) is None  # max age 0: never expires
