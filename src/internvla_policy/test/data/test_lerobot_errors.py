"""Every broken dataset is reported with the file or key to fix, never with a bare stack trace."""

from __future__ import annotations

import json
import shutil

import pytest

from internvla_policy.data import DatasetError, LeRobotDataset


@pytest.fixture
def copy(synthetic, tmp_path):
    """A private copy of the synthetic dataset that a test may break."""
    return shutil.copytree(synthetic.root, tmp_path / "dataset")


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_missing_folder_and_meta_files(tmp_path, copy):
    with pytest.raises(DatasetError, match=r"absent: dataset folder not found"):
        LeRobotDataset(tmp_path / "absent")
    (copy / "meta/episodes.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"meta/episodes\.jsonl: not found"):
        LeRobotDataset(copy)
    (copy / "meta/info.json").unlink()
    with pytest.raises(DatasetError, match=r"meta/info\.json: not found"):
        LeRobotDataset(copy)


def test_unsupported_version_and_bad_info(copy):
    _edit_json(copy / "meta/info.json", lambda info: info.update(codebase_version="v3.0"))
    with pytest.raises(DatasetError, match=r"codebase_version 'v3\.0' is not supported"):
        LeRobotDataset(copy)
    _edit_json(copy / "meta/info.json", lambda info: info.update(codebase_version="v2.1", fps="fast"))
    with pytest.raises(DatasetError, match=r"info\.json: field 'fps' is missing or not a number"):
        LeRobotDataset(copy)


def test_unknown_keys_list_what_exists(synthetic):
    with pytest.raises(
        DatasetError, match=r"unknown key 'action\.nope'.*has action\.delta_x, action\.gripper"
    ):
        LeRobotDataset(synthetic.root, action_keys=["action.nope"])
    with pytest.raises(
        DatasetError, match=r"camera key 'state\.joints' -> column 'state\.joints' is not a video"
    ):
        LeRobotDataset(synthetic.root, camera_keys=["state.joints"])
    with pytest.raises(DatasetError, match=r"key 'video\.cam_a' is a video; pass it in camera_keys"):
        LeRobotDataset(synthetic.root, state_keys=["video.cam_a"])
    with pytest.raises(
        DatasetError, match=r"episode 7 is not in .*episodes\.jsonl \(episodes 0\.\.1, 2 in all\)"
    ):
        LeRobotDataset(synthetic.root, episodes=[7])


def test_modality_pointing_at_a_missing_column(copy):
    _edit_json(
        copy / "meta/modality.json", lambda m: m["state"].update(ghost={"original_key": "state.ghost"})
    )
    with pytest.raises(
        DatasetError, match=r"modality\.json: key 'state\.ghost' maps to column 'state\.ghost'"
    ):
        LeRobotDataset(copy, state_keys=["state.ghost"])


def test_missing_video_names_the_files(synthetic):
    with pytest.raises(
        DatasetError,
        match=r"1 video file\(s\) missing: videos/chunk-000/video\.cam_b/episode_000001\.mp4\. .*'skip_view'",
    ):
        LeRobotDataset(synthetic.root, camera_keys=["video.cam_b"])


def test_missing_parquet_and_length_mismatch(copy):
    (copy / "data/chunk-000/episode_000001.parquet").unlink()
    reader = LeRobotDataset(copy, state_keys=["state.joints"])
    assert reader.states(0).shape == (5, 3)
    with pytest.raises(DatasetError, match=r"episode_000001\.parquet: parquet file of episode 1 not found"):
        reader.states(1)
    lines = (copy / "meta/episodes.jsonl").read_text().replace('"length": 5', '"length": 6')
    (copy / "meta/episodes.jsonl").write_text(lines)
    with pytest.raises(
        DatasetError, match=r"episode_000000\.parquet: 5 rows, but .* gives episode 0 6 frames"
    ):
        LeRobotDataset(copy, state_keys=["state.joints"]).states(0)


def test_missing_tasks_file_and_fallback_to_episodes_jsonl(copy):
    (copy / "meta/tasks.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"meta/tasks\.jsonl: not found"):
        LeRobotDataset(copy).instruction(0)
    _edit_json(copy / "meta/info.json", lambda info: info["features"].pop("task_index"))
    _edit_json(copy / "meta/modality.json", lambda m: m.pop("annotation"))
    assert LeRobotDataset(copy).instruction(1) == "place the cube"  # meta/episodes.jsonl's task


def test_frame_out_of_range(synthetic):
    reader = LeRobotDataset(synthetic.root, camera_keys=["video.cam_a"])
    with pytest.raises(DatasetError, match=r"frame 5 is outside episode 0 \(5 frames\)"):
        reader.sample(0, 5)
    with pytest.raises(IndexError, match=r"sample 8 is outside the dataset \(8 samples\)"):
        reader[8]


def test_episode_outside_the_selection(synthetic):
    reader = LeRobotDataset(synthetic.root, episodes=[1], state_keys=["state.joints"])
    with pytest.raises(DatasetError, match=r"episode 0 is not among this reader's 1 episodes \(1\)"):
        reader.states(0)
