"""Write episodes as a LeRobot v2.1 dataset (parquet per episode, mp4 per camera, meta/ files).

The reader's counterpart: recorders (the simulator's scripted expert) and tests use it to produce
datasets that the reader, the statistics and the replay node then consume like any downloaded one.
It writes meta/info.json, episodes.jsonl, tasks.jsonl and a GR00T-style modality.json (one entry per
`state.*` / `action.*` / `video.*` column, plus the task-description annotation); per-episode
statistics (episodes_stats.jsonl) are not written.
"""

from __future__ import annotations

import json
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


def _modality(columns: Sequence[str], widths: Mapping[str, int], videos: Sequence[str]) -> dict[str, Any]:
    modality: dict[str, Any] = {"state": {}, "action": {}, "video": {}}
    for column in columns:
        group, _, name = column.partition(".")
        if group in ("state", "action") and name:
            modality[group][name] = {"start": 0, "end": widths[column], "original_key": column}
    for video in videos:
        modality["video"][video.partition(".")[2] or video] = {"original_key": video}
    modality["annotation"] = {TASK_DESCRIPTION_KEY.partition(".")[2]: {"original_key": "task_index"}}
    return modality


def _write_episode(
    root: Path, index: int, start: int, task_index: int, episode: EpisodeRecord, fps: int, video_codec: str
) -> int:
    """Write one episode's parquet and videos; return its length."""
    length = episode.length()
    chunk = index // CHUNKS_SIZE
    table = {
        name: list(np.asarray(values).reshape(length, -1)) for name, values in sorted(episode.columns.items())
    }
    table |= {
        "timestamp": pa.array(np.arange(length) / fps, pa.float32()),
        "frame_index": np.arange(length),
        "episode_index": np.full(length, index),
        "index": np.arange(start, start + length),
        "task_index": np.full(length, task_index),
    }
    data_file = root / DATA_PATH.format(episode_chunk=chunk, episode_index=index)
    data_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(table), data_file)
    for video, frames in episode.videos.items():
        encode_video(
            root / VIDEO_PATH.format(episode_chunk=chunk, video_key=video, episode_index=index),
            frames,
            fps,
            video_codec,
        )
    return length


def _features(first: EpisodeRecord, widths: Mapping[str, int], fps: int, video_codec: str) -> dict[str, Any]:
    features: dict[str, Any] = {
        name: {"dtype": str(np.asarray(values).dtype), "shape": [widths[name]]}
        for name, values in sorted(first.columns.items())
    }
    for video, frames in sorted(first.videos.items()):
        height, width = np.shape(frames)[1:3]
        features[video] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": {"video.fps": fps, "video.codec": video_codec, "video.pix_fmt": "yuv420p"},
        }
    for name, dtype in INDEX_COLUMNS.items():
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def write_dataset(
    root: Path | str,
    episodes: Sequence[EpisodeRecord],
    *,
    fps: int = 30,
    robot_type: str = "unknown",
    video_codec: str = "libx264",
) -> Path:
    """Write `episodes` under `root` (which must not hold a dataset yet) and return the root."""
    root = Path(root)
    if (root / "meta" / "info.json").exists():
        raise DatasetError(f"{root}: already holds a dataset (meta/info.json exists)")
    if not episodes:
        raise DatasetError("no episodes to write")
    first = episodes[0]
    names, videos = sorted(first.columns), sorted(first.videos)
    for number, episode in enumerate(episodes):
        if sorted(episode.columns) != names or sorted(episode.videos) != videos:
            raise DatasetError(f"episode {number} has different columns or videos than episode 0")
    widths = {name: int(np.prod(np.shape(first.columns[name])[1:], dtype=int)) for name in names}
    tasks: dict[str, int] = {}
    lengths = []
    for index, episode in enumerate(episodes):
        task_index = tasks.setdefault(episode.task, len(tasks))
        lengths.append(_write_episode(root, index, sum(lengths), task_index, episode, fps, video_codec))
    info = {
        "codebase_version": "v2.1",
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": sum(lengths),
        "total_tasks": len(tasks),
        "total_videos": len(videos) * len(episodes),
        "total_chunks": (len(episodes) - 1) // CHUNKS_SIZE + 1,
        "chunks_size": CHUNKS_SIZE,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": _features(first, widths, fps, video_codec),
    }
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    (meta / "modality.json").write_text(json.dumps(_modality(names, widths, videos), indent=4))
    (meta / "tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for t, i in tasks.items())
    )
    (meta / "episodes.jsonl").write_text(
        "".join(
            json.dumps({"episode_index": i, "tasks": [e.task], "length": n}) + "\n"
            for i, (e, n) in enumerate(zip(episodes, lengths, strict=True))
        )
    )
    return root
