"""The one small interface every kinematics backend implements.

The controller needs exactly three things from a robot model: the joint limits the URDF
declares (for the safety layer), forward kinematics of the end-effector in the base frame, and
inverse kinematics seeded at the measured configuration. Everything is in the order of the
`joint_names` the backend was built with, so callers never reorder vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from internvla_policy.control.pose import Pose


class KinematicsError(ValueError):
    """The robot description does not fit the requested joints or frames."""


@dataclass(frozen=True)
class JointLimits:
    """Position bounds (rad or m) and velocity bounds (rad/s or m/s) per controlled joint."""

    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray


@dataclass(frozen=True)
class IkResult:
    """Outcome of one IK query. `q` is always finite and within the position limits.

    When `success` is False, `q` is the closest configuration the solver reached; callers decide
    whether to use it (the controller does not: it holds).
    """

    q: np.ndarray
    success: bool
    position_error: float
    rotation_error: float
    iterations: int
    message: str = ""


def reject_non_finite(target: Pose, seed: np.ndarray, limits: JointLimits) -> IkResult | None:
    """The failed result for a non-finite target or seed (checked before any solver runs), else None."""
    if target.is_finite() and np.all(np.isfinite(seed)):
        return None
    q = np.clip(np.nan_to_num(np.asarray(seed, dtype=float)), limits.lower, limits.upper)
    return IkResult(q, False, np.inf, np.inf, 0, "non-finite target or seed")


class Kinematics(Protocol):
    """FK/IK for the controlled joints of one robot, poses in the base frame."""

    joint_names: tuple[str, ...]
    limits: JointLimits

    def fk(self, q: np.ndarray) -> Pose: ...

    def ik(self, target: Pose, seed: np.ndarray) -> IkResult: ...
