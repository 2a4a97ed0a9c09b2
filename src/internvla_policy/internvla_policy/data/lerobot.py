"""Read a LeRobot v2.x dataset as training samples: camera frames, state, an action chunk, an instruction.

The caller chooses which cameras, state and action keys make up a sample (modality keys such as
`action.delta_eef_position`, see meta.py), so the same reader serves the released Franka action space
and a user's own robot. A sample at frame t holds the state at t and the actions t .. t+H-1; near the
end of an episode the chunk is padded by repeating its last action, as upstream's training data does,
so every frame is a usable sample. Nothing here imports torch: torch_dataset.py wraps it for loaders.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DatasetError
from .meta import TASK_DESCRIPTION_KEY, ColumnSlice, DatasetMeta, Episode
from .video import VideoDecoder

MissingVideo = Literal["error", "skip_view", "skip_episode"]
"""What to do when a chosen camera has no mp4 for an episode: raise at open, leave the view out of
that episode's samples, or leave the episode out."""

CACHE_SIZE = 256
"""Per-episode arrays (columns, chosen keys, instructions) kept in memory, least recently used first out."""
DECODER_CACHE_SIZE = 16


@dataclass(frozen=True)
class Sample:
    """One training example (or one replayed frame)."""

    episode_index: int
    frame_index: int
    timestamp: float
    camera_keys: tuple[str, ...]
    """The cameras in `images`, in order (fewer than asked for only with on_missing_video="skip_view")."""
    images: list[np.ndarray]
    """[H, W, 3] uint8 RGB per camera."""
    state: np.ndarray
    """[Ds] float32, the chosen state keys concatenated."""
    action: np.ndarray
    """[H, Da] float32, the chosen action keys concatenated, for frames t .. t+H-1 (last one repeated)."""
    instruction: str


def _to_matrix(array: pa.ChunkedArray, column: str, path: Path) -> np.ndarray:
    """A numeric parquet column (scalars or equal-length lists) as [rows, width] float64."""
    array = array.combine_chunks()
    if array.null_count:
        raise DatasetError(f"{path}: column {column!r} has {array.null_count} missing values")
    if (
        pa.types.is_list(array.type)
        or pa.types.is_large_list(array.type)
        or pa.types.is_fixed_size_list(array.type)
    ):
        values = array.flatten()
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
            raise DatasetError(f"{path}: column {column!r} holds {values.type}, not numbers")
        flat = values.to_numpy(zero_copy_only=False).astype(np.float64)
        rows = len(array)
        if rows and flat.size % rows:
            raise DatasetError(f"{path}: column {column!r} has rows of different lengths")
        matrix = flat.reshape(rows, -1 if rows else 0)
        if not pa.types.is_fixed_size_list(array.type) and rows:
            lengths = np.diff(array.offsets.to_numpy())
            if (lengths != matrix.shape[1]).any():
                raise DatasetError(f"{path}: column {column!r} has rows of different lengths")
        return matrix
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_boolean(array.type):
        return array.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 1)
    raise DatasetError(f"{path}: column {column!r} holds {array.type}, not numbers")


def chunk_steps(frame_index: int, horizon: int, length: int) -> np.ndarray:
    """Frame indices of the action chunk at ``frame_index``: t .. t+H-1, clamped to the episode's last."""
    return np.minimum(np.arange(frame_index, frame_index + horizon), length - 1)


class LeRobotDataset:
    """A LeRobot v2.x dataset on disk, read as samples of the chosen cameras, state and action keys.

    Parquet columns are read on demand (only the chosen ones) and kept in a small cache; video
    decoders stay open per (episode, camera) so that reading an episode in order decodes each frame
    once. After a fork (DataLoader workers) each process opens its own decoders.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        camera_keys: Sequence[str] = (),
        state_keys: Sequence[str] = (),
        action_keys: Sequence[str] = (),
        action_horizon: int = 16,
        episodes: Iterable[int] | None = None,
        on_missing_video: MissingVideo = "error",
        instruction_key: str | None = None,
    ):
        if action_horizon < 1:
            raise DatasetError(f"action_horizon must be at least 1, got {action_horizon}")
        if on_missing_video not in ("error", "skip_view", "skip_episode"):
            raise DatasetError(
                f"on_missing_video must be error, skip_view or skip_episode, not {on_missing_video!r}"
            )
        self.meta = DatasetMeta(root)
        self.root = self.meta.root
        self.action_horizon = action_horizon
        self.camera_keys = tuple(camera_keys)
        self.state_keys = tuple(state_keys)
        self.action_keys = tuple(action_keys)
        self._cameras = {key: self._resolve_camera(key) for key in self.camera_keys}
        self._state = [self._resolve_numeric(key) for key in self.state_keys]
        self._action = [self._resolve_numeric(key) for key in self.action_keys]
        self._instruction = self._resolve_instruction(instruction_key)
        selected = (
            list(self.meta.episodes) if episodes is None else [self.meta.episode(i).index for i in episodes]
        )
        self._views = {index: self._available_cameras(index) for index in selected}
        self.episode_indices = self._apply_missing_video_policy(selected, on_missing_video)
        self._selected = set(self.episode_indices)
        lengths = [self.meta.episode(index).length for index in self.episode_indices]
        self._starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._cache: OrderedDict[tuple, object] = OrderedDict()
        self._decoders: OrderedDict[tuple[int, str], VideoDecoder] = OrderedDict()
        self._decoder_pid = os.getpid()

    # --- key resolution -------------------------------------------------------------------------

    def _resolve_camera(self, key: str) -> ColumnSlice:
        part = self.meta.resolve(key)
        if not self.meta.is_video(part.column):
            raise DatasetError(f"camera key {key!r} -> column {part.column!r} is not a video feature")
        return part

    def _resolve_numeric(self, key: str) -> ColumnSlice:
        part = self.meta.resolve(key)
        if self.meta.is_video(part.column):
            raise DatasetError(f"key {key!r} is a video; pass it in camera_keys")
        return part

    def _resolve_instruction(self, key: str | None) -> ColumnSlice | None:
        """The per-frame instruction column; None means meta/episodes.jsonl's first task per episode."""
        if key is not None:
            return self.meta.resolve(key)
        for candidate in (TASK_DESCRIPTION_KEY, "task_index"):
            try:
                return self.meta.resolve(candidate)
            except DatasetError:
                continue
        return None

    def _available_cameras(self, episode: int) -> tuple[str, ...]:
        return tuple(
            key for key, part in self._cameras.items() if self.meta.video_file(episode, part.column).is_file()
        )

    def _apply_missing_video_policy(self, selected: list[int], policy: MissingVideo) -> list[int]:
        missing = [
            (episode, key)
            for episode in selected
            for key in self.camera_keys
            if key not in self._views[episode]
        ]
        if not missing or policy == "skip_view":
            return selected
        if policy == "skip_episode":
            kept = [episode for episode in selected if len(self._views[episode]) == len(self.camera_keys)]
            if not kept:
                raise DatasetError(
                    f"{self.root}: no episode has videos for every camera in {list(self.camera_keys)}"
                )
            return kept
        listed = "; ".join(
            str(self.meta.video_file(episode, self._cameras[key].column).relative_to(self.root))
            for episode, key in missing[:5]
        )
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DatasetError(
            f"{self.root}: {len(missing)} video file(s) missing: {listed}{more}. Choose other camera_keys or "
            "pass on_missing_video='skip_view' (leave the view out) or 'skip_episode'"
        )

    # --- per-episode data -----------------------------------------------------------------------

    def episode(self, index: int) -> Episode:
        """Metadata of a selected episode."""
        if index not in self._selected:
            shown = ", ".join(map(str, self.episode_indices[:10])) + (
                ", ..." if len(self._selected) > 10 else ""
            )
            raise DatasetError(
                f"episode {index} is not among this reader's {len(self._selected)} episodes ({shown})"
            )
        return self.meta.episode(index)

    def cameras(self, episode: int) -> tuple[str, ...]:
        """The chosen cameras that have a video for this episode, in the order asked for."""
        self.episode(episode)
        return self._views[episode]

    def _cached(self, key: tuple, load):
        """`load()`, remembered under `key` (sampling a frame must not re-read its episode's files)."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = load()
        self._cache[key] = value
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return value

    def _column(self, episode: int, column: str) -> np.ndarray:
        return self._cached(("column", episode, column), lambda: self._read_column(episode, column))

    def _read_column(self, episode: int, column: str) -> np.ndarray:
        path = self.meta.data_file(episode)
        if not path.is_file():
            raise DatasetError(f"{path}: parquet file of episode {episode} not found")
        try:
            table = pq.read_table(path, columns=[column])
        except (pa.ArrowInvalid, KeyError) as err:
            raise DatasetError(f"{path}: cannot read column {column!r} ({err})") from err
        expected = self.meta.episode(episode).length
        if table.num_rows != expected:
            raise DatasetError(
                f"{path}: {table.num_rows} rows, but meta/episodes.jsonl gives episode {episode} "
                f"{expected} frames"
            )
        return _to_matrix(table.column(column), column, path)

    def _gather(self, episode: int, parts: Sequence[ColumnSlice]) -> np.ndarray:
        length = self.meta.episode(episode).length
        blocks = [self._column(episode, part.column)[:, part.start : part.end] for part in parts]
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((length, 0))

    def columns(self, episode: int, keys: Sequence[str]) -> np.ndarray:
        """Any numeric keys of one episode, concatenated: [frames, total width] float64 as stored."""
        self.episode(episode)
        return self._gather(episode, [self._resolve_numeric(key) for key in keys])

    def column(self, episode: int, column: str) -> np.ndarray:
        """One whole parquet column of one episode as [frames, width] float64 (statistics use this)."""
        self.episode(episode)
        return self._column(episode, column)

    def states(self, episode: int) -> np.ndarray:
        """The chosen state keys for every frame of the episode: [frames, Ds] float64."""
        self.episode(episode)
        return self._cached(("state", episode), lambda: self._gather(episode, self._state))

    def actions(self, episode: int) -> np.ndarray:
        """The chosen action keys for every frame of the episode: [frames, Da] float64."""
        self.episode(episode)
        return self._cached(("action", episode), lambda: self._gather(episode, self._action))

    def num_frames(self, episode: int) -> int:
        """Frames of the episode as counted in its parquet file (checked against episodes.jsonl)."""
        return len(self.timestamps(episode))

    def timestamps(self, episode: int) -> np.ndarray:
        """Seconds from the episode's start per frame: the `timestamp` column, else frame_index / fps."""
        self.episode(episode)
        if "timestamp" in self.meta.features:
            return self._column(episode, "timestamp")[:, 0]
        return np.arange(self.meta.episode(episode).length) / self.meta.fps

    def instructions(self, episode: int) -> list[str]:
        """The instruction of every frame (task indices through meta/tasks.jsonl, or text columns)."""
        self.episode(episode)
        return self._cached(("instructions", episode), lambda: self._read_instructions(episode))

    def _read_instructions(self, episode: int) -> list[str]:
        info = self.meta.episode(episode)
        if self._instruction is None:
            if not info.tasks:
                raise DatasetError(f"{self.root}: episode {episode} has no task in meta/episodes.jsonl")
            return [info.tasks[0]] * info.length
        column = self._instruction.column
        path = self.meta.data_file(episode)
        try:
            values = pq.read_table(path, columns=[column]).column(column).to_pylist()
        except (OSError, pa.ArrowInvalid, KeyError) as err:
            raise DatasetError(f"{path}: cannot read instruction column {column!r} ({err})") from err
        if all(isinstance(value, str) for value in values):
            return values
        if not all(isinstance(value, int) for value in values):
            raise DatasetError(
                f"{path}: instruction column {column!r} holds neither task indices nor text "
                "(binary annotation columns are never unpickled)"
            )
        tasks = self.meta.tasks
        unknown = sorted(set(values) - set(tasks))
        if unknown:
            raise DatasetError(
                f"{self.root}/meta/tasks.jsonl: no task_index {unknown} (used by episode {episode})"
            )
        return [tasks[value] for value in values]

    def instruction(self, episode: int) -> str:
        """The episode's instruction (that of its first frame)."""
        return self.instructions(episode)[0]

    # --- video ----------------------------------------------------------------------------------

    def _decoder(self, episode: int, camera_key: str) -> VideoDecoder:
        if self._decoder_pid != os.getpid():
            self._decoders = OrderedDict()  # the parent's decoders belong to the parent
            self._decoder_pid = os.getpid()
        cache_key = (episode, camera_key)
        decoder = self._decoders.get(cache_key)
        if decoder is None:
            part = self._cameras.get(camera_key) or self._resolve_camera(camera_key)
            decoder = VideoDecoder(self.meta.video_file(episode, part.column), self.meta.fps)
            self._decoders[cache_key] = decoder
            if len(self._decoders) > DECODER_CACHE_SIZE:
                self._decoders.popitem(last=False)[1].close()
        self._decoders.move_to_end(cache_key)
        return decoder

    def image(self, episode: int, camera_key: str, frame_index: int) -> np.ndarray:
        """One camera's frame as [H, W, 3] uint8 RGB (any video key, chosen or not)."""
        timestamps = self.timestamps(episode)
        if not 0 <= frame_index < len(timestamps):
            raise DatasetError(f"frame {frame_index} is outside episode {episode} ({len(timestamps)} frames)")
        return self._decoder(episode, camera_key).frame_at(float(timestamps[frame_index]))

    # --- samples --------------------------------------------------------------------------------

    def sample(self, episode: int, frame_index: int) -> Sample:
        """The sample at one frame of one episode."""
        timestamps = self.timestamps(episode)
        length = len(timestamps)
        if not 0 <= frame_index < length:
            raise DatasetError(f"frame {frame_index} is outside episode {episode} ({length} frames)")
        views = self._views[episode]
        return Sample(
            episode_index=episode,
            frame_index=frame_index,
            timestamp=float(timestamps[frame_index]),
            camera_keys=views,
            images=[self.image(episode, key, frame_index) for key in views],
            state=self.states(episode)[frame_index].astype(np.float32),
            action=self.action_chunk(episode, frame_index).astype(np.float32),
            instruction=self.instructions(episode)[frame_index],
        )

    def action_chunk(self, episode: int, frame_index: int) -> np.ndarray:
        """Actions of frames t .. t+H-1 as [H, Da] float64; past the episode's end its last action repeats."""
        actions = self.actions(episode)
        return actions[chunk_steps(frame_index, self.action_horizon, len(actions))]

    def samples(self, episodes: Iterable[int] | None = None) -> Iterator[Sample]:
        """Every frame of the given episodes (default: all selected) in order: decodes each frame once."""
        for episode in self.episode_indices if episodes is None else episodes:
            for frame_index in range(self.num_frames(episode)):
                yield self.sample(episode, frame_index)

    def locate(self, index: int) -> tuple[int, int]:
        """(episode, frame) of a global sample index over the selected episodes."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} is outside the dataset ({len(self)} samples)")
        position = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.episode_indices[position], int(index - self._starts[position])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> Sample:
        return self.sample(*self.locate(index))

    def close(self) -> None:
        """Close every open video file."""
        for decoder in self._decoders.values():
            decoder.close()
        self._decoders.clear()

    def __enter__(self) -> LeRobotDataset:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
