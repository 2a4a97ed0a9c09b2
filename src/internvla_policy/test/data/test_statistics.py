"""dataset_statistics.json: hand-computed numbers on synthetic data, the released file on the shared data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from internvla_policy.data import (
    DatasetError,
    LeRobotDataset,
    compute_statistics,
    normalize,
    read_statistics,
    write_statistics,
)

FRANKA_ACTION = ("action.delta_eef_position", "action.delta_eef_rotation", "action.gripper_close")
FRANKA_STATE = ("state.eef_position", "state.eef_rotation")


@pytest.fixture
def statistics(synthetic):
    reader = LeRobotDataset(
        synthetic.root, state_keys=["state.joints"], action_keys=["action.delta_x", "action.gripper"]
    )
    return compute_statistics(reader)


def test_action_statistics_by_hand(statistics):
    """8 frames: delta_x[0] = 0 1 2 3 4 10 20 30 (sum 70, squares 1430); delta_x[1] = 0 .5 1 1.5 2 0 .5 1
    (sum 6.5, squares 8.75); gripper = four -1 and four +1.

    Population std; q01/q99 interpolate linearly between sorted values at positions 0.01 * 7 = 0.07
    and 0.99 * 7 = 6.93.
    """
    action = statistics.action
    np.testing.assert_allclose(action.mean, [70 / 8, 6.5 / 8, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        action.std, [math.sqrt(1430 / 8 - (70 / 8) ** 2), math.sqrt(8.75 / 8 - (6.5 / 8) ** 2), 1], rtol=1e-6
    )
    assert action.min.tolist() == [0, 0, -1] and action.max.tolist() == [30, 2, 1]
    # q01: 0 + 0.07 (1 - 0); 0 + 0.07 (0 - 0); -1. q99: 20 + 0.93 (30 - 20); 1.5 + 0.93 (2 - 1.5); 1.
    np.testing.assert_allclose(action.q01, [0.07, 0, -1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(action.q99, [29.3, 1.965, 1], rtol=1e-12)
    assert action.mask.tolist() == [True, True, False]  # the gripper key is passed through


def test_state_statistics_and_counts_by_hand(statistics):
    """state.joints[0] = 0 1 2 3 4 100 101 102; the other two columns are it + 0.25 and + 0.5."""
    state = statistics.state
    offsets = np.array([0, 0.25, 0.5])
    np.testing.assert_allclose(state.mean, 313 / 8 + offsets, rtol=1e-6)
    np.testing.assert_allclose(state.std, math.sqrt(30635 / 8 - (313 / 8) ** 2), rtol=1e-6)
    np.testing.assert_allclose(state.q01, 0.07 + offsets, rtol=1e-9)
    np.testing.assert_allclose(state.q99, 101.93 + offsets, rtol=1e-9)
    assert state.mask is None
    assert (statistics.num_transitions, statistics.num_trajectories) == (8, 2)


def test_slice_keys_take_their_part_of_the_column(synthetic):
    reader = LeRobotDataset(synthetic.root, action_keys=["action.gripper"], state_keys=["state.first_two"])
    stats = compute_statistics(reader, unnormalized_action_keys=[])
    np.testing.assert_allclose(stats.state.q99, [101.93, 102.18], rtol=1e-9)
    assert stats.action.mask.tolist() == [True]


def test_write_read_round_trip_in_released_schema(statistics, tmp_path):
    path = write_statistics(tmp_path / "run" / "dataset_statistics.json", {"synthetic": statistics})
    raw = json.loads(path.read_text())
    assert list(raw["synthetic"]) == ["action", "state", "num_transitions", "num_trajectories"]
    assert list(raw["synthetic"]["action"]) == ["mean", "std", "max", "min", "q01", "q99", "mask"]
    assert "mask" not in raw["synthetic"]["state"]
    back = read_statistics(path)["synthetic"]
    for name in ("mean", "std", "max", "min", "q01", "q99"):
        assert getattr(back.action, name).tolist() == getattr(statistics.action, name).tolist()
        assert getattr(back.state, name).tolist() == getattr(statistics.state, name).tolist()
    assert back.action.mask.tolist() == [True, True, False]
    assert (back.num_transitions, back.num_trajectories) == (8, 2)


def test_normalize_by_hand(statistics):
    """q01 = 0.07, q99 = 29.3 on dimension 0: the midpoint maps to 0, the ends to -1/+1, beyond is clipped."""
    values = np.array([[0.07, 0.0, -1.0], [(0.07 + 29.3) / 2, 1.965, 1.0], [100.0, -5.0, 0.25]])
    np.testing.assert_allclose(
        normalize(values, statistics.action), [[-1, -1, -1], [0, 1, 1], [1, -1, 0.25]], atol=1e-12
    )


def test_shared_dataset_reproduces_the_released_statistics(shared_dataset, shared_reference, tmp_path):
    """The released tiny_a run's file was made by upstream from this data: same keys, same bytes."""
    reader = LeRobotDataset(shared_dataset, state_keys=FRANKA_STATE, action_keys=FRANKA_ACTION)
    path = write_statistics(tmp_path / "dataset_statistics.json", {"franka": compute_statistics(reader)})
    released = shared_reference / "run" / "dataset_statistics.json"
    assert json.loads(path.read_text()) == json.loads(released.read_text())
    assert path.read_text() == released.read_text()


def test_normalize_inverts_upstream_unnormalize(shared_reference):
    """upstream unnormalize_actions(normalized_in) = out; normalising out gives back clip(normalized_in)."""
    probe = shared_reference / "unnormalize_probe"
    normalized_in = np.load(probe / "normalized_in.npy")
    out = np.load(probe / "unnormalized_out.npy")
    stats = read_statistics(shared_reference / "run" / "dataset_statistics.json")["franka"].action
    back = normalize(out, stats)
    np.testing.assert_allclose(back[:, :6], np.clip(normalized_in[:, :6], -1, 1), atol=1e-5)
    np.testing.assert_array_equal(back[:, 6], out[:, 6])  # gripper: mask false, passed through


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["k"]["action"].pop("q99"), r"k\.action\.q99: missing or not a list of numbers"),
        (lambda d: d["k"]["action"]["mask"].append(True), r"k\.action: fields differ in length"),
        (lambda d: d["k"].pop("num_transitions"), r"k\.num_transitions: missing"),
        (lambda d: d["k"]["state"].update(q01=[1e9, 1e9, 1e9]), r"k\.state: q01 exceeds q99 in dimension"),
        (lambda d: d["k"]["action"].update(mask=[1, 0, 1]), r"k\.action\.mask: not a list of booleans"),
    ],
)
def test_malformed_statistics_name_the_field(statistics, tmp_path, edit, message):
    path = write_statistics(tmp_path / "dataset_statistics.json", {"k": statistics})
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message):
        read_statistics(path)


def test_statistics_file_and_key_errors(tmp_path, synthetic):
    with pytest.raises(DatasetError, match=r"absent\.json: not found"):
        read_statistics(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"bad\.json: not valid JSON"):
        read_statistics(tmp_path / "bad.json")
    reader = LeRobotDataset(synthetic.root, action_keys=["action.delta_x"])
    with pytest.raises(DatasetError, match=r"unnormalized_action_keys \['action\.nope'\] are not among"):
        compute_statistics(reader, unnormalized_action_keys=["action.nope"])
    with pytest.raises(DatasetError, match="at least one action key"):
        compute_statistics(LeRobotDataset(synthetic.root))
