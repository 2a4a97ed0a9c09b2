"""Write episodes as a LeRobot v2.1 dataset: parquet per episode, mp4 per camera, meta/*.json[l].

The layout mirrors shared/data/sim_pick_place (GR00T-style column groups such as ``state.joints``
and ``action.delta_eef_position`` described by meta/modality.json), so one reader serves both.
Videos are AV1 (SVT-AV1, yuv420p, a key frame every 2 frames) like LeRobot's own recorder, encoded
by the project's one mp4 writer (internvla_policy.data.encode_video). Frames are buffered per episode
only, so memory stays bounded however many episodes are recorded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from internvla_policy.data.writer import CHUNKS_SIZE, DATA_PATH, VIDEO_PATH, encode_video

CODEBASE_VERSION = "v2.1"
_INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
VIDEO_GOP = 2  # key frame interval: cheap random access for training loaders

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration per video otherwise


@dataclass(frozen=True)
class VectorFeature:
    """A float64 vector column such as ``state.joints``, with per-dimension names."""

    key: str
    names: tuple[str, ...]

    @property
    def dim(self) -> int:
        return len(self.names)


def _summary(values: np.ndarray) -> dict[str, list]:
    """min/max/mean/std/count over axis 0, as LeRobot's episodes_stats.jsonl stores them."""
    return {
        "min": values.min(axis=0).tolist(),
        "max": values.max(axis=0).tolist(),
        "mean": values.mean(axis=0).tolist(),
        "std": values.std(axis=0).tolist(),
        "count": [int(values.shape[0])],
    }


def _video_stats(frames: np.ndarray) -> dict[str, list]:
    """Per-channel statistics in [0, 1], shaped [3, 1, 1] as LeRobot keeps them for videos.

    Every 4th pixel in each direction is enough: LeRobot itself estimates these from a sample.
    """
    pixels = frames[:, ::4, ::4].reshape(-1, 3).astype(np.float64) / 255.0

    def per_channel(values: np.ndarray) -> list:
        return [[[float(v)]] for v in values]

    return {
        "min": per_channel(pixels.min(axis=0)),
        "max": per_channel(pixels.max(axis=0)),
        "mean": per_channel(pixels.mean(axis=0)),
        "std": per_channel(pixels.std(axis=0)),
        "count": [int(frames.shape[0])],
    }


@dataclass
class _Episode:
    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)
    videos: dict[str, list[np.ndarray]] = field(default_factory=dict)
    length: int = 0


class LeRobotWriter:
    """Accumulates frames episode by episode and writes the dataset's metadata at ``finalize``."""

    def __init__(
        self,
        root: Path,
        fps: int,
        robot_type: str,
        features: list[VectorFeature],
        video_keys: list[str],
        image_size: tuple[int, int],
    ) -> None:
        self.root = Path(root)
        if (self.root / "meta" / "info.json").exists():
            raise FileExistsError(f"{self.root} already holds a dataset; choose an empty folder")
        self.fps, self.robot_type = fps, robot_type
        self.features, self.video_keys = features, video_keys
        self.width, self.height = image_size
        self._tasks: dict[str, int] = {}
        self._episodes: list[dict] = []
        self._episode_stats: list[dict] = []
        self._all: dict[str, list[np.ndarray]] = {f.key: [] for f in features}
        self._total_frames = 0
        self._current = _Episode()

    @property
    def episode_index(self) -> int:
        return len(self._episodes)

    def _video_path(self, key: str, episode: int) -> Path:
        return self.root / VIDEO_PATH.format(
            episode_chunk=episode // CHUNKS_SIZE, video_key=key, episode_index=episode
        )

    def add_frame(self, values: dict[str, np.ndarray], images: dict[str, np.ndarray]) -> None:
        """Append one frame: every vector feature and every video key must be present."""
        for feature in self.features:
            vec = np.asarray(values[feature.key], dtype=np.float64).reshape(-1)
            if vec.shape != (feature.dim,):
                raise ValueError(f"{feature.key}: expected {feature.dim} values, got {vec.shape[0]}")
            self._current.columns.setdefault(feature.key, []).append(vec)
        for key in self.video_keys:
            image = np.asarray(images[key], dtype=np.uint8)
            if image.shape != (self.height, self.width, 3):
                raise ValueError(f"{key}: expected a {self.height}x{self.width} RGB image, got {image.shape}")
            self._current.videos.setdefault(key, []).append(image)
        self._current.length += 1

    def save_episode(self, task: str, extra: dict | None = None) -> int:
        """Write the current episode's parquet and videos; returns its index."""
        episode, ep = self._current, self.episode_index
        if episode.length == 0:
            raise ValueError("cannot save an empty episode")
        task_index = self._tasks.setdefault(task, len(self._tasks))
        n = episode.length
        table: dict[str, pa.Array] = {}
        stats: dict[str, dict] = {}
        for feature in self.features:
            values = np.stack(episode.columns[feature.key])
            self._all[feature.key].append(values)
            table[feature.key] = pa.array(list(values), type=pa.list_(pa.float64()))
            stats[feature.key] = _summary(values)
        index_values = {
            "timestamp": np.arange(n, dtype=np.float32) / self.fps,
            "frame_index": np.arange(n, dtype=np.int64),
            "episode_index": np.full(n, ep, dtype=np.int64),
            "index": np.arange(self._total_frames, self._total_frames + n, dtype=np.int64),
            "task_index": np.full(n, task_index, dtype=np.int64),
        }
        for key, values in index_values.items():
            table[key] = pa.array(values)
            stats[key] = _summary(values.reshape(-1, 1).astype(np.float64))
        for key, images in episode.videos.items():
            frames = np.stack(images)
            encode_video(self._video_path(key, ep), frames, self.fps, codec="libsvtav1", gop=VIDEO_GOP)
            stats[key] = _video_stats(frames)
        path = self.root / DATA_PATH.format(episode_chunk=ep // CHUNKS_SIZE, episode_index=ep)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(table), path)
        self._episodes.append({"episode_index": ep, "tasks": [task], "length": n, **(extra or {})})
        self._episode_stats.append({"episode_index": ep, "stats": stats})
        self._total_frames += n
        self._current = _Episode()
        return ep

    def discard_episode(self) -> None:
        """Drop the frames of the current episode (e.g. a failed demonstration)."""
        self._current = _Episode()

    def _info(self) -> dict:
        features: dict[str, dict] = {
            f.key: {"dtype": "float64", "shape": [f.dim], "names": list(f.names)} for f in self.features
        }
        for key in self.video_keys:
            features[key] = {
                "dtype": "video",
                "shape": [self.height, self.width, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": self.height,
                    "video.width": self.width,
                    "video.codec": "av1",
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": self.fps,
                    "video.channels": 3,
                    "has_audio": False,
                },
            }
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for key in _INDEX_COLUMNS[1:]:
            features[key] = {"dtype": "int64", "shape": [1], "names": None}
        episodes = len(self._episodes)
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": episodes,
            "total_frames": self._total_frames,
            "total_tasks": len(self._tasks),
            "total_videos": episodes * len(self.video_keys),
            "total_chunks": max(1, -(-episodes // CHUNKS_SIZE)),
            "chunks_size": CHUNKS_SIZE,
            "fps": self.fps,
            "splits": {"train": f"0:{episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": features,
        }

    def _modality(self) -> dict:
        modality: dict[str, dict] = {"state": {}, "action": {}}
        for f in self.features:
            group, name = f.key.split(".", 1)
            modality[group][name] = {"start": 0, "end": f.dim, "original_key": f.key}
        modality["video"] = {key.split(".", 1)[1]: {"original_key": key} for key in self.video_keys}
        modality["annotation"] = {"human.action.task_description": {"original_key": "task_index"}}
        return modality

    def _stats(self) -> dict:
        stats = {}
        for key, chunks in self._all.items():
            values = np.concatenate(chunks)
            stats[key] = {
                "mean": values.mean(axis=0).tolist(),
                "std": values.std(axis=0).tolist(),
                "min": values.min(axis=0).tolist(),
                "max": values.max(axis=0).tolist(),
                "q01": np.quantile(values, 0.01, axis=0).tolist(),
                "q99": np.quantile(values, 0.99, axis=0).tolist(),
            }
        return stats

    def finalize(self) -> Path:
        """Write meta/: info, modality and stats (.json); episodes, tasks and episodes_stats (.jsonl)."""
        if not self._episodes:
            raise ValueError("no episode was saved; nothing to finalize")
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        _write_json(meta / "info.json", self._info())
        _write_json(meta / "modality.json", self._modality())
        _write_json(meta / "stats.json", self._stats())
        write_jsonl(meta / "episodes.jsonl", self._episodes)
        write_jsonl(meta / "episodes_stats.jsonl", self._episode_stats)
        write_jsonl(meta / "tasks.jsonl", [{"task_index": i, "task": t} for t, i in self._tasks.items()])
        return self.root


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=4) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One compact JSON object per line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
