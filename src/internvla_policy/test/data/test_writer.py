"""The streaming LeRobot writer: one episode at a time, discarded episodes, statistics and metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest

from internvla_policy.data import DatasetError, EpisodeRecord, LeRobotDataset, LeRobotWriter


def _frame(value: float, size: int = 16) -> tuple[dict, dict]:
    return (
        {"action.move": [value, 2 * value], "state.joints": [value, value, value]},
        {"video.cam": np.full((size, size, 3), int(10 * value), np.uint8)},
    )


def test_streamed_episodes_with_a_discard(tmp_path) -> None:
    writer = LeRobotWriter(
        tmp_path / "set", fps=5, robot_type="toy", feature_names={"action.move": ("x", "y")}
    )
    for value in (1, 2, 3):
        writer.add_frame(*_frame(value))
    assert writer.save_episode("first", {"seed": 4}) == 0
    writer.add_frame(*_frame(9))
    writer.discard_episode()  # a failed demonstration leaves no trace
    for value in (5, 6):
        writer.add_frame(*_frame(value))
    assert writer.save_episode("second") == 1
    root = writer.finalize()
    meta = root / "meta"
    info = json.loads((meta / "info.json").read_text())
    assert (info["total_episodes"], info["total_frames"], info["total_videos"], info["fps"]) == (2, 5, 2, 5)
    assert (
        info["features"]["action.move"]["names"] == ["x", "y"]
        and "names" not in info["features"]["state.joints"]
    )
    assert info["features"]["video.cam"]["info"]["video.codec"] == "h264"
    episodes = [json.loads(line) for line in (meta / "episodes.jsonl").read_text().splitlines()]
    assert episodes == [
        {"episode_index": 0, "tasks": ["first"], "length": 3, "seed": 4},
        {"episode_index": 1, "tasks": ["second"], "length": 2},
    ]
    stats = json.loads((meta / "stats.json").read_text())
    values = np.array([1, 2, 3, 5, 6], float)
    assert stats["action.move"]["mean"] == [values.mean(), 2 * values.mean()]
    assert stats["action.move"]["q01"][0] == pytest.approx(np.quantile(values, 0.01))
    per_episode = [json.loads(line) for line in (meta / "episodes_stats.jsonl").read_text().splitlines()]
    assert per_episode[1]["stats"]["action.move"]["max"] == [6.0, 12.0]
    assert per_episode[1]["stats"]["index"]["min"] == [3.0] and per_episode[0]["stats"]["video.cam"][
        "count"
    ] == [3]
    modality = json.loads((meta / "modality.json").read_text())
    assert modality["action"]["move"] == {"start": 0, "end": 2, "original_key": "action.move"}
    assert modality["video"]["cam"] == {"original_key": "video.cam"}
    with LeRobotDataset(
        root, camera_keys=["video.cam"], action_keys=["action.move"], action_horizon=2
    ) as reader:
        sample = reader.sample(1, 1)
        assert sample.instruction == "second" and sample.action.tolist() == [[6, 12], [6, 12]]
        assert abs(int(sample.images[0].mean()) - 60) <= 2


def test_mismatched_episodes_and_bad_widths_are_refused(tmp_path) -> None:
    writer = LeRobotWriter(tmp_path / "set", fps=5, feature_names={"action.move": ("x", "y")})
    with pytest.raises(DatasetError, match=r"action\.move: expected 2 values, got 3"):
        writer.add_frame({"action.move": [1, 2, 3]}, {})
    writer.add_episode(EpisodeRecord("a", {"action.move": np.zeros((2, 2))}))
    with pytest.raises(DatasetError, match="different columns or videos than episode 0"):
        writer.add_episode(EpisodeRecord("b", {"action.other": np.zeros((2, 2))}))
    writer.finalize()
    with pytest.raises(DatasetError, match="already holds a dataset"):
        LeRobotWriter(tmp_path / "set", fps=5)
    with pytest.raises(DatasetError, match="nothing to finalize"):
        LeRobotWriter(tmp_path / "empty", fps=5).finalize()
