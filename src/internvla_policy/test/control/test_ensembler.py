"""The CogACT adaptive ensembler on hand-computed numbers, and chunk pinning to control ticks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from internvla_policy.control.ensembler import ChunkSchedule, adaptive_ensemble, adaptive_weights


def test_adaptive_ensemble_hand_computed():
    # Three predictions for the current step, oldest first; the newest is the reference.
    # cos(p1, p3) = cos(p2, p3) = 1/sqrt(2), cos(p3, p3) = 1. With alpha = 0.1:
    # w1 = w2 = e^0.0707107 / (2 e^0.0707107 + e^0.1) = 1.0732709 / 3.2517127 = 0.3300632,
    # w3 = 1.1051709 / 3.2517127 = 0.3398735. Mean = w1 (1, 0) + w2 (0, 1) + w3 (1, 1) = 0.6699368 (x2).
    predictions = np.zeros((3, 7))
    predictions[0, 0] = 1.0
    predictions[1, 1] = 1.0
    predictions[2, :2] = 1.0
    np.testing.assert_allclose(
        adaptive_weights(predictions, 0.1), [0.3300632, 0.3300632, 0.3398735], atol=1e-6
    )
    expected = np.zeros(7)
    expected[:2] = 0.6699368
    np.testing.assert_allclose(adaptive_ensemble(predictions, 0.1), expected, atol=1e-6)


def test_alpha_zero_is_the_plain_mean_and_large_alpha_favours_agreement():
    predictions = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    np.testing.assert_allclose(adaptive_ensemble(predictions, 0.0), predictions.mean(axis=0))
    weights = adaptive_weights(predictions, 10.0)
    assert weights[0] > 0.4 and weights[1] < 1e-3  # the dissenting prediction is nearly ignored
    assert math.isclose(weights.sum(), 1.0)


def test_one_chunk_per_tick_is_cogacts_ensembler():
    # CogACT calls the ensembler every step with a fresh chunk: at step n, the chunk from step n - j
    # contributes its j-th prediction. chunk c holds values 10 c + i (1-D, so every cosine is 1 and
    # the weights are equal for any alpha): tick 3 averages 12, 21 and 30.
    schedule = ChunkSchedule("adaptive", k=3, alpha=0.1, step_period_s=0.1)
    for tick in (1, 2, 3):
        chunk = (10.0 * tick + np.arange(16.0))[:, None]
        schedule.add(chunk, stamp=tick * 0.1, now=tick * 0.1, tick=tick)
    assert schedule.action_at(3)[0] == pytest.approx((12 + 21 + 30) / 3)


def test_steps_already_in_the_past_are_skipped_on_arrival():
    schedule = ChunkSchedule("newest", k=1, alpha=0.1, step_period_s=0.1)
    actions = np.arange(16.0)[:, None]
    pinned = schedule.add(actions, stamp=10.0, now=10.34, tick=5)  # 3.4 steps late -> step 3 is due
    assert pinned.skipped_steps == 3 and pinned.base_tick == 2
    assert schedule.action_at(5)[0] == 3.0
    assert schedule.action_at(6)[0] == 4.0
    assert schedule.action_at(17)[0] == 15.0
    assert schedule.action_at(18) is None  # exhausted: the controller holds


def test_k_bounds_the_chunks_kept_and_newest_mode_keeps_one():
    adaptive = ChunkSchedule("adaptive", k=2, alpha=0.0, step_period_s=0.1)
    newest = ChunkSchedule("newest", k=7, alpha=0.0, step_period_s=0.1)
    for value in (1.0, 2.0, 3.0):
        for schedule in (adaptive, newest):
            schedule.add(np.full((16, 1), value), stamp=1.0, now=1.0, tick=1)
    assert adaptive.action_at(1)[0] == pytest.approx(2.5)  # chunks 2 and 3
    assert newest.action_at(1)[0] == 3.0
    adaptive.clear()
    assert adaptive.action_at(1) is None


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="ensemble mode"):
        ChunkSchedule("average", k=2, alpha=0.1, step_period_s=0.1)
