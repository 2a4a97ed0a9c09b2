"""The synthetic dataset for the data tests (the shared sim_pick_place fixture is in the root conftest).

The synthetic dataset is written with the package's own LeRobot writer into a temporary folder, so
these tests run on a clone without ../shared. Its values are simple enough to check by hand:

- 2 episodes of 5 and 3 frames at 10 fps, instructions "pick the cube" and "place the cube".
- action.delta_x [T, 2]: column 0 = 0 1 2 3 4 | 10 20 30, column 1 = 0.5 * frame.
- action.gripper [T, 1]: -1 -1 1 1 1 | 1 -1 -1.
- state.joints [T, 3]: 100 * episode + frame + (0, 0.25, 0.5).
- video.cam_a 32x24: uniform grey 10 + 20 * frame + 120 * episode (distinct per frame, so seeking can be
  checked). video.cam_b 16x16: written for episode 0 only (episode 1's file is removed, like the shared
  dataset's partial views). modality.json also gets `state.first_two` = state.joints[0:2].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from internvla_policy.data import EpisodeRecord, write_dataset

FPS = 10
LENGTHS = (5, 3)
TASKS = ("pick the cube", "place the cube")
DELTA_X0 = ([0, 1, 2, 3, 4], [10, 20, 30])
GRIPPER = ([-1, -1, 1, 1, 1], [1, -1, -1])


def grey_level(episode: int, frame: int) -> int:
    """The uniform grey of cam_a at one frame."""
    return 10 + 20 * frame + 120 * episode


def _episode(episode: int) -> EpisodeRecord:
    length = LENGTHS[episode]
    frames = np.arange(length)
    delta_x = np.stack([np.asarray(DELTA_X0[episode], float), 0.5 * frames], axis=1)
    joints = (100 * episode + frames)[:, None] + np.array([0.0, 0.25, 0.5])
    cam_a = np.stack([np.full((24, 32, 3), grey_level(episode, f), np.uint8) for f in frames])
    cam_b = np.zeros((length, 16, 16, 3), np.uint8)
    cam_b[:, 4:12, 4:12] = 200
    return EpisodeRecord(
        task=TASKS[episode],
        columns={
            "action.delta_x": delta_x,
            "action.gripper": np.asarray(GRIPPER[episode], float)[:, None],
            "state.joints": joints,
        },
        videos={"video.cam_a": cam_a, "video.cam_b": cam_b},
    )


@dataclass(frozen=True)
class Synthetic:
    """Where the synthetic dataset was written, and what it holds (the module docstring's numbers)."""

    root: Path
    fps: int = FPS
    lengths: tuple[int, ...] = LENGTHS
    tasks: tuple[str, ...] = TASKS
    gripper: tuple[list[int], ...] = GRIPPER

    @staticmethod
    def grey_level(episode: int, frame: int) -> int:
        return grey_level(episode, frame)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Synthetic:
    root = write_dataset(
        tmp_path_factory.mktemp("lerobot") / "synthetic", [_episode(0), _episode(1)], fps=FPS
    )
    (root / "videos/chunk-000/video.cam_b/episode_000001.mp4").unlink()
    modality_file = root / "meta/modality.json"
    modality = json.loads(modality_file.read_text())
    modality["state"]["first_two"] = {"start": 0, "end": 2, "original_key": "state.joints"}
    modality_file.write_text(json.dumps(modality))
    return Synthetic(root)
