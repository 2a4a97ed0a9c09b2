"""The `meta/` folder of a LeRobot v2.x dataset, and how a modality key names a column slice.

LeRobot v2.x keeps one parquet file per episode and one mp4 per episode and camera; `meta/info.json`
holds the path templates and the feature list, `meta/episodes.jsonl` the episodes and their lengths,
`meta/tasks.jsonl` the instructions. GR00T-style datasets (the ones InternVLA-M1 trains on) add
`meta/modality.json`, which names slices of those columns: `action.delta_eef_position` ->
column `action.delta_eef_position`, elements [0, 3). Everything here is read once, at open, so that a
missing or malformed file is reported before any training or replay starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DatasetError

INFO_FILE = "meta/info.json"
EPISODES_FILE = "meta/episodes.jsonl"
TASKS_FILE = "meta/tasks.jsonl"
MODALITY_FILE = "meta/modality.json"
SUPPORTED_VERSIONS = ("v2.0", "v2.1")
TASK_DESCRIPTION_KEY = "annotation.human.action.task_description"
"""The GR00T modality key of the per-frame instruction (it points at the `task_index` column)."""


@dataclass(frozen=True)
class ColumnSlice:
    """Where a key's values live: a parquet column (or video key) and, for vectors, an element range."""

    key: str
    column: str
    start: int | None = None
    end: int | None = None

    def width(self, column_width: int) -> int:
        """Number of values this slice takes from a column of `column_width` elements."""
        return len(range(column_width)[self.start : self.end])


@dataclass(frozen=True)
class Episode:
    """One line of meta/episodes.jsonl."""

    index: int
    length: int
    tasks: tuple[str, ...]


def _read_json(root: Path, relative: str) -> Any:
    path = root / relative
    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err


def _read_jsonl(root: Path, relative: str) -> list[dict[str, Any]]:
    path = root / relative
    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise DatasetError(f"{path}:{number}: not valid JSON ({err})") from err
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object per line")
        rows.append(row)
    return rows


def _field(row: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = row.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = {int: "an integer", str: "a string", dict: "an object"}.get(kind, "a number")
        raise DatasetError(f"{where}: field {name!r} is missing or not {expected}")
    return value


class DatasetMeta:
    """The parsed `meta/` folder of one dataset, with key resolution and file paths."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found")
        self.info: dict[str, Any] = _read_json(self.root, INFO_FILE)
        where = str(self.root / INFO_FILE)
        version = self.info.get("codebase_version")
        if version not in SUPPORTED_VERSIONS:
            raise DatasetError(
                f"{where}: codebase_version {version!r} is not supported (this reader handles "
                f"{', '.join(SUPPORTED_VERSIONS)}: one parquet per episode)"
            )
        self.fps = float(_field(self.info, "fps", (int, float), where))
        if self.fps <= 0:
            raise DatasetError(f"{where}: fps must be positive, got {self.fps}")
        self.features: dict[str, dict[str, Any]] = _field(self.info, "features", dict, where)
        self._data_path = _field(self.info, "data_path", str, where)
        self._chunks_size = _field(self.info, "chunks_size", int, where)
        self.episodes = self._read_episodes()
        modality_path = self.root / MODALITY_FILE
        self.modality: dict[str, dict[str, Any]] | None = (
            _read_json(self.root, MODALITY_FILE) if modality_path.is_file() else None
        )
        self._tasks: dict[int, str] | None = None

    def _read_episodes(self) -> dict[int, Episode]:
        episodes: dict[int, Episode] = {}
        for number, row in enumerate(_read_jsonl(self.root, EPISODES_FILE), start=1):
            where = f"{self.root / EPISODES_FILE}:{number}"
            index = _field(row, "episode_index", int, where)
            length = _field(row, "length", int, where)
            tasks = row.get("tasks", [])
            if index in episodes:
                raise DatasetError(f"{where}: episode {index} is listed twice")
            episodes[index] = Episode(index, length, tuple(str(task) for task in tasks))
        if not episodes:
            raise DatasetError(f"{self.root / EPISODES_FILE}: lists no episodes")
        return dict(sorted(episodes.items()))

    @property
    def tasks(self) -> dict[int, str]:
        """task_index -> instruction, from meta/tasks.jsonl (read on first use: only instructions need it)."""
        if self._tasks is None:
            tasks = {}
            for number, row in enumerate(_read_jsonl(self.root, TASKS_FILE), start=1):
                where = f"{self.root / TASKS_FILE}:{number}"
                tasks[_field(row, "task_index", int, where)] = _field(row, "task", str, where)
            self._tasks = tasks
        return self._tasks

    def episode(self, index: int) -> Episode:
        """The episode's metadata; an error lists the valid indices."""
        if index not in self.episodes:
            listed = sorted(self.episodes)
            raise DatasetError(
                f"episode {index} is not in {self.root / EPISODES_FILE} (episodes {listed[0]}..{listed[-1]}, "
                f"{len(listed)} in all)"
            )
        return self.episodes[index]

    def data_file(self, episode: int) -> Path:
        """The episode's parquet file (not checked for existence here)."""
        return self.root / self._data_path.format(
            episode_chunk=episode // self._chunks_size, episode_index=episode
        )

    def video_file(self, episode: int, video_column: str) -> Path:
        """The mp4 of one camera (a video feature of info.json) for one episode."""
        template = self.info.get("video_path")
        if not isinstance(template, str):
            raise DatasetError(f"{self.root / INFO_FILE}: has video features but no 'video_path' template")
        return self.root / template.format(
            episode_chunk=episode // self._chunks_size, episode_index=episode, video_key=video_column
        )

    def resolve(self, key: str) -> ColumnSlice:
        """Map a modality key (`action.delta_eef_position`) or a plain column name to its column slice.

        modality.json is looked up first (group = text before the first dot, name = the rest, so
        `annotation.human.action.task_description` works); a key that is not there may still name a
        column of info.json directly, as in plain LeRobot datasets (`observation.state`).
        """
        group, _, name = key.partition(".")
        entry = (self.modality or {}).get(group, {}).get(name)
        if entry is not None:
            column = entry.get("original_key", key)
            if column not in self.features:
                raise DatasetError(
                    f"{self.root / MODALITY_FILE}: key {key!r} maps to column {column!r}, which "
                    f"{INFO_FILE} does not list"
                )
            return ColumnSlice(key, column, entry.get("start"), entry.get("end"))
        if key in self.features:
            return ColumnSlice(key, key)
        raise DatasetError(f"unknown key {key!r} in {self.root}: {self._available(group)}")

    def _available(self, group: str) -> str:
        if self.modality and group in self.modality:
            names = ", ".join(f"{group}.{name}" for name in self.modality[group])
            return f"{MODALITY_FILE} group {group!r} has {names}"
        groups = ", ".join(sorted(self.modality)) if self.modality else "none (no modality.json)"
        columns = ", ".join(sorted(self.features))
        return f"modality groups: {groups}; columns: {columns}"

    def column_width(self, column: str) -> int:
        """Elements per row of a numeric column, from info.json's shape."""
        shape = self.features[column].get("shape") or [1]
        width = 1
        for size in shape:
            width *= int(size)
        return width

    def key_width(self, key: str) -> int:
        """Values per frame of a numeric key (its slice of its column)."""
        part = self.resolve(key)
        return part.width(self.column_width(part.column))

    def is_video(self, column: str) -> bool:
        """Whether a feature is stored as mp4 files rather than in the parquet."""
        return self.features.get(column, {}).get("dtype") == "video"

    def camera_keys(self) -> list[str]:
        """Every camera, named as callers should ask for it (modality `video.*` keys where they exist)."""
        if self.modality and "video" in self.modality:
            return [f"video.{name}" for name in self.modality["video"]]
        return [column for column in self.features if self.is_video(column)]

    def dimension_names(self, key: str) -> list[str]:
        """One readable name per value of a key: info.json's `names` where given, else `<name>_<i>`."""
        part = self.resolve(key)
        width = self.column_width(part.column)
        names = self.features[part.column].get("names")
        if isinstance(names, dict) and len(names) == 1:
            names = next(iter(names.values()))
        if isinstance(names, list) and len(names) == width and all(isinstance(n, str) for n in names):
            return names[part.start : part.end]
        short = key.partition(".")[2] or key
        count = self.key_width(key)
        return [short] if count == 1 else [f"{short}_{i}" for i in range(count)]
