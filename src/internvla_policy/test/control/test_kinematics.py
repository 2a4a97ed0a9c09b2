"""Pinocchio FK and damped-least-squares IK on the Franka Panda URDF."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from internvla_policy.control.kinematics import KinematicsError, PinocchioKinematics, make_kinematics
from internvla_policy.control.pose import Pose, rotation_angle, rpy_to_matrix

sys.path.insert(0, str(Path(__file__).parent))
from policy_panda import BASE, EE, HOME, JOINTS, LOWER, UPPER, VELOCITY, panda_urdf


@pytest.fixture(scope="module")
def panda() -> PinocchioKinematics:
    return PinocchioKinematics(panda_urdf(), JOINTS, BASE, EE)


def test_limits_are_the_urdf_values(panda):
    np.testing.assert_array_equal(panda.limits.lower, LOWER)
    np.testing.assert_array_equal(panda.limits.upper, UPPER)
    np.testing.assert_array_equal(panda.limits.velocity, VELOCITY)


def test_fk_at_zero_matches_the_urdf_by_hand(panda):
    # Joint origins at q = 0: z = 0.333 + 0.316 + 0.384 - 0.107 (link8) - 0.1034 (tcp), pointing down;
    # x = 0.0825 - 0.0825 + 0.088. The hand is yawed -45 deg about the flange axis.
    pose = panda.fk(np.zeros(7))
    np.testing.assert_allclose(pose.position, [0.088, 0.0, 0.8226], atol=1e-9)
    expected = rpy_to_matrix(np.array([np.pi, 0.0, 0.0])) @ rpy_to_matrix(np.array([0.0, 0.0, -np.pi / 4]))
    assert rotation_angle(pose.rotation, expected) < 1e-9


def test_joint_order_is_the_callers(panda):
    reversed_panda = PinocchioKinematics(panda_urdf(), JOINTS[::-1], BASE, EE)
    np.testing.assert_array_equal(reversed_panda.limits.lower, LOWER[::-1])
    np.testing.assert_allclose(reversed_panda.fk(HOME[::-1]).position, panda.fk(HOME).position, atol=1e-12)


def test_fk_of_ik_reaches_reachable_targets(panda):
    rng = np.random.default_rng(7)
    for _ in range(50):
        q_true = rng.uniform(LOWER + 0.1, UPPER - 0.1)
        target = panda.fk(q_true)
        seed = np.clip(q_true + rng.uniform(-0.25, 0.25, 7), LOWER, UPPER)
        result = panda.ik(target, seed)
        reached = panda.fk(result.q)
        assert result.success, result.message
        assert np.linalg.norm(reached.position - target.position) < 1e-3
        assert rotation_angle(reached.rotation, target.rotation) < 0.01
        assert np.all(result.q >= LOWER) and np.all(result.q <= UPPER)


def test_ik_from_home_follows_small_cartesian_steps(panda):
    start = panda.fk(HOME)
    for offset in ([0.05, 0.0, 0.0], [0.0, -0.05, 0.02], [0.0, 0.0, -0.1]):
        target = Pose(start.position + np.array(offset), start.rotation)
        result = panda.ik(target, HOME)
        assert result.success
        assert np.linalg.norm(panda.fk(result.q).position - target.position) < 1e-3


def test_unreachable_target_fails_gracefully(panda):
    start = panda.fk(HOME)
    result = panda.ik(Pose(np.array([2.0, 0.0, 0.5]), start.rotation), HOME)
    assert not result.success
    assert "no solution" in result.message
    assert result.position_error > 1.0
    assert np.all(np.isfinite(result.q))
    assert np.all(result.q >= LOWER) and np.all(result.q <= UPPER)


def test_non_finite_target_or_seed_is_rejected(panda):
    start = panda.fk(HOME)
    nan_target = Pose(np.array([np.nan, 0.0, 0.5]), start.rotation)
    assert not panda.ik(nan_target, HOME).success
    bad_seed = HOME.copy()
    bad_seed[2] = np.inf
    result = panda.ik(start, bad_seed)
    assert not result.success and np.all(np.isfinite(result.q))


@pytest.mark.parametrize(
    ("joints", "base", "ee", "message"),
    [
        (("panda_joint1", "wrist_joint"), BASE, EE, "not in the URDF"),
        (JOINTS, BASE, "gripper_tip", "frame 'gripper_tip'"),
        (JOINTS, "panda_link3", EE, "base_frame moves"),
    ],
)
def test_description_mismatches_are_named(joints, base, ee, message):
    with pytest.raises(KinematicsError, match=message):
        PinocchioKinematics(panda_urdf(), joints, base, ee)


def test_missing_urdf_and_unknown_backend_are_errors(tmp_path):
    with pytest.raises(KinematicsError, match="not found"):
        make_kinematics("pinocchio", str(tmp_path / "none.urdf"), JOINTS, BASE, EE)
    with pytest.raises(KinematicsError, match="unknown kinematics backend"):
        make_kinematics("kdl", panda_urdf(), JOINTS, BASE, EE)


def test_moveit_backend_needs_moveit_py():
    try:
        import moveit.planning  # noqa: F401
    except ImportError:
        with pytest.raises(KinematicsError, match="moveit_py"):
            make_kinematics("moveit", panda_urdf(), JOINTS, BASE, EE, moveit_group="panda_arm")
    else:
        pytest.skip("moveit_py is installed here; the backend needs a running MoveIt configuration")
