"""The torch wrapper: tensors of the right types, normalised actions, batching with a DataLoader."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from internvla_policy.data import LeRobotDataset, compute_statistics
from internvla_policy.data.torch_dataset import TorchLeRobotDataset


def test_items_are_normalised_tensors_and_batch(synthetic):
    reader = LeRobotDataset(
        synthetic.root,
        camera_keys=["video.cam_a"],
        state_keys=["state.joints"],
        action_keys=["action.delta_x", "action.gripper"],
        action_horizon=2,
    )
    stats = compute_statistics(reader)
    dataset = TorchLeRobotDataset(reader, stats)
    item = dataset[4]  # episode 0, frame 4 (the last): delta_x = (4, 2), gripper = 1, chunk padded
    assert item["images"][0].dtype == torch.uint8 and tuple(item["images"][0].shape) == (24, 32, 3)
    assert item["action"].dtype == torch.float32 and tuple(item["action"].shape) == (2, 3)
    expected_dx0 = 2 * (4 - 0.07) / (29.3 - 0.07) - 1  # q01 = 0.07, q99 = 29.3 (see test_statistics.py)
    np.testing.assert_allclose(item["action"][:, 0].numpy(), [expected_dx0] * 2, rtol=1e-6)
    np.testing.assert_allclose(item["action"][:, 2].numpy(), [1, 1])  # gripper: mask false, raw
    assert item["instruction"] == "pick the cube" and (item["episode_index"], item["frame_index"]) == (0, 4)
    batch = next(iter(DataLoader(dataset, batch_size=8)))
    assert tuple(batch["action"].shape) == (8, 2, 3) and tuple(batch["images"][0].shape) == (8, 24, 32, 3)
    assert batch["instruction"][5] == "place the cube"
    raw = TorchLeRobotDataset(reader)[4]
    np.testing.assert_array_equal(raw["action"].numpy(), [[4, 2, 1], [4, 2, 1]])
