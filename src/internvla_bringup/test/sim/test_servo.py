"""Joint setpoints respect velocity and acceleration limits, reach targets, follow timed trajectories."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_bringup.sim.servo import JointServo, TrajectoryPoint

DT = 0.002


def _servo() -> JointServo:
    return JointServo(
        np.zeros(2), np.array([2.0, 1.0]), np.array([10.0, 5.0]), np.full(2, -3.0), np.full(2, 3.0)
    )


def test_move_is_limited_then_arrives_without_overshoot() -> None:
    servo = _servo()
    servo.set_target(np.array([0, 1]), np.array([2.0, -1.0]))
    trace = np.array([servo.update(DT).copy() for _ in range(2000)])
    speed = np.abs(np.diff(trace, axis=0)) / DT
    accel = np.abs(np.diff(speed, axis=0)) / DT
    assert speed.max(axis=0) == pytest.approx([2.0, 1.0], rel=1e-6)
    assert np.all(accel.max(axis=0) <= np.array([10.0, 5.0]) * 1.001)
    assert np.allclose(trace[-1], [2.0, -1.0])
    assert trace[:, 0].max() <= 2.0 and trace[:, 1].min() >= -1.0
    # Trapezoid: 2 rad at 2 rad/s with 10 rad/s^2 takes 1.2 s; arrival within a few steps of that.
    arrival = np.argmax(np.isclose(trace[:, 0], 2.0)) * DT
    assert arrival == pytest.approx(1.2, abs=0.02)


def test_holds_the_last_target_and_clips_to_limits() -> None:
    servo = _servo()
    servo.set_target(np.array([0]), np.array([5.0]))
    for _ in range(3000):
        servo.update(DT)
    held = servo.setpoint.copy()
    for _ in range(500):
        servo.update(DT)
    assert held[0] == pytest.approx(3.0)
    assert np.array_equal(servo.setpoint, held)


def test_trajectory_is_followed_in_time() -> None:
    servo = _servo()
    points = [TrajectoryPoint(0.5, np.array([0.25])), TrajectoryPoint(1.0, np.array([0.0]))]
    servo.set_trajectory(np.array([1]), points)
    trace = np.array([servo.update(DT).copy() for _ in range(750)])
    # Joint 1 ramps to 0.25 at t = 0.5 s (half its speed limit; the acceleration limit makes it lag
    # by about v^2 / 2a = 0.025 rad), then comes back; joint 0 stays.
    assert trace[249, 1] == pytest.approx(0.25, abs=0.03)
    assert trace[-1, 1] == pytest.approx(0.0, abs=0.01)
    assert np.all(trace[:, 0] == 0.0)


def test_a_command_for_other_joints_leaves_a_trajectory_running() -> None:
    """The policy sends an arm trajectory and a gripper command every tick: neither may cancel the other."""
    servo = _servo()
    servo.set_trajectory(np.array([0]), [TrajectoryPoint(1.0, np.array([0.5]))])
    for _ in range(100):
        servo.update(DT)
    servo.set_target(np.array([1]), np.array([-0.2]))  # the "gripper"
    for _ in range(500):
        servo.update(DT)
    assert servo.setpoint == pytest.approx([0.5, -0.2])
    servo.set_trajectory(np.array([0]), [TrajectoryPoint(1.0, np.array([1.5]))])
    for _ in range(250):
        servo.update(DT)
    servo.set_target(np.array([0]), np.array([0.9]))  # a new target for the same joint replaces it
    for _ in range(1000):
        servo.update(DT)
    assert servo.setpoint[0] == pytest.approx(0.9)
