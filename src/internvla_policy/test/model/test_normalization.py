"""unnormalize_actions and unnorm-key selection, with upstream's semantics."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_policy.model import unnormalize_actions
from internvla_policy.model.normalization import resolve_unnorm_key

STATS = {
    "q01": [-1.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0],
    "q99": [1.0, 2.0, 20.0, 1.0, 1.0, 1.0, 1.0],
    "mask": [True, True, True, True, True, False, False],
}


def test_clip_gripper_threshold_and_mask() -> None:
    normalized = np.array(
        [[-3.0, 0.0, 0.5, 1.0, 2.0, 0.25, 0.4999], [0.5, -1.0, -0.5, -1.0, 0.0, -7.0, 0.5]], dtype=np.float32
    )
    result = unnormalize_actions(normalized, STATS)
    assert result.dtype == np.float64
    np.testing.assert_allclose(result[0], [-1.0, 1.0, 17.5, 1.0, 1.0, 0.25, 0.0])
    np.testing.assert_allclose(
        result[1], [0.5, 0.0, 12.5, 0.0, 0.5, -1.0, 1.0]
    )  # 0.5 maps to an open gripper


def test_batched_input_and_caller_array_untouched() -> None:
    normalized = np.full((2, 16, 7), 3.0, dtype=np.float32)
    result = unnormalize_actions(normalized, STATS)
    assert result.shape == (2, 16, 7)
    np.testing.assert_array_equal(normalized, 3.0)
    np.testing.assert_allclose(result[..., 2], 20.0)


def test_mask_defaults_to_all_true() -> None:
    """Without a mask even the binarised gripper is rescaled (0 -> the q01/q99 midpoint here)."""
    stats = {key: value for key, value in STATS.items() if key != "mask"}
    result = unnormalize_actions(np.zeros((1, 7), dtype=np.float32), stats)
    np.testing.assert_allclose(result[0], [0.0, 1.0, 15.0, 0.5, 0.5, 0.5, 0.5])


def test_unnorm_key_resolution() -> None:
    assert resolve_unnorm_key({"franka": {}}, None) == "franka"
    assert resolve_unnorm_key({"a": {}, "b": {}}, "b") == "b"
    with pytest.raises(ValueError, match="choose an unnorm_key from: a, b"):
        resolve_unnorm_key({"b": {}, "a": {}}, None)
    with pytest.raises(ValueError, match="unknown unnorm_key 'c'; available: a, b"):
        resolve_unnorm_key({"a": {}, "b": {}}, "c")
