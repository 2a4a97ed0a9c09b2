"""The reader on the synthetic dataset of conftest.py: every number here follows from its definition."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_policy.data import LeRobotDataset

ACTION_KEYS = ("action.delta_x", "action.gripper")


@pytest.fixture
def dataset(synthetic):
    with LeRobotDataset(
        synthetic.root,
        camera_keys=["video.cam_a"],
        state_keys=["state.joints"],
        action_keys=ACTION_KEYS,
        action_horizon=4,
    ) as reader:
        yield reader


def test_episodes_and_frame_counts(dataset, synthetic):
    assert dataset.episode_indices == [0, 1]
    assert [dataset.num_frames(e) for e in (0, 1)] == list(synthetic.lengths)
    assert len(dataset) == sum(synthetic.lengths)
    assert dataset.meta.fps == synthetic.fps
    np.testing.assert_allclose(dataset.timestamps(1), np.arange(3) / synthetic.fps, atol=1e-6)


def test_columns_by_key_and_slice(dataset, synthetic):
    assert dataset.states(1).tolist() == [[100, 100.25, 100.5], [101, 101.25, 101.5], [102, 102.25, 102.5]]
    assert dataset.columns(1, ["state.first_two"]).tolist() == [[100, 100.25], [101, 101.25], [102, 102.25]]
    assert dataset.actions(0).tolist() == [
        [f, 0.5 * f, g] for f, g in zip(range(5), synthetic.gripper[0], strict=True)
    ]
    assert dataset.meta.dimension_names("action.delta_x") == ["delta_x_0", "delta_x_1"]
    assert dataset.meta.dimension_names("state.first_two") == ["first_two_0", "first_two_1"]
    assert dataset.meta.dimension_names("action.gripper") == ["gripper"]


def test_sample_fields_and_chunk_padding(dataset, synthetic):
    sample = dataset.sample(0, 3)
    assert (sample.episode_index, sample.frame_index, sample.instruction) == (0, 3, synthetic.tasks[0])
    assert sample.timestamp == pytest.approx(0.3)
    assert sample.camera_keys == ("video.cam_a",)
    assert sample.state.dtype == np.float32 and sample.state.tolist() == [3, 3.25, 3.5]
    # Frames 3, 4, then frame 4 repeated: the chunk is padded with the episode's last action.
    assert sample.action.dtype == np.float32
    assert sample.action.tolist() == [[3, 1.5, 1], [4, 2, 1], [4, 2, 1], [4, 2, 1]]
    assert dataset[5].instruction == synthetic.tasks[1] and dataset[5].frame_index == 0


def test_video_frames_by_index_in_any_order(dataset, synthetic):
    """Random order forces backward seeks; each frame must still be the one of its timestamp."""
    order = [(1, 2), (0, 4), (0, 0), (1, 0), (0, 2), (0, 3), (1, 1), (0, 1)]
    for episode, frame in order:
        image = dataset.image(episode, "video.cam_a", frame)
        assert image.shape == (24, 32, 3) and image.dtype == np.uint8
        assert abs(float(image.mean()) - synthetic.grey_level(episode, frame)) < 3, (episode, frame)


def test_samples_iterate_in_order_with_images(dataset, synthetic):
    samples = list(dataset.samples())
    assert [(s.episode_index, s.frame_index) for s in samples] == [(0, f) for f in range(5)] + [
        (1, f) for f in range(3)
    ]
    levels = [float(s.images[0].mean()) for s in samples]
    expected = [synthetic.grey_level(s.episode_index, s.frame_index) for s in samples]
    np.testing.assert_allclose(levels, expected, atol=3)


def test_missing_view_skipped_or_episode_dropped(synthetic):
    views = LeRobotDataset(
        synthetic.root, camera_keys=["video.cam_a", "video.cam_b"], on_missing_video="skip_view"
    )
    assert views.cameras(0) == ("video.cam_a", "video.cam_b") and views.cameras(1) == ("video.cam_a",)
    assert [image.shape for image in views.sample(0, 1).images] == [(24, 32, 3), (16, 16, 3)]
    assert len(views.sample(1, 1).images) == 1
    episodes = LeRobotDataset(synthetic.root, camera_keys=["video.cam_b"], on_missing_video="skip_episode")
    assert episodes.episode_indices == [0] and len(episodes) == synthetic.lengths[0]
    image = episodes.sample(0, 2).images[0]
    assert image[8, 8].min() > 180 and image[0, 0].max() < 30


def test_episode_subset(synthetic):
    reader = LeRobotDataset(synthetic.root, episodes=[1], action_keys=ACTION_KEYS)
    assert reader.episode_indices == [1] and len(reader) == 3
    assert reader.locate(2) == (1, 2)
    assert reader.instruction(1) == synthetic.tasks[1]
