"""Recorded expert data is a readable LeRobot v2.1 dataset with consistent actions and grounding labels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from internvla_bringup.sim.record import ACTION_KEYS, Perturbation, record_expert_dataset
from internvla_bringup.sim.transforms import rpy_to_matrix
from internvla_policy.data import LeRobotDataset

FPS = 10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("expert") / "sim_expert"
    return record_expert_dataset(root, episodes=2, seed=0, fps=FPS, log=lambda _: None)


def _meta(root: Path, name: str):
    text = (root / "meta" / name).read_text()
    return [json.loads(line) for line in text.splitlines()] if name.endswith(".jsonl") else json.loads(text)


def test_layout_and_metadata(dataset: Path) -> None:
    info = _meta(dataset, "info.json")
    episodes = _meta(dataset, "episodes.jsonl")
    assert info["codebase_version"] == "v2.1" and info["robot_type"] == "franka_panda" and info["fps"] == FPS
    assert info["total_episodes"] == 2 and info["total_videos"] == 4
    assert info["total_frames"] == sum(e["length"] for e in episodes)
    assert [e["tasks"][0] for e in episodes] == ["put the blue block in the bowl", "pick up the blue block"]
    assert all(e["success"] for e in episodes)
    tasks = {t["task"] for t in _meta(dataset, "tasks.jsonl")}
    assert tasks == {e["tasks"][0] for e in episodes}
    modality = _meta(dataset, "modality.json")
    assert modality["action"]["delta_eef_position"] == {
        "start": 0,
        "end": 3,
        "original_key": "action.delta_eef_position",
    }
    assert set(modality["video"]) == {"scene_camera", "wrist_camera"}
    stats = _meta(dataset, "stats.json")
    assert set(stats["action.gripper_open"]) == {"mean", "std", "min", "max", "q01", "q99"}
    assert stats["action.gripper_open"]["min"] == [0.0] and stats["action.gripper_open"]["max"] == [1.0]
    per_episode = _meta(dataset, "episodes_stats.jsonl")
    assert per_episode[0]["stats"]["frame_index"]["count"] == [episodes[0]["length"]]
    assert np.shape(per_episode[0]["stats"]["video.scene_camera"]["mean"]) == (3, 1, 1)
    report = _meta(dataset, "expert_report.json")
    assert report["expert_success_rate"] == 1.0 and report["action_keys"] == list(ACTION_KEYS)


def test_parquet_and_videos_agree(dataset: Path) -> None:
    for episode in _meta(dataset, "episodes.jsonl"):
        index, length = episode["episode_index"], episode["length"]
        table = pq.read_table(dataset / f"data/chunk-000/episode_{index:06d}.parquet")
        assert table.num_rows == length
        assert table["frame_index"].to_pylist() == list(range(length))
        assert np.allclose(table["timestamp"].to_numpy(), np.arange(length) / FPS)
        for camera in ("scene_camera", "wrist_camera"):
            path = dataset / f"videos/chunk-000/video.{camera}/episode_{index:06d}.mp4"
            with av.open(str(path)) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
                assert container.streams.video[0].codec_context.name in ("libdav1d", "av1")
            assert len(frames) == length and frames[0].shape == (224, 224, 3)


def test_actions_are_the_measured_motion_to_the_next_frame(dataset: Path) -> None:
    """p + delta_p at frame t is where the tool is at t + 1 (within the lag of a trajectory command
    one period ahead, as the policy node sends them); rotations compose likewise."""
    table = pq.read_table(dataset / "data/chunk-000/episode_000000.parquet").to_pydict()
    pos = np.array(table["state.eef_position"])
    rpy = np.array(table["state.eef_rotation"])
    delta = np.array(table["action.delta_eef_position"])
    delta_rpy = np.array(table["action.delta_eef_rotation"])
    gripper = np.array(table["action.gripper_open"])[:, 0]
    reached = np.linalg.norm(pos[:-1] + delta[:-1] - pos[1:], axis=1)
    assert np.median(reached) < 0.008 and reached.max() < 0.03
    assert np.abs(delta).max() < 0.05  # never more than 5 cm per 0.1 s step
    rot_err = [
        np.abs(rpy_to_matrix(d) @ rpy_to_matrix(r) - rpy_to_matrix(n)).max()
        for d, r, n in zip(delta_rpy[:-1], rpy[:-1], rpy[1:], strict=True)
    ]
    assert np.median(rot_err) < 0.02
    assert set(np.unique(gripper)) == {0.0, 1.0} and gripper[0] == 1.0
    opening = np.array(table["state.gripper_opening"])[:, 0]
    assert opening[np.argmax(gripper == 0.0) + 10] < 0.6  # the gripper closed on the block after the command


def test_the_training_reader_reads_it(dataset: Path) -> None:
    with LeRobotDataset(
        dataset,
        camera_keys=("video.scene_camera", "video.wrist_camera"),
        state_keys=("state.eef_position", "state.eef_rotation", "state.gripper_opening"),
        action_keys=ACTION_KEYS,
        action_horizon=16,
    ) as reader:
        sample = reader.sample(1, 5)
        assert sample.instruction == "pick up the blue block"
        assert sample.action.shape == (16, 7) and sample.state.shape == (7,)
        assert [image.shape for image in sample.images] == [(224, 224, 3), (224, 224, 3)]


def test_grounding_labels(dataset: Path) -> None:
    lines = _meta(dataset, "grounding.jsonl")
    episodes = _meta(dataset, "episodes.jsonl")
    assert [line["episode_index"] for line in lines] == [0, 1]
    first = lines[0]
    assert first["targets"] == ["blue block", "bowl"] and first["camera"] == "scene_camera"
    assert first["image_size"] == [224, 224]
    assert [f["frame_index"] for f in first["frames"]] == list(range(0, episodes[0]["length"], 10))
    assert len(first["tcp_trace_2d"]) == episodes[0]["length"]
    objects = {o["label"]: o for o in first["frames"][0]["objects"]}
    assert set(objects) == {"red block", "green block", "blue block", "yellow block", "bowl"}
    x1, y1, x2, y2 = objects["bowl"]["bbox_2d"]
    u, v = objects["bowl"]["point_2d"]
    assert x1 < u < x2 and y1 < v < y2


def test_command_line(tmp_path: Path) -> None:
    out = tmp_path / "cli_set"
    args = [sys.executable, "-m", "internvla_bringup.sim.record", "--out", str(out), "--episodes", "1"]
    result = subprocess.run(
        [*args, "--seed", "1", "--task", "pick up the red block"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "expert success 1/1" in result.stdout
    assert _meta(out, "tasks.jsonl") == [{"task_index": 0, "task": "pick up the red block"}]
    again = subprocess.run(args, capture_output=True, text=True)  # the folder already holds a dataset
    assert again.returncode == 2 and "already holds a dataset" in again.stderr


def test_random_starts_and_pushes_keep_the_expert_labels(tmp_path: Path) -> None:
    root = record_expert_dataset(
        tmp_path / "pushed",
        episodes=2,
        seed=3,
        image_size=32,
        label_stride=20,
        random_start=1.0,
        perturbation=Perturbation(probability=0.3, std_m=0.03),
        log=lambda _: None,
    )
    grounding = _meta(root, "grounding.jsonl")
    assert [g["random_start"] for g in grounding] == [True, True]
    assert all(g["pushes"] >= 3 for g in grounding)
    assert _meta(root, "expert_report.json")["perturbation"]["probability"] == 0.3
    table = pq.read_table(root / "data/chunk-000/episode_000000.parquet").to_pydict()
    eef = np.array(table["state.eef_position"])
    target = eef + np.array(table["action.delta_eef_position"])  # what each label asks for
    assert np.linalg.norm(eef[0] - [0.307, 0.0, 0.487]) > 0.05  # not from home
    # The labels follow the expert's path at its bounded speed, while the measured pose is pushed off it.
    assert np.linalg.norm(np.diff(target, axis=0), axis=1).max() < 0.026
    assert np.linalg.norm(eef[1:] - target[:-1], axis=1).max() > 0.02
    assert all(e["success"] for e in _meta(root, "episodes.jsonl"))


def test_bad_recording_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="random_start must be a fraction"):
        record_expert_dataset(tmp_path / "a", episodes=1, seed=0, random_start=1.5)
    with pytest.raises(ValueError, match=r"probability must be within 0\.\.1"):
        Perturbation(probability=2.0)
