"""The ROS-free core of the dataset replay node: what to publish, and how to score what came back.

`ReplayEpisode.load` reads everything one episode's replay needs (cameras, the state as joints or
named dimensions, the dataset actions, the instruction) and checks the caller's choices up front. The
replay node publishes the frames stamped with the time it sent them; the policy stamps each action
chunk with the newest frame it used. `FrameStamps` turns a chunk's stamp back into the frame index,
and `ActionErrorLog` keeps, per matched chunk, the dataset's action at that frame next to the chunk's
first step (the action meant for that instant), then writes them with per-dimension absolute errors
and a summary. Numbers are written with full float precision so they can be checked.
"""

from __future__ import annotations

import bisect
import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError
from .lerobot import LeRobotDataset
from .meta import DatasetMeta

JOINT_KEY = "state.joints"
JOINT_VELOCITY_KEY = "state.joints_velocity"


def _optional_width(meta: DatasetMeta, key: str) -> int | None:
    try:
        return meta.key_width(key)
    except DatasetError:
        return None


def _argument(name: str, error: DatasetError) -> DatasetError:
    """The same error, prefixed with the argument (node parameter) that caused it."""
    return DatasetError(f"{name}: {error}")


@dataclass(frozen=True)
class ReplayEpisode:
    """One episode, read once, as the replay node publishes and scores it."""

    reader: LeRobotDataset
    episode: int
    instruction: str
    camera_keys: tuple[str, ...]
    joint_names: tuple[str, ...]
    positions: np.ndarray
    """[frames, joints]: what JointState.position carries per frame."""
    velocities: np.ndarray | None
    actions: np.ndarray
    """[frames, Da]: the dataset's action_keys per frame, the reference for commanded chunks."""
    action_names: tuple[str, ...]

    @property
    def frames(self) -> int:
        return len(self.positions)

    @classmethod
    def load(
        cls,
        root: Path | str,
        episode: int,
        *,
        action_keys: Sequence[str],
        camera_keys: Sequence[str] = (),
        state_keys: Sequence[str] = (),
        joint_names: Sequence[str] = (),
    ) -> ReplayEpisode:
        """Open the dataset and read `episode`; errors start with the argument to fix.

        No camera_keys: every camera that has a video for this episode. No state_keys: `state.joints`
        as joints (named joint_1.., with `state.joints_velocity` as velocities when it matches) if the
        dataset has it, else every modality state key as named dimensions (`eef_position_0`, ...).
        `joint_names`, when given, replaces the names and must match the number of values.
        """
        try:
            meta = DatasetMeta(root)
        except DatasetError as err:
            raise _argument("dataset_path", err) from err
        try:
            meta.episode(episode)
        except DatasetError as err:
            raise _argument("episode_index", err) from err
        if not camera_keys:
            camera_keys = [
                key
                for key in meta.camera_keys()
                if meta.video_file(episode, meta.resolve(key).column).is_file()
            ]
        state_keys, names, velocity_keys = cls._state_layout(meta, state_keys)
        for argument, keys in (
            ("camera_keys", camera_keys),
            ("state_keys", state_keys),
            ("action_keys", action_keys),
        ):
            try:  # one argument at a time, so that the error names the one to fix
                LeRobotDataset(root, episodes=[episode], **{argument: keys})
            except DatasetError as err:
                raise _argument(argument, err) from err
        if joint_names and len(joint_names) != len(names):
            raise DatasetError(
                f"joint_names: {len(joint_names)} names given, but the state has {len(names)} values"
            )
        reader = LeRobotDataset(
            root, camera_keys=camera_keys, state_keys=state_keys, action_keys=action_keys, episodes=[episode]
        )
        return cls(
            reader=reader,
            episode=episode,
            instruction=reader.instruction(episode),
            camera_keys=tuple(camera_keys),
            joint_names=tuple(joint_names or names),
            positions=reader.states(episode),
            velocities=reader.columns(episode, velocity_keys) if velocity_keys else None,
            actions=reader.actions(episode),
            action_names=tuple(name for key in action_keys for name in meta.dimension_names(key)),
        )

    @staticmethod
    def _state_layout(
        meta: DatasetMeta, state_keys: Sequence[str]
    ) -> tuple[list[str], list[str], list[str] | None]:
        """(state keys, their names, velocity keys or None)."""
        joints = None if state_keys else _optional_width(meta, JOINT_KEY)
        if joints is not None:
            velocity = [JOINT_VELOCITY_KEY] if _optional_width(meta, JOINT_VELOCITY_KEY) == joints else None
            return [JOINT_KEY], [f"joint_{i + 1}" for i in range(joints)], velocity
        keys = list(state_keys) or [f"state.{name}" for name in (meta.modality or {}).get("state", {})]
        if not keys:
            raise DatasetError(f"state_keys: {meta.root} has no state keys in meta/modality.json; name them")
        try:
            return keys, [name for key in keys for name in meta.dimension_names(key)], None
        except DatasetError as err:
            raise _argument("state_keys", err) from err


class FrameStamps:
    """Stamps (integer nanoseconds) of published frames, in publishing order, matched within a tolerance."""

    def __init__(self, tolerance_ns: int):
        self.tolerance_ns = tolerance_ns
        self._stamps: list[int] = []
        self._frames: list[int] = []

    def add(self, stamp_ns: int, frame_index: int) -> None:
        """Remember a published frame; stamps must not go backwards (they come from one clock)."""
        if self._stamps and stamp_ns < self._stamps[-1]:
            raise ValueError(f"stamp {stamp_ns} ns is older than the previous frame's {self._stamps[-1]} ns")
        self._stamps.append(stamp_ns)
        self._frames.append(frame_index)

    def match(self, stamp_ns: int) -> int | None:
        """The frame published nearest to `stamp_ns` if within the tolerance, else None."""
        position = bisect.bisect_left(self._stamps, stamp_ns)
        candidates = [i for i in (position - 1, position) if 0 <= i < len(self._stamps)]
        if not candidates:
            return None
        best = min(candidates, key=lambda i: abs(self._stamps[i] - stamp_ns))
        return self._frames[best] if abs(self._stamps[best] - stamp_ns) <= self.tolerance_ns else None

    def clear(self) -> None:
        self._stamps.clear()
        self._frames.clear()


@dataclass(frozen=True)
class ActionError:
    """One compared step."""

    frame_index: int
    dataset_action: np.ndarray
    commanded_action: np.ndarray

    @property
    def abs_error(self) -> np.ndarray:
        return np.abs(self.commanded_action - self.dataset_action)


class ActionErrorLog:
    """Per-step commanded-vs-dataset actions of one pass over an episode."""

    def __init__(self, dimension_names: Sequence[str]):
        if not dimension_names:
            raise ValueError("an action error log needs at least one dimension")
        self.dimension_names = list(dimension_names)
        self.steps: list[ActionError] = []

    def record(
        self, frame_index: int, dataset_action: np.ndarray, commanded_action: np.ndarray
    ) -> ActionError:
        """Add one step; both actions must have one value per dimension."""
        dataset_action = np.asarray(dataset_action, dtype=np.float64).reshape(-1)
        commanded_action = np.asarray(commanded_action, dtype=np.float64).reshape(-1)
        size = len(self.dimension_names)
        if dataset_action.size != size or commanded_action.size != size:
            raise ValueError(
                f"expected {size} action dimensions, got dataset {dataset_action.size}, "
                f"commanded {commanded_action.size}"
            )
        step = ActionError(frame_index, dataset_action, commanded_action)
        self.steps.append(step)
        return step

    def summary(self) -> dict[str, Any]:
        """Mean and max absolute error per dimension (None when nothing was recorded)."""
        errors = np.array([step.abs_error for step in self.steps]).reshape(-1, len(self.dimension_names))
        empty = not self.steps
        return {
            "steps": len(self.steps),
            "dimension_names": self.dimension_names,
            "mean_abs_error": None if empty else errors.mean(axis=0).tolist(),
            "max_abs_error": None if empty else errors.max(axis=0).tolist(),
            "frames_compared": len({step.frame_index for step in self.steps}),
        }

    def write(
        self, csv_path: Path, summary_path: Path, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Write the per-step CSV and the summary JSON (with `extra` fields merged in); return the summary.

        CSV columns: frame_index, dataset_<name>..., commanded_<name>..., abs_error_<name>..., sorted by
        frame (a frame that several chunks were computed from has several rows).
        """
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with csv_path.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(
                ["frame_index"]
                + [
                    f"{prefix}_{name}"
                    for prefix in ("dataset", "commanded", "abs_error")
                    for name in self.dimension_names
                ]
            )
            for step in sorted(self.steps, key=lambda s: s.frame_index):
                values = np.concatenate([step.dataset_action, step.commanded_action, step.abs_error])
                writer.writerow([step.frame_index, *(repr(float(v)) for v in values)])
        summary = {**(extra or {}), **self.summary(), "error_file": str(csv_path)}
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2))
        return summary


def read_error_file(path: Path) -> tuple[list[str], np.ndarray]:
    """Read a per-step CSV back: (header, rows as float64 [steps, 1 + 3 D])."""
    with path.open(newline="") as stream:
        rows = list(csv.reader(stream))
    return rows[0], np.array(rows[1:], dtype=np.float64).reshape(-1, len(rows[0]))
