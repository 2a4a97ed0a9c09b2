"""Observation inputs: joint states matched by name, camera frames, and their freshness.

Every input carries a stamp (seconds, on the node's clock) and has a maximum age; a stale or
invalid input makes the controller hold rather than act on old data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class InvalidInputError(ValueError):
    """An input message that cannot be used; the message text says why (for status and logs)."""


class JointStateMatcher:
    """Picks the controlled joints out of a JointState by name: any order, extra joints ignored."""

    def __init__(self, joint_names: Sequence[str]) -> None:
        self.joint_names = tuple(joint_names)

    def match(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """Positions in `joint_names` order; InvalidInputError on missing joints or non-finite values."""
        if len(names) != len(positions):
            raise InvalidInputError(f"joint state has {len(names)} names but {len(positions)} positions")
        index = {name: i for i, name in enumerate(names)}
        missing = [n for n in self.joint_names if n not in index]
        if missing:
            raise InvalidInputError(f"joint state lacks joints {missing}")
        q = np.array([positions[index[n]] for n in self.joint_names], dtype=float)
        if not np.all(np.isfinite(q)):
            bad = [n for n, v in zip(self.joint_names, q, strict=True) if not np.isfinite(v)]
            raise InvalidInputError(f"joint state has non-finite positions for {bad}")
        return q


@dataclass(frozen=True)
class CameraFrame:
    """One camera frame, already decoded to RGB uint8 [H, W, 3].

    Decoding happens on receipt, before the frame counts as fresh: a camera that sends only
    malformed frames must go stale, not keep the policy acting on its last good picture.
    """

    stamp: float
    frame_id: str
    image: np.ndarray


@dataclass(frozen=True)
class JointSample:
    positions: np.ndarray
    stamp: float


def stamp_problem(stamp: float, now: float, max_age_s: float, future_tolerance_s: float) -> str | None:
    """Why a message's stamp makes it unusable on arrival (to follow the input's name); None when it
    may be stored.

    A stamp ahead of the clock by more than `future_tolerance_s` would stay "the newest" and make
    the input look fresh for as long as it is ahead, so it is refused; so is one already older
    than `max_age_s` (it could never be acted on). This bounds every age the controller measures
    to [-future_tolerance_s, max_age_s] at arrival, whatever a publisher stamps.
    """
    ahead = stamp - now
    if ahead > future_tolerance_s:
        return f"stamped {ahead:.3f} s in the future (tolerance {future_tolerance_s:.3f} s)"
    if max_age_s > 0.0 and -ahead > max_age_s:
        return f"already {-ahead:.2f} s old on arrival (max {max_age_s:.2f} s)"
    return None


def staleness(name: str, stamp: float | None, now: float, max_age_s: float) -> str | None:
    """Why an input is not usable now (never received, or older than `max_age_s`); None if fresh.

    `max_age_s <= 0` means the input never expires once received.
    """
    if stamp is None:
        return f"no {name} yet"
    age = now - stamp
    if max_age_s > 0.0 and age > max_age_s:
        return f"{name} stale: {age:.2f} s > {max_age_s:.2f} s"
    return None
