"""A torch `Dataset` over the LeRobot reader, with actions (and state) normalised for the model.

Thin on purpose: the reader does the work and stays torch-free; this only converts a sample to
tensors and applies the dataset_statistics.json normalisation the policy will later invert.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from .lerobot import LeRobotDataset
from .statistics import DatasetStatistics, normalize


class TorchLeRobotDataset(Dataset):
    """Items: images (list of [H, W, 3] uint8 tensors), state [Ds], action [H, Da] (float32), instruction.

    With `statistics`, action (and state, where the statistics have a state entry) are mapped to
    [-1, 1] with q01/q99 as `normalize` does; without, they are returned as stored.
    """

    def __init__(self, dataset: LeRobotDataset, statistics: DatasetStatistics | None = None):
        self.dataset = dataset
        self.statistics = statistics

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        action, state = sample.action, sample.state
        if self.statistics is not None:
            action = normalize(action, self.statistics.action)
            if self.statistics.state is not None and state.size:
                state = normalize(state, self.statistics.state)
        return {
            "images": [torch.from_numpy(image.copy()) for image in sample.images],
            "state": torch.as_tensor(state, dtype=torch.float32),
            "action": torch.as_tensor(action, dtype=torch.float32),
            "instruction": sample.instruction,
            "episode_index": sample.episode_index,
            "frame_index": sample.frame_index,
        }
