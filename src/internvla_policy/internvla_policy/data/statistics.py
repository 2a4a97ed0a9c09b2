"""Normalisation statistics in the released `dataset_statistics.json` schema, computed from a dataset.

The file maps an unnorm key (e.g. "franka") to `{"action": {mean, std, max, min, q01, q99, mask},
"state": {mean, std, max, min, q01, q99}, "num_transitions", "num_trajectories"}`; the policy maps its
[-1, 1] outputs back with q01/q99 where `mask` is true. To give a fine-tuned model the same numbers
upstream's tooling would, the arithmetic follows it: each stored column is rounded to float32, its
mean/std/min/max are taken in float32 over all frames, q01/q99 by linear interpolation in float64, and
a key that names part of a column takes its part of the whole column's statistics. On the shared
sim_pick_place data this reproduces the released file exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError
from .lerobot import LeRobotDataset

STAT_FIELDS = ("mean", "std", "max", "min", "q01", "q99")


def _is_gripper(key: str) -> bool:
    return "gripper" in key.partition(".")[2]


@dataclass(frozen=True)
class FeatureStatistics:
    """Per-dimension statistics of one feature (the action or the state vector), float64 arrays."""

    mean: np.ndarray
    std: np.ndarray
    max: np.ndarray
    min: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray | None = None
    """Per dimension: normalise with q01/q99 (True) or pass through (False, e.g. a binary gripper)."""

    @property
    def dimension(self) -> int:
        return len(self.mean)

    def to_json(self) -> dict[str, list]:
        """The schema's object, fields in the released file's order."""
        data: dict[str, list] = {name: [float(v) for v in getattr(self, name)] for name in STAT_FIELDS}
        if self.mask is not None:
            data["mask"] = [bool(v) for v in self.mask]
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> FeatureStatistics:
        """Parse and check one feature's object; `where` names it in errors."""
        if not isinstance(data, dict):
            raise DatasetError(f"{where}: expected an object with {', '.join(STAT_FIELDS)}")
        arrays = {}
        for name in STAT_FIELDS:
            values = data.get(name)
            if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
            ):
                raise DatasetError(f"{where}.{name}: missing or not a list of numbers")
            arrays[name] = np.asarray(values, dtype=np.float64)
        mask = data.get("mask")
        if mask is not None:
            if not isinstance(mask, list) or not all(isinstance(v, bool) for v in mask):
                raise DatasetError(f"{where}.mask: not a list of booleans")
            mask = np.asarray(mask, dtype=bool)
        sizes = {name: len(values) for name, values in arrays.items()}
        if mask is not None:
            sizes["mask"] = len(mask)
        if len(set(sizes.values())) != 1:
            raise DatasetError(f"{where}: fields differ in length {sizes}")
        if (arrays["q01"] > arrays["q99"]).any():
            raise DatasetError(
                f"{where}: q01 exceeds q99 in dimension(s) {np.flatnonzero(arrays['q01'] > arrays['q99'])}"
            )
        return cls(**arrays, mask=mask)


@dataclass(frozen=True)
class DatasetStatistics:
    """One unnorm key's entry of dataset_statistics.json."""

    action: FeatureStatistics
    state: FeatureStatistics | None
    num_transitions: int
    num_trajectories: int

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"action": self.action.to_json()}
        if self.state is not None:
            data["state"] = self.state.to_json()
        data["num_transitions"] = self.num_transitions
        data["num_trajectories"] = self.num_trajectories
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> DatasetStatistics:
        if not isinstance(data, dict):
            raise DatasetError(
                f"{where}: expected an object with action, state, num_transitions, num_trajectories"
            )
        counts = {}
        for name in ("num_transitions", "num_trajectories"):
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise DatasetError(f"{where}.{name}: missing or not a non-negative integer")
            counts[name] = value
        state = data.get("state")
        return cls(
            action=FeatureStatistics.from_json(data.get("action"), f"{where}.action"),
            state=None if state is None else FeatureStatistics.from_json(state, f"{where}.state"),
            **counts,
        )


def feature_statistics(values: np.ndarray, mask: Sequence[bool] | None = None) -> FeatureStatistics:
    """Statistics of [frames, D] values with upstream's arithmetic (float32 moments, float64 quantiles)."""
    values32 = np.asarray(values, dtype=np.float32)
    if values32.ndim != 2 or len(values32) == 0:
        raise DatasetError(f"statistics need a non-empty [frames, dims] array, got shape {values32.shape}")
    quantiles = np.quantile(values32.astype(np.float64), [0.01, 0.99], axis=0)
    return FeatureStatistics(
        mean=np.mean(values32, axis=0).astype(np.float64),
        std=np.std(values32, axis=0).astype(np.float64),
        max=np.max(values32, axis=0).astype(np.float64),
        min=np.min(values32, axis=0).astype(np.float64),
        q01=quantiles[0],
        q99=quantiles[1],
        mask=None if mask is None else np.asarray(mask, dtype=bool),
    )


def _keys_statistics(
    dataset: LeRobotDataset, keys: Sequence[str], mask: Sequence[bool] | None
) -> FeatureStatistics:
    """Statistics of whole columns, sliced per key and concatenated in key order."""
    parts = [dataset.meta.resolve(key) for key in keys]
    per_column: dict[str, FeatureStatistics] = {}
    for part in parts:
        if part.column not in per_column:
            frames = [dataset.column(episode, part.column) for episode in dataset.episode_indices]
            per_column[part.column] = feature_statistics(np.concatenate(frames, axis=0))
    fields = {
        name: np.concatenate([getattr(per_column[p.column], name)[p.start : p.end] for p in parts])
        for name in STAT_FIELDS
    }
    return FeatureStatistics(**fields, mask=None if mask is None else np.asarray(mask, dtype=bool))


def compute_statistics(
    dataset: LeRobotDataset,
    *,
    action_keys: Sequence[str] | None = None,
    state_keys: Sequence[str] | None = None,
    unnormalized_action_keys: Sequence[str] | None = None,
) -> DatasetStatistics:
    """One dataset_statistics.json entry for the dataset's selected episodes.

    Keys default to the reader's action and state keys. `unnormalized_action_keys` get mask false
    (passed through, not scaled by q01/q99); by default every action key whose name mentions a
    gripper, which gives the released Franka file's mask [true x6, false].
    """
    action_keys = list(dataset.action_keys if action_keys is None else action_keys)
    state_keys = list(dataset.state_keys if state_keys is None else state_keys)
    if not action_keys:
        raise DatasetError("statistics need at least one action key")
    if unnormalized_action_keys is None:
        unnormalized_action_keys = [key for key in action_keys if _is_gripper(key)]
    unknown = sorted(set(unnormalized_action_keys) - set(action_keys))
    if unknown:
        raise DatasetError(f"unnormalized_action_keys {unknown} are not among the action keys {action_keys}")
    mask = [
        key not in unnormalized_action_keys for key in action_keys for _ in range(dataset.meta.key_width(key))
    ]
    return DatasetStatistics(
        action=_keys_statistics(dataset, action_keys, mask),
        state=_keys_statistics(dataset, state_keys, None) if state_keys else None,
        num_transitions=len(dataset),
        num_trajectories=len(dataset.episode_indices),
    )


def write_statistics(path: Path | str, statistics: Mapping[str, DatasetStatistics]) -> Path:
    """Write dataset_statistics.json ({unnorm key: entry}), indented as the released files are."""
    if not statistics:
        raise DatasetError("nothing to write: no unnorm keys")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({key: entry.to_json() for key, entry in statistics.items()}, indent=2))
    return path


def read_statistics(path: Path | str) -> dict[str, DatasetStatistics]:
    """Read and check a dataset_statistics.json; errors name the file and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not data:
        raise DatasetError(f"{path}: expected an object of {{unnorm key: statistics}}")
    return {key: DatasetStatistics.from_json(entry, f"{path}: {key}") for key, entry in data.items()}


def normalize(values: np.ndarray, stats: FeatureStatistics) -> np.ndarray:
    """Map values [..., D] to the model's [-1, 1]: the inverse of unnormalisation where mask is true.

    `2 (x - q01) / (q99 - q01) - 1`, clipped to [-1, 1]; a dimension with q01 == q99 maps to -1 (so
    unnormalising gives back q01); mask-false dimensions pass through unchanged.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[-1] != stats.dimension:
        raise DatasetError(f"values have {values.shape[-1]} dimensions, the statistics {stats.dimension}")
    span = stats.q99 - stats.q01
    scaled = np.divide(values - stats.q01, span, out=np.zeros_like(values), where=span > 0)
    normalized = np.clip(2.0 * scaled - 1.0, -1.0, 1.0)
    mask = np.ones(stats.dimension, dtype=bool) if stats.mask is None else stats.mask
    return np.where(mask, normalized, values)
