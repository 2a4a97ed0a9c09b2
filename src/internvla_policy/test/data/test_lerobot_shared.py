"""The reader on the real sim_pick_place recording (skipped without ../shared)."""

from __future__ import annotations

import json

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from internvla_policy.data import DatasetError, LeRobotDataset

ACTION_KEYS = ("action.delta_eef_position", "action.delta_eef_rotation", "action.gripper_close")
STATE_KEYS = ("state.eef_position", "state.eef_rotation")
INSTRUCTIONS = {
    0: "Move the shoe to the top of the cooking pot.",
    1: "Move the beer mug to the top of the first aid box.",
    2: "Move the potato to the top of the cooking utensils.",
    3: "Move the vintage polaroid instant camera to the top of the books.",
}


@pytest.fixture(scope="module")
def dataset(shared_dataset):
    with LeRobotDataset(
        shared_dataset, camera_keys=["video.ego_view"], state_keys=STATE_KEYS, action_keys=ACTION_KEYS
    ) as reader:
        yield reader


def test_frame_counts_match_meta_and_videos(dataset, shared_dataset):
    info = json.loads((shared_dataset / "meta/info.json").read_text())
    lengths = {e: dataset.num_frames(e) for e in dataset.episode_indices}
    assert lengths == {0: 412, 1: 411, 2: 398, 3: 446}
    assert sum(lengths.values()) == len(dataset) == info["total_frames"] == 1667
    for episode, length in lengths.items():
        with av.open(str(dataset.meta.video_file(episode, "video.ego_view"))) as container:
            assert container.streams.video[0].frames == length


def test_columns_are_the_parquet_values(dataset, shared_dataset):
    table = pq.read_table(shared_dataset / "data/chunk-000/episode_000003.parquet")
    actions, states = dataset.actions(3), dataset.states(3)
    assert actions.shape == (446, 7) and states.shape == (446, 6)
    for frame in (0, 200, 445):
        row = table.slice(frame, 1).to_pylist()[0]
        assert actions[frame].tolist() == [*row[ACTION_KEYS[0]], *row[ACTION_KEYS[1]], *row[ACTION_KEYS[2]]]
        assert states[frame].tolist() == [*row[STATE_KEYS[0]], *row[STATE_KEYS[1]]]
    assert set(np.unique(actions[:, 6])) == {-1.0, 1.0}  # gripper_close is binary in this recording


def test_samples_hold_images_state_chunk_and_instruction(dataset):
    sample = dataset.sample(1, 100)
    assert sample.camera_keys == ("video.ego_view",)
    assert sample.images[0].shape == (480, 640, 3) and sample.images[0].dtype == np.uint8
    assert sample.images[0].std() > 20, "decoded frame is (nearly) blank"
    assert sample.state.shape == (6,) and sample.action.shape == (16, 7)
    np.testing.assert_array_equal(sample.action, dataset.actions(1)[100:116].astype(np.float32))
    last = dataset.sample(1, 410)
    np.testing.assert_array_equal(
        last.action, np.repeat(dataset.actions(1)[410:411], 16, axis=0).astype(np.float32)
    )
    assert {e: dataset.instruction(e) for e in dataset.episode_indices} == INSTRUCTIONS
    assert sample.instruction == INSTRUCTIONS[1]


def test_random_access_frames_equal_sequential_decoding(dataset):
    path = dataset.meta.video_file(2, "video.ego_view")
    wanted = [3, 150, 40, 397, 41, 0]
    with av.open(str(path)) as container:
        sequential = {
            i: frame.to_ndarray(format="rgb24")
            for i, frame in enumerate(container.decode(video=0))
            if i in wanted
        }
    for frame in wanted:
        np.testing.assert_array_equal(dataset.image(2, "video.ego_view", frame), sequential[frame])
    assert (
        np.abs(sequential[0].astype(int) - sequential[397]).mean() > 5
    )  # the scene changes over the episode


def test_partial_views(shared_dataset):
    cameras = ["video.ego_view", "video.base_view", "video.base_view_2"]
    with pytest.raises(
        DatasetError, match=r"6 video file\(s\) missing: videos/chunk-000/video\.base_view/episode_000000"
    ):
        LeRobotDataset(shared_dataset, camera_keys=cameras)
    views = LeRobotDataset(shared_dataset, camera_keys=cameras, on_missing_video="skip_view")
    assert [len(views.cameras(e)) for e in views.episode_indices] == [1, 1, 3, 1]
    images = views.sample(2, 10).images
    assert [image.shape for image in images] == [(480, 640, 3)] * 3
    assert all(image.std() > 20 for image in images)
    assert LeRobotDataset(
        shared_dataset, camera_keys=cameras, on_missing_video="skip_episode"
    ).episode_indices == [2]
