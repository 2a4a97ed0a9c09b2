"""Write episodes as a LeRobot v2.1 dataset (parquet per episode, mp4 per camera, meta/ files).

The reader's counterpart, and the project's one writer: the simulator's recorder streams frames into
it one episode at a time (memory stays bounded by one episode however many are recorded), and tests
write whole synthetic episodes with `write_dataset`. The layout mirrors shared/data/sim_pick_place
(GR00T-style column groups such as `state.joints` and `action.delta_eef_position` named by
meta/modality.json), so the reader, the statistics and the replay node consume what it writes like any
downloaded dataset. `finalize` writes meta/info.json, modality.json, stats.json (with q01/q99),
episodes.jsonl, tasks.jsonl and episodes_stats.jsonl (per-episode min/max/mean/std/count, as LeRobot's
own recorder keeps them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DatasetError
from .meta import TASK_DESCRIPTION_KEY

CODEBASE_VERSION = "v2.1"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
CHUNKS_SIZE = 1000
INDEX_COLUMNS = {
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}
CODEC_NAMES = {"libx264": "h264", "libsvtav1": "av1", "libaom-av1": "av1"}
"""info.json names the stream's codec, not the encoder library that produced it."""
VIDEO_STATS_STRIDE = 4
"""Video statistics use every 4th pixel in each direction: LeRobot itself estimates them from a sample."""

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration per video otherwise


@dataclass
class EpisodeRecord:
    """One episode to write: numeric columns [T, D] (or [T]), videos [T, H, W, 3] uint8, its instruction."""

    task: str
    columns: Mapping[str, np.ndarray]
    videos: Mapping[str, np.ndarray] = field(default_factory=dict)

    def length(self) -> int:
        lengths = {name: len(values) for name, values in {**self.columns, **self.videos}.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise DatasetError(
                f"episode {self.task!r}: columns and videos must have one common length, got {lengths}"
            )
        return next(iter(lengths.values()))


def encode_video(path: Path, frames: np.ndarray, fps: float, codec: str = "libx264", gop: int = 8) -> None:
    """Encode [T, H, W, 3] uint8 RGB frames (H, W even) as an mp4 with a keyframe every `gop` frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise DatasetError(f"{path}: frames must be [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"crf": "12"} if codec == "libx264" else {}
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


def summary(values: np.ndarray) -> dict[str, list]:
    """min/max/mean/std/count over frames of [T, D] values, as episodes_stats.jsonl stores them."""
    return {
        "min": values.min(axis=0).tolist(),
        "max": values.max(axis=0).tolist(),
        "mean": values.mean(axis=0).tolist(),
        "std": values.std(axis=0).tolist(),
        "count": [int(values.shape[0])],
    }


def video_summary(frames: np.ndarray) -> dict[str, list]:
    """Per-channel statistics of [T, H, W, 3] frames in [0, 1], shaped [3, 1, 1] as LeRobot keeps them."""
    pixels = frames[:, ::VIDEO_STATS_STRIDE, ::VIDEO_STATS_STRIDE].reshape(-1, 3).astype(np.float64) / 255.0
    stats = {
        name: [[[float(v)]] for v in reduce(pixels, axis=0)]
        for name, reduce in (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std))
    }
    return {**stats, "count": [int(frames.shape[0])]}


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """One compact JSON object per line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@dataclass(frozen=True)
class _Schema:
    """Columns and videos fixed by the first saved episode; every later episode must match it."""

    widths: dict[str, int]
    dtypes: dict[str, str]
    video_shapes: dict[str, tuple[int, int]]


class LeRobotWriter:
    """Streams episodes into a new dataset folder: `add_frame` ... `save_episode` (or `add_episode`),
    repeated, then `finalize`.

    `feature_names` optionally gives per-dimension names of vector columns (written to info.json, so
    the reader and replay can label them); a column with names must have exactly that many values.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        fps: int,
        robot_type: str = "unknown",
        video_codec: str = "libx264",
        video_gop: int = 8,
        feature_names: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.root = Path(root)
        if (self.root / "meta" / "info.json").exists():
            raise DatasetError(f"{self.root}: already holds a dataset (meta/info.json exists)")
        self.fps, self.robot_type = fps, robot_type
        self.video_codec, self.video_gop = video_codec, video_gop
        self.feature_names = {key: tuple(names) for key, names in (feature_names or {}).items()}
        self._schema: _Schema | None = None
        self._tasks: dict[str, int] = {}
        self._episodes: list[dict[str, Any]] = []
        self._episode_stats: list[dict[str, Any]] = []
        self._all_values: dict[str, list[np.ndarray]] = {}
        self._total_frames = 0
        self._columns: dict[str, list[np.ndarray]] = {}
        self._videos: dict[str, list[np.ndarray]] = {}

    @property
    def episode_index(self) -> int:
        """Index the next saved episode gets (= episodes saved so far)."""
        return len(self._episodes)

    def add_frame(self, columns: Mapping[str, Any], images: Mapping[str, np.ndarray]) -> None:
        """Buffer one frame of the current episode: a vector per column and an RGB image per video key."""
        for key, value in columns.items():
            vector = np.asarray(value).reshape(-1)
            names = self.feature_names.get(key)
            if names is not None and vector.shape != (len(names),):
                raise DatasetError(f"{key}: expected {len(names)} values, got {vector.shape[0]}")
            self._columns.setdefault(key, []).append(vector)
        for key, image in images.items():
            self._videos.setdefault(key, []).append(np.asarray(image, dtype=np.uint8))

    def discard_episode(self) -> None:
        """Drop the buffered frames of the current episode (e.g. a failed demonstration)."""
        self._columns, self._videos = {}, {}

    def save_episode(self, task: str, extra: Mapping[str, Any] | None = None) -> int:
        """Write the buffered frames as the next episode; `extra` goes into its episodes.jsonl line."""
        record = EpisodeRecord(
            task,
            {key: np.stack(values) for key, values in self._columns.items()},
            {key: np.stack(frames) for key, frames in self._videos.items()},
        )
        self.discard_episode()
        return self.add_episode(record, extra)

    def add_episode(self, episode: EpisodeRecord, extra: Mapping[str, Any] | None = None) -> int:
        """Write one whole episode (parquet, videos, statistics); returns its index."""
        length = episode.length()
        columns = {key: np.asarray(values).reshape(length, -1) for key, values in episode.columns.items()}
        videos = {key: np.asarray(frames, dtype=np.uint8) for key, frames in episode.videos.items()}
        self._check_schema(columns, videos)
        index, chunk = self.episode_index, self.episode_index // CHUNKS_SIZE
        task_index = self._tasks.setdefault(episode.task, len(self._tasks))
        index_columns = {
            "timestamp": (np.arange(length) / self.fps).astype(np.float32),
            "frame_index": np.arange(length, dtype=np.int64),
            "episode_index": np.full(length, index, dtype=np.int64),
            "index": np.arange(self._total_frames, self._total_frames + length, dtype=np.int64),
            "task_index": np.full(length, task_index, dtype=np.int64),
        }
        table = {key: list(values) for key, values in sorted(columns.items())} | index_columns
        data_file = self.root / DATA_PATH.format(episode_chunk=chunk, episode_index=index)
        data_file.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(table), data_file)
        stats: dict[str, Any] = {}
        for key, values in columns.items():
            self._all_values.setdefault(key, []).append(values)
            stats[key] = summary(values.astype(np.float64))
        for key, values in index_columns.items():
            stats[key] = summary(values.reshape(-1, 1).astype(np.float64))
        for key, frames in sorted(videos.items()):
            path = self.root / VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=index)
            encode_video(path, frames, self.fps, self.video_codec, self.video_gop)
            stats[key] = video_summary(frames)
        line = {"episode_index": index, "tasks": [episode.task], "length": length, **(extra or {})}
        self._episodes.append(line)
        self._episode_stats.append({"episode_index": index, "stats": stats})
        self._total_frames += length
        return index

    def _check_schema(self, columns: Mapping[str, np.ndarray], videos: Mapping[str, np.ndarray]) -> None:
        schema = _Schema(
            widths={key: values.shape[1] for key, values in columns.items()},
            dtypes={key: str(values.dtype) for key, values in columns.items()},
            video_shapes={key: frames.shape[1:3] for key, frames in videos.items()},
        )
        for key, frames in videos.items():
            if frames.ndim != 4 or frames.shape[3] != 3:
                raise DatasetError(f"{key}: expected [T, H, W, 3] RGB frames, got {frames.shape}")
        if self._schema is None:
            self._schema = schema
        elif (schema.widths, schema.video_shapes) != (self._schema.widths, self._schema.video_shapes):
            raise DatasetError(
                f"episode {self.episode_index} has different columns or videos than episode 0: "
                f"{schema.widths} {schema.video_shapes} vs {self._schema.widths} {self._schema.video_shapes}"
            )

    def finalize(self) -> Path:
        """Write meta/: info, modality and stats (.json); episodes, tasks and episodes_stats (.jsonl)."""
        if self._schema is None:
            raise DatasetError("no episode was saved; nothing to finalize")
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        _write_json(meta / "info.json", self._info(self._schema))
        _write_json(meta / "modality.json", self._modality(self._schema))
        _write_json(meta / "stats.json", self._stats())
        write_jsonl(meta / "episodes.jsonl", self._episodes)
        write_jsonl(meta / "episodes_stats.jsonl", self._episode_stats)
        write_jsonl(meta / "tasks.jsonl", [{"task_index": i, "task": t} for t, i in self._tasks.items()])
        return self.root

    def _info(self, schema: _Schema) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for key in sorted(schema.widths):
            features[key] = {"dtype": schema.dtypes[key], "shape": [schema.widths[key]]}
            if key in self.feature_names:
                features[key]["names"] = list(self.feature_names[key])
        for key, (height, width) in sorted(schema.video_shapes.items()):
            features[key] = {
                "dtype": "video",
                "shape": [height, width, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": height,
                    "video.width": width,
                    "video.codec": CODEC_NAMES.get(self.video_codec, self.video_codec),
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": self.fps,
                    "video.channels": 3,
                    "has_audio": False,
                },
            }
        for key, dtype in INDEX_COLUMNS.items():
            features[key] = {"dtype": dtype, "shape": [1], "names": None}
        episodes = len(self._episodes)
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": episodes,
            "total_frames": self._total_frames,
            "total_tasks": len(self._tasks),
            "total_videos": episodes * len(schema.video_shapes),
            "total_chunks": (episodes - 1) // CHUNKS_SIZE + 1,
            "chunks_size": CHUNKS_SIZE,
            "fps": self.fps,
            "splits": {"train": f"0:{episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": features,
        }

    @staticmethod
    def _modality(schema: _Schema) -> dict[str, Any]:
        modality: dict[str, Any] = {"state": {}, "action": {}, "video": {}}
        for key, width in schema.widths.items():
            group, _, name = key.partition(".")
            if group in ("state", "action") and name:
                modality[group][name] = {"start": 0, "end": width, "original_key": key}
        for key in schema.video_shapes:
            modality["video"][key.partition(".")[2] or key] = {"original_key": key}
        modality["annotation"] = {TASK_DESCRIPTION_KEY.partition(".")[2]: {"original_key": "task_index"}}
        return modality

    def _stats(self) -> dict[str, Any]:
        """Whole-dataset statistics per column (q01/q99 as the normalisation needs)."""
        stats = {}
        for key, chunks in sorted(self._all_values.items()):
            values = np.concatenate(chunks).astype(np.float64)
            stats[key] = {
                **{name: summary(values)[name] for name in ("mean", "std", "min", "max")},
                "q01": np.quantile(values, 0.01, axis=0).tolist(),
                "q99": np.quantile(values, 0.99, axis=0).tolist(),
            }
        return stats


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=4) + "\n")


def write_dataset(
    root: Path | str,
    episodes: Sequence[EpisodeRecord],
    *,
    fps: int = 30,
    robot_type: str = "unknown",
    video_codec: str = "libx264",
) -> Path:
    """Write `episodes` under `root` (which must not hold a dataset yet) and return the root."""
    if not episodes:
        raise DatasetError("no episodes to write")
    writer = LeRobotWriter(root, fps=fps, robot_type=robot_type, video_codec=video_codec)
    for episode in episodes:
        writer.add_episode(episode)
    return writer.finalize()
