"""Every safety clamp and the gate (enable, latching e-stop, deadman heartbeat)."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_policy.control.kinematics import JointLimits
from internvla_policy.control.pose import Pose, rotation_angle, rpy_to_matrix
from internvla_policy.control.safety import (
    SafetyGate,
    SafetyLimits,
    joint_limit_problem,
    limit_joint_step,
    limit_pose_step,
    workspace_problem,
)
from internvla_policy.control.state import PolicyState

LIMITS = SafetyLimits(
    workspace_min=np.array([0.2, -0.5, 0.1]),
    workspace_max=np.array([0.8, 0.5, 0.9]),
    max_translation_per_tick=0.02,
    max_rotation_per_tick=0.1,
    joints=JointLimits(
        lower=np.array([-1.0, -2.0]), upper=np.array([1.0, 0.5]), velocity=np.array([2.0, 1.0])
    ),
    joint_position_margin=0.05,
    joint_velocity_scale=0.5,
    joint_limit_tolerance=0.05,
    workspace_tolerance=0.05,
)
CURRENT = Pose(np.array([0.5, 0.0, 0.5]), np.eye(3))


def test_small_step_inside_the_box_passes_unchanged():
    target = Pose(CURRENT.position + np.array([0.01, 0.0, -0.005]), rpy_to_matrix(np.array([0.0, 0.05, 0.0])))
    clamped, clamps = limit_pose_step(CURRENT, target, LIMITS)
    assert clamps == []
    np.testing.assert_array_equal(clamped.position, target.position)
    np.testing.assert_array_equal(clamped.rotation, target.rotation)


def test_workspace_box_clamps_each_axis():
    near_wall = Pose(np.array([0.79, 0.0, 0.11]), np.eye(3))
    clamped, clamps = limit_pose_step(near_wall, Pose(np.array([0.805, 0.0, 0.095]), np.eye(3)), LIMITS)
    assert clamps == ["workspace"]
    np.testing.assert_allclose(clamped.position, [0.8, 0.0, 0.1])


def test_translation_step_is_limited_along_the_requested_direction():
    clamped, clamps = limit_pose_step(
        CURRENT, Pose(CURRENT.position + np.array([0.03, 0.04, 0.0]), np.eye(3)), LIMITS
    )
    assert clamps == ["translation_step"]
    np.testing.assert_allclose(clamped.position - CURRENT.position, [0.012, 0.016, 0.0], atol=1e-12)


def test_robot_outside_the_box_is_drawn_back_no_faster_than_the_step_limit():
    outside = Pose(np.array([0.9, 0.0, 0.5]), np.eye(3))
    clamped, clamps = limit_pose_step(outside, outside, LIMITS)
    assert clamps == ["workspace", "translation_step"]
    np.testing.assert_allclose(clamped.position, [0.88, 0.0, 0.5])


def test_rotation_step_is_limited_about_the_requested_axis():
    target = Pose(CURRENT.position, rpy_to_matrix(np.array([0.0, 0.0, 0.3])))
    clamped, clamps = limit_pose_step(CURRENT, target, LIMITS)
    assert clamps == ["rotation_step"]
    assert rotation_angle(CURRENT.rotation, clamped.rotation) == pytest.approx(0.1)
    np.testing.assert_allclose(clamped.rotation, rpy_to_matrix(np.array([0.0, 0.0, 0.1])), atol=1e-12)


def test_joint_positions_are_kept_inside_the_limits_minus_margin():
    q, clamps = limit_joint_step(np.array([0.94, -1.94]), np.array([1.5, -2.5]), 1.0, LIMITS)
    assert clamps == ["joint_position"]
    np.testing.assert_allclose(q, [0.95, -1.95])


def test_joint_velocity_is_limited_per_joint_over_the_period():
    # max step = velocity * scale * period = [0.1, 0.05] rad at 0.1 s.
    q, clamps = limit_joint_step(np.array([0.0, 0.0]), np.array([0.3, -0.01]), 0.1, LIMITS)
    assert clamps == ["joint_velocity"]
    np.testing.assert_allclose(q, [0.1, -0.01])


def test_joint_measured_beyond_the_margin_moves_inward_only():
    # Measured 0.48 is inside the URDF limit (0.5) but beyond the margin band (0.45).
    q, clamps = limit_joint_step(np.array([0.0, 0.48]), np.array([0.0, 0.6]), 0.01, LIMITS)
    assert clamps == ["joint_position", "joint_velocity"]
    assert 0.45 <= q[1] < 0.48


def test_velocity_limit_holds_even_when_the_measured_joint_is_outside_the_urdf_limits():
    # Measured 0.3 beyond the URDF limit (1.0): the command moves inward by one velocity step
    # (0.01), not to the limit in one jump (the old final clip commanded a 0.2 rad step).
    q, clamps = limit_joint_step(np.array([1.3, 0.0]), np.array([1.3, 0.0]), 0.01, LIMITS)
    assert clamps == ["joint_position", "joint_velocity"]
    np.testing.assert_allclose(q, [1.29, 0.0])


def test_a_joint_inside_the_urdf_limits_is_commanded_inside_them():
    q, _ = limit_joint_step(np.array([0.999, 0.499]), np.array([5.0, 5.0]), 1.0, LIMITS)
    assert np.all(q <= LIMITS.joints.upper)


def test_measured_joints_outside_the_limits_beyond_the_tolerance_are_a_fault():
    names = ("a", "b")
    assert joint_limit_problem(names, np.array([1.04, -2.04]), LIMITS) is None  # within 0.05
    problem = joint_limit_problem(names, np.array([0.0, 0.8]), LIMITS)
    assert problem.startswith("joint b measured at 0.800, outside its URDF limits [-2.000, 0.500]")
    assert "a" in joint_limit_problem(names, np.array([1e9, 0.0]), LIMITS)


def test_a_tool_outside_the_workspace_beyond_the_tolerance_is_a_fault():
    assert workspace_problem(np.array([0.5, 0.0, 0.5]), LIMITS) is None
    assert workspace_problem(np.array([0.84, 0.0, 0.5]), LIMITS) is None  # 4 cm out: tolerated
    assert "0.920 m outside the workspace box" in workspace_problem(np.array([1.72, 0.0, 0.5]), LIMITS)


def test_gate_enable_flag():
    gate = SafetyGate(start_enabled=False, heartbeat_timeout_s=0.0)
    assert gate.check(0.0) == (PolicyState.DISABLED, "disabled (call the enable service)")
    assert gate.set_enabled(True) == (True, "enabled")
    assert gate.check(0.0) is None
    gate.set_enabled(False)
    assert gate.check(0.0)[0] is PolicyState.DISABLED


def test_estop_latches_until_released_and_reset_and_then_needs_enable():
    gate = SafetyGate(start_enabled=True, heartbeat_timeout_s=0.0)
    gate.on_estop(True)
    gate.on_estop(False)  # releasing the button does not clear the latch
    assert gate.check(0.0)[0] is PolicyState.ESTOPPED
    assert gate.set_enabled(True)[0] is False
    gate.on_estop(True)
    assert gate.reset_estop() == (False, "e-stop input still reads pressed")
    gate.on_estop(False)
    assert gate.reset_estop()[0] is True
    assert gate.check(0.0)[0] is PolicyState.DISABLED
    gate.set_enabled(True)
    assert gate.check(0.0) is None


def test_deadman_heartbeat_must_be_fresh_and_pressed():
    gate = SafetyGate(start_enabled=True, heartbeat_timeout_s=0.5)
    assert gate.check(10.0) == (PolicyState.HOLDING, "no operator heartbeat yet")
    gate.on_heartbeat(True, 10.0)
    assert gate.check(10.4) is None
    state, detail = gate.check(10.6)
    assert state is PolicyState.HOLDING and "stale" in detail
    gate.on_heartbeat(False, 10.7)
    assert gate.check(10.7) == (PolicyState.HOLDING, "operator heartbeat released")
