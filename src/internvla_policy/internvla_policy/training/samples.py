"""Training samples from a LeRobot dataset: camera views, instruction, normalised action chunk, and
grounding questions with their answers.

Every frame of the chosen cameras is decoded once (in episode order, so the video decoder never
seeks) and kept in memory as recorded; batches are then drawn at random without further decoding.
Views reach the model as they do at run time: a grounding overlay is drawn on the camera image at
its own size, and the model's preprocessing resizes afterwards.

Grounding labels (meta/grounding.jsonl, as the simulator's recorder writes them: per episode the
named targets and, every few frames, each object's box in one camera) serve twice, as in the paper's
spatially guided training: as answers for the grounding loss, and drawn onto that camera's view with
the same function the policy node's ``overlay`` mode uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from internvla_policy.data import DatasetError, DatasetStatistics, LeRobotDataset, normalize
from internvla_policy.data.lerobot import chunk_steps
from internvla_policy.vision.annotate import draw_grounding
from internvla_policy.vision.geometry import Box2D, GroundingResult, ParseStatus

GROUNDING_FILE = "meta/grounding.jsonl"


@dataclass(frozen=True)
class ActionBatch:
    """Per sample: the camera views (model-sized PIL images), the instruction, the normalised chunk."""

    views: list[list[Image.Image]]
    instructions: list[str]
    actions: torch.Tensor
    """[B, horizon, action_dim] float32 in the model's normalised space."""


@dataclass(frozen=True)
class GroundingBatch:
    """Per sample: one camera image, the grounding question and the expected JSON answer."""

    images: list[Image.Image]
    prompts: list[str]
    answers: list[str]


@dataclass(frozen=True)
class EpisodeGrounding:
    """One episode's labels: the camera they refer to, the labelled frames and the targets' boxes there."""

    video_key: str
    image_size: tuple[int, int]
    frames: np.ndarray
    """Sorted frame indices that carry labels."""
    targets: list[GroundingResult]
    """Per labelled frame: the instruction's named objects that are visible, as boxes."""

    def at(self, frame_index: int) -> GroundingResult:
        """The labels of the latest labelled frame at or before ``frame_index`` (else the first)."""
        position = max(int(np.searchsorted(self.frames, frame_index, side="right")) - 1, 0)
        return self.targets[position]


def grounding_answer(result: GroundingResult, size: tuple[int, int]) -> str:
    """The answer the model is trained to give: Qwen2.5-VL's JSON boxes in the pixels of an image of
    ``size`` (width, height), the label first.

    Qwen writes ``bbox_2d`` before ``label``; here the label comes first so that the autoregressive model
    names the object (copied from the instruction) before it has to locate it, and the coordinates are
    predicted knowing what they belong to. The grounding parser reads either order.
    """
    sx, sy = size[0] / result.image_width, size[1] / result.image_height
    boxes = [
        {
            "label": box.label,
            "bbox_2d": [
                round(box.x_min * sx),
                round(box.y_min * sy),
                round(box.x_max * sx),
                round(box.y_max * sy),
            ],
        }
        for box in result.boxes
    ]
    return json.dumps(boxes)


def read_grounding(root: Path) -> dict[int, EpisodeGrounding]:
    """meta/grounding.jsonl as per-episode target boxes; episodes without a visible target are left out."""
    path = Path(root) / GROUNDING_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: not found (grounding labels are written by the simulator's recorder)")
    episodes = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
            width, height = record["image_size"]
            frames, targets = [], []
            for frame in record["frames"]:
                objects = {item["label"]: item for item in frame["objects"]}
                boxes = tuple(
                    Box2D(*map(float, objects[label]["bbox_2d"]), label=label)
                    for label in record["targets"]
                    if objects.get(label, {}).get("bbox_2d") is not None
                )
                if boxes:
                    frames.append(int(frame["frame_index"]))
                    targets.append(GroundingResult(width, height, boxes=boxes, status=ParseStatus.OK))
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetError(f"{path}:{number}: not a grounding record ({err})") from err
        if frames:
            episodes[int(record["episode_index"])] = EpisodeGrounding(
                record["video_key"], (width, height), np.asarray(frames), targets
            )
    return episodes


class TrainingData:
    """The frames, chunks and labels of the chosen episodes, in memory, and random batches of them."""

    def __init__(
        self,
        reader: LeRobotDataset,
        statistics: DatasetStatistics,
        grounding: dict[int, EpisodeGrounding] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.reader = reader
        self.episodes = list(reader.episode_indices)
        self.instructions = {episode: reader.instruction(episode) for episode in self.episodes}
        self.actions = {
            episode: normalize(reader.actions(episode), statistics.action).astype(np.float32)
            for episode in self.episodes
        }
        self.frames = self._decode_frames(log)
        self.index = np.array(
            [(episode, frame) for episode in self.episodes for frame in range(len(self.actions[episode]))]
        )
        self.grounding = {e: g for e, g in (grounding or {}).items() if e in self.actions}
        for labels in self.grounding.values():
            if labels.video_key not in reader.camera_keys:
                raise DatasetError(
                    f"grounding labels refer to {labels.video_key}, which is not among the cameras "
                    f"{list(reader.camera_keys)}"
                )
        self._grounding_index = np.array(
            [(e, int(f)) for e, labels in self.grounding.items() for f in labels.frames], dtype=np.int64
        ).reshape(-1, 2)

    def _decode_frames(self, log: Callable[[str], None]) -> dict[tuple[int, str], np.ndarray]:
        frames = {}
        for number, episode in enumerate(self.episodes, start=1):
            for camera in self.reader.cameras(episode):
                frames[episode, camera] = np.stack(
                    [self.reader.image(episode, camera, f) for f in range(self.reader.num_frames(episode))]
                )
            if number % 50 == 0 or number == len(self.episodes):
                log(f"decoded {number}/{len(self.episodes)} episodes")
        return frames

    def __len__(self) -> int:
        return len(self.index)

    @property
    def has_grounding(self) -> bool:
        return len(self._grounding_index) > 0

    def views(self, episode: int, frame: int, overlay: bool = False) -> list[Image.Image]:
        """The camera views of one frame as recorded; with ``overlay`` the target boxes drawn on the
        labelled camera's view (as the policy's ``overlay`` spatial-prompt mode draws its grounding)."""
        cameras = self.reader.cameras(episode)
        images = [self.frames[episode, camera][frame] for camera in cameras]
        labels = self.grounding.get(episode)
        if overlay and labels is not None:
            camera = cameras.index(labels.video_key)
            images[camera] = draw_grounding(images[camera], labels.at(frame))
        return [Image.fromarray(image) for image in images]

    def action_batch(
        self, rng: np.random.Generator, size: int, overlay_probability: float = 0.0
    ) -> ActionBatch:
        """``size`` random frames; each gets the overlay with ``overlay_probability`` when it has labels."""
        picks = self.index[rng.integers(len(self.index), size=size)]
        overlay = rng.random(size) < overlay_probability
        horizon = self.reader.action_horizon
        chunks = [
            self.actions[episode][chunk_steps(frame, horizon, len(self.actions[episode]))]
            for episode, frame in picks
        ]
        return ActionBatch(
            views=[self.views(e, f, bool(o)) for (e, f), o in zip(picks, overlay, strict=True)],
            instructions=[self.instructions[e] for e, _ in picks],
            actions=torch.from_numpy(np.stack(chunks)),
        )

    def grounding_batch(
        self,
        rng: np.random.Generator,
        size: int,
        prompt: Callable[[str], str],
        answer_size: Callable[[int, int], tuple[int, int]],
    ) -> GroundingBatch:
        """``size`` random labelled frames: the labelled camera's image, ``prompt(instruction)`` and the
        targets' boxes (``grounding_answer``) in the pixels ``answer_size(width, height)`` of that image."""
        if not self.has_grounding:
            raise DatasetError("this dataset has no grounding labels")
        picks = self._grounding_index[rng.integers(len(self._grounding_index), size=size)]
        images, prompts, answers = [], [], []
        for episode, frame in picks:
            labels = self.grounding[episode]
            image = self.frames[episode, labels.video_key][frame]
            images.append(Image.fromarray(image))
            prompts.append(prompt(self.instructions[episode]))
            answers.append(grounding_answer(labels.at(frame), answer_size(image.shape[1], image.shape[0])))
        return GroundingBatch(images, prompts, answers)


def open_reader(
    root: Path,
    camera_keys: Sequence[str],
    action_keys: Sequence[str],
    horizon: int,
    episodes: Sequence[int] | None,
) -> LeRobotDataset:
    """The dataset reader for training: episodes lacking a chosen camera's video are left out."""
    return LeRobotDataset(
        root,
        camera_keys=camera_keys,
        action_keys=action_keys,
        action_horizon=horizon,
        episodes=episodes,
        on_missing_video="skip_episode",
    )
