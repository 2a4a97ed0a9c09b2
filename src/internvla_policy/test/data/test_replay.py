"""The replay node's ROS-free core: episode loading, stamp matching, the per-step action error file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from internvla_policy.data import ActionErrorLog, DatasetError, FrameStamps, ReplayEpisode, read_error_file


def test_stamps_match_the_nearest_frame_within_tolerance():
    stamps = FrameStamps(tolerance_ns=1_000)
    for frame in range(4):
        stamps.add(1_000_000 + 100_000 * frame, frame)
    assert stamps.match(1_200_000) == 2  # exact
    assert stamps.match(1_200_900) == 2 and stamps.match(1_299_100) == 3  # within 1 us of a frame
    assert stamps.match(1_250_000) is None  # between frames
    assert stamps.match(999_000) == 0 and stamps.match(998_999) is None
    assert stamps.match(1_302_000) is None  # after the last frame
    with pytest.raises(ValueError, match="older than the previous frame"):
        stamps.add(1_000_000, 4)
    stamps.clear()
    assert stamps.match(1_200_000) is None


def test_error_file_and_summary_numbers(tmp_path):
    log = ActionErrorLog(["dx", "grip"])
    log.record(7, [0.5, 1.0], [0.75, 0.0])
    log.record(2, [0.25, 0.0], [0.0, 0.0])
    log.record(7, [0.5, 1.0], [0.5, 1.0])
    summary = log.write(tmp_path / "e.csv", tmp_path / "s.json", extra={"episode": 3})
    header, rows = read_error_file(tmp_path / "e.csv")
    assert header == [
        "frame_index",
        "dataset_dx",
        "dataset_grip",
        "commanded_dx",
        "commanded_grip",
        "abs_error_dx",
        "abs_error_grip",
    ]
    np.testing.assert_array_equal(
        rows,
        [[2, 0.25, 0, 0, 0, 0.25, 0], [7, 0.5, 1, 0.75, 0, 0.25, 1], [7, 0.5, 1, 0.5, 1, 0, 0]],
    )
    assert summary == json.loads((tmp_path / "s.json").read_text())
    assert summary["episode"] == 3 and summary["steps"] == 3 and summary["frames_compared"] == 2
    assert summary["mean_abs_error"] == pytest.approx([0.5 / 3, 1 / 3])
    assert summary["max_abs_error"] == [0.25, 1.0]
    assert summary["error_file"] == str(tmp_path / "e.csv")


def test_full_precision_and_empty_log(tmp_path):
    log = ActionErrorLog(["a"])
    assert log.summary()["mean_abs_error"] is None
    log.record(0, [0.1], [0.1 + 1e-12])
    log.write(tmp_path / "e.csv", tmp_path / "s.json")
    assert read_error_file(tmp_path / "e.csv")[1][0, 2] == 0.1 + 1e-12
    with pytest.raises(ValueError, match="expected 1 action dimensions, got dataset 2, commanded 1"):
        log.record(1, [0.0, 0.0], [0.0])


ACTIONS = ["action.delta_x", "action.gripper"]


def test_episode_defaults_joints_and_available_cameras(synthetic):
    replay = ReplayEpisode.load(synthetic.root, 1, action_keys=ACTIONS)
    assert replay.camera_keys == ("video.cam_a",)  # cam_b has no video for episode 1
    assert replay.joint_names == ("joint_1", "joint_2", "joint_3") and replay.velocities is None
    assert replay.positions.tolist() == [[100, 100.25, 100.5], [101, 101.25, 101.5], [102, 102.25, 102.5]]
    assert replay.actions.tolist() == [[10, 0, 1], [20, 0.5, -1], [30, 1, -1]]
    assert replay.action_names == ("delta_x_0", "delta_x_1", "gripper")
    assert (replay.instruction, replay.frames) == (synthetic.tasks[1], 3)
    assert ReplayEpisode.load(synthetic.root, 0, action_keys=ACTIONS).camera_keys == (
        "video.cam_a",
        "video.cam_b",
    )


def test_episode_named_state_dimensions(synthetic):
    replay = ReplayEpisode.load(
        synthetic.root, 0, action_keys=ACTIONS, state_keys=["state.first_two"], joint_names=["x", "y"]
    )
    assert replay.joint_names == ("x", "y") and replay.positions[4].tolist() == [4, 4.25]
    named = ReplayEpisode.load(synthetic.root, 0, action_keys=ACTIONS, state_keys=["state.first_two"])
    assert named.joint_names == ("first_two_0", "first_two_1")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"episode": 9}, r"^episode_index: episode 9 is not in"),
        ({"camera_keys": ["video.cam_b"]}, r"^camera_keys: .*1 video file\(s\) missing"),
        ({"action_keys": ["action.nope"]}, r"^action_keys: unknown key 'action\.nope'"),
        ({"state_keys": ["state.nope"]}, r"^state_keys: unknown key 'state\.nope'"),
        ({"joint_names": ["a"]}, r"^joint_names: 1 names given, but the state has 3 values"),
    ],
)
def test_episode_errors_name_the_argument(synthetic, arguments, message):
    arguments = {"episode": 1, "action_keys": ACTIONS, **arguments}
    with pytest.raises(DatasetError, match=message):
        ReplayEpisode.load(synthetic.root, arguments.pop("episode"), **arguments)
    with pytest.raises(DatasetError, match=r"^dataset_path: .*absent: dataset folder not found"):
        ReplayEpisode.load(synthetic.root / "absent", 0, action_keys=ACTIONS)
