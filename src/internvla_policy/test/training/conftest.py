"""A synthetic dataset with grounding labels and a very small model, built once per session.

The dataset has the simulator recorder's layout: two cameras (video.scene_camera 64x64 with a coloured
square that moves one pixel per frame, video.wrist_camera 32x32), the 7-D action keys, and
meta/grounding.jsonl giving the square's box on every other frame. Episode 0 is "pick up the red block"
(8 frames), episode 1 "put the red block in the bowl" (6 frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from internvla_policy.data import EpisodeRecord, write_dataset, write_jsonl

CAMERAS = ("video.scene_camera", "video.wrist_camera")
ACTION_KEYS = ("action.delta_eef_position", "action.delta_eef_rotation", "action.gripper_open")
TASKS = ("pick up the red block", "put the red block in the bowl")
LENGTHS = (8, 6)
SQUARE = 8


def square_box(frame: int) -> list[int]:
    """The red square's [x1, y1, x2, y2] in the 64x64 scene view at ``frame``."""
    return [10 + frame, 20, 10 + frame + SQUARE, 20 + SQUARE]


def _episode(index: int) -> EpisodeRecord:
    length = LENGTHS[index]
    frames = np.arange(length)
    scene = np.full((length, 64, 64, 3), 90, np.uint8)
    for frame in frames:
        x1, y1, x2, y2 = square_box(frame)
        scene[frame, y1:y2, x1:x2] = (220, 30, 30)
    wrist = np.stack([np.full((32, 32, 3), 40 + 10 * f, np.uint8) for f in frames])
    gripper = (frames < length // 2).astype(float)[:, None]
    return EpisodeRecord(
        task=TASKS[index],
        columns={
            "action.delta_eef_position": np.stack([0.01 * np.ones(length), -0.002 * frames, 0.0 * frames], 1),
            "action.delta_eef_rotation": np.stack([0.0 * frames, 0.0 * frames, 0.01 * (frames % 3)], 1),
            "action.gripper_open": gripper,
        },
        videos={CAMERAS[0]: scene, CAMERAS[1]: wrist},
    )


def grounding_record(index: int) -> dict:
    return {
        "episode_index": index,
        "task": TASKS[index],
        "camera": "scene_camera",
        "video_key": CAMERAS[0],
        "image_size": [64, 64],
        "targets": ["red block"] if index == 0 else ["red block", "bowl"],
        "frames": [
            {
                "frame_index": f,
                "objects": [{"name": "red_block", "label": "red block", "bbox_2d": square_box(f)}],
            }
            for f in range(0, LENGTHS[index], 2)
        ],
    }


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_dataset(
        tmp_path_factory.mktemp("training") / "synthetic",
        [_episode(0), _episode(1)],
        fps=10,
        video_codec="libx264",
    )
    write_jsonl(root / "meta" / "grounding.jsonl", [grounding_record(0), grounding_record(1)])
    return root
