"""Choosing one action per control tick from the action chunks received so far.

Chunks arrive asynchronously (inference runs while the previous chunk executes). Step 0 of a chunk
is meant for the instant of the camera frame it was computed from (`stamp`); by the time the chunk
arrives some of its steps are already in the past. On arrival the chunk is pinned to the control
tick counter: the step due at the arrival tick is the one whose instant is nearest to the arrival
time, earlier steps are skipped, and from then on each tick advances one step. Pinning to ticks
(rather than re-deriving the step from the clock every tick) keeps timer jitter from repeating or
skipping steps.

Two ways to pick the action for a tick:

- "newest": the newest chunk's step for this tick.
- "adaptive": the CogACT adaptive ensembler. Keep the last K chunks; take each chunk's prediction
  for this tick; weight each by exp(alpha * cos(prediction, newest prediction)); return the
  weighted mean. With one new chunk per tick this is exactly CogACT's `AdaptiveEnsembler`
  (K is its `pred_action_horizon`, alpha its `adaptive_ensemble_alpha`). As in CogACT, the
  ensemble runs on unnormalised actions, all 7 dimensions.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

MODES = ("adaptive", "newest")


def adaptive_weights(predictions: np.ndarray, alpha: float) -> np.ndarray:
    """Normalised weights for predictions [n, D] (newest last) by cosine similarity to the newest."""
    reference = predictions[-1]
    norms = np.linalg.norm(predictions, axis=1) * np.linalg.norm(reference)
    cosine = predictions @ reference / (norms + 1e-7)
    weights = np.exp(alpha * cosine)
    return weights / weights.sum()


def adaptive_ensemble(predictions: np.ndarray, alpha: float) -> np.ndarray:
    """Weighted mean of predictions [n, D] (newest last), CogACT adaptive weights."""
    return adaptive_weights(predictions, alpha) @ predictions


@dataclass(frozen=True)
class ScheduledChunk:
    """A chunk pinned to the tick counter: step i is due at tick `base_tick + i`."""

    actions: np.ndarray
    stamp: float
    base_tick: int
    skipped_steps: int

    def step_at(self, tick: int) -> int | None:
        step = tick - self.base_tick
        return step if 0 <= step < len(self.actions) else None


class ChunkSchedule:
    """The last K chunks and the per-tick action selection. Not thread-safe: one owner (the controller)."""

    def __init__(self, mode: str, k: int, alpha: float, step_period_s: float) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown ensemble mode '{mode}' (choose one of {MODES})")
        self._alpha = alpha
        self._step_period_s = step_period_s
        self._chunks: deque[ScheduledChunk] = deque(maxlen=k if mode == "adaptive" else 1)

    def add(self, actions: np.ndarray, stamp: float, now: float, tick: int) -> ScheduledChunk:
        """Pin a chunk that arrived at tick `tick` (time `now`); returns it with the skipped step count."""
        due = max(0, round((now - stamp) / self._step_period_s))
        chunk = ScheduledChunk(actions=actions, stamp=stamp, base_tick=tick - due, skipped_steps=due)
        self._chunks.append(chunk)
        return chunk

    def clear(self) -> None:
        self._chunks.clear()

    def action_at(self, tick: int) -> np.ndarray | None:
        """The action for `tick`, or None when no kept chunk covers it (not yet, or exhausted)."""
        predictions = [c.actions[s] for c in self._chunks if (s := c.step_at(tick)) is not None]
        if not predictions:
            return None
        # "newest" keeps a single chunk, for which the ensemble is that chunk's step itself.
        return adaptive_ensemble(np.stack(predictions).astype(float), self._alpha)
