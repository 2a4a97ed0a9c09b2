"""Action normalisation statistics (dataset_statistics.json) and upstream's ``unnormalize_actions``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError

GRIPPER_INDEX = 6
"""Upstream binarises this action dimension (gripper open in [0, 1]) whatever the action space."""

NormStats = Mapping[str, Mapping[str, Any]]


def read_norm_stats(path: Path) -> dict[str, dict[str, Any]]:
    """Read dataset_statistics.json: ``{unnorm_key: {"action": {"q01", "q99", "mask", ...}, ...}}``."""
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(stats, dict) or not stats:
        raise CheckpointError(f"{path}: expected an object of per-dataset statistics")
    for key, entry in stats.items():
        action = entry.get("action") if isinstance(entry, dict) else None
        if not isinstance(action, dict) or "q01" not in action or "q99" not in action:
            raise CheckpointError(f"{path}: entry {key!r} has no action q01/q99 statistics")
    return stats


def resolve_unnorm_key(norm_stats: NormStats, unnorm_key: str | None) -> str:
    """Upstream's ``_check_unnorm_key``: the only key when there is one, else the named one."""
    available = ", ".join(sorted(norm_stats))
    if unnorm_key is None:
        if len(norm_stats) == 1:
            return next(iter(norm_stats))
        raise ValueError(f"this model has several action statistics; choose an unnorm_key from: {available}")
    if unnorm_key not in norm_stats:
        raise ValueError(f"unknown unnorm_key {unnorm_key!r}; available: {available}")
    return unnorm_key


def unnormalize_actions(normalized: np.ndarray, action_stats: Mapping[str, Any]) -> np.ndarray:
    """Map normalised actions [..., T, D] back to the robot's units, with upstream's semantics.

    Clip to [-1, 1]; set the gripper dimension to 1 where it is >= 0.5 (after the clip, in normalised
    space) and 0 otherwise; then ``0.5 (a + 1)(q99 - q01) + q01`` where ``mask`` is true (all true when
    absent), leaving the gripper's 0/1 through where its mask is false. The arithmetic keeps the input's
    dtype until the float64 statistics enter, as upstream's numpy code does; the result is float64.
    """
    high = np.asarray(action_stats["q99"], dtype=np.float64)
    low = np.asarray(action_stats["q01"], dtype=np.float64)
    mask = np.asarray(action_stats.get("mask", np.ones_like(low, dtype=bool)), dtype=bool)
    actions = np.clip(np.asarray(normalized), -1, 1)
    if actions.shape[-1] > GRIPPER_INDEX:
        actions[..., GRIPPER_INDEX] = np.where(actions[..., GRIPPER_INDEX] < 0.5, 0, 1)
    return np.where(mask, 0.5 * (actions + 1) * (high - low) + low, actions).astype(np.float64, copy=False)
