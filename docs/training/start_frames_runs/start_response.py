"""Experiment record: the start response of a checkpoint on a recorded dataset's first frames (the
measure ``python -m internvla_policy.training.diagnostics`` now reports), over the first N episodes:

    python docs/training/start_frames_runs/start_response.py CHECKPOINT DATASET N [COLOUR]

(COLOUR: only the episodes whose instruction names it.)
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from internvla_bringup.default_model import ACTION_KEYS, CAMERA_KEYS
from internvla_policy.data import LeRobotDataset
from internvla_policy.model import InternVLAM1
from internvla_policy.training.diagnostics import START_STEPS


def main() -> None:
    checkpoint, root, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    colour = sys.argv[4] if len(sys.argv) > 4 else ""
    model = InternVLAM1.from_pretrained(checkpoint).eval()
    reader = LeRobotDataset(root, camera_keys=CAMERA_KEYS, action_keys=ACTION_KEYS, action_horizon=16)
    predicted, recorded = [], []
    chosen = [e for e in reader.episode_indices if colour in reader.instruction(e)][:count]
    for episode in chosen:
        views = [Image.fromarray(reader.image(episode, camera, 0)) for camera in reader.cameras(episode)]
        chunk = model.predict_action([views], [reader.instruction(episode)], seed=0).actions[0]
        predicted.append(chunk[:START_STEPS, :3].sum(0))
        recorded.append(reader.actions(episode)[:START_STEPS, :3].sum(0))
    predicted, recorded = np.array(predicted), np.array(recorded)
    for axis, name in enumerate("xyz"):
        correlation = np.corrcoef(predicted[:, axis], recorded[:, axis])[0, 1]
        print(
            f"{name}: model spread {predicted[:, axis].std() * 100:.2f} cm, expert "
            f"{recorded[:, axis].std() * 100:.2f} cm, correlation {correlation:.2f}"
        )


if __name__ == "__main__":
    main()
