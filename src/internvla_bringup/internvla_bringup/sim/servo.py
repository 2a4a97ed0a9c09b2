"""Joint setpoint generation with velocity and acceleration limits, as a robot's servo drive does.

Commands (a single target or a timed trajectory) never reach the actuators directly: a setpoint
moves towards them no faster than the joint limits allow and the MuJoCo position servos track
the setpoint. When commands stop, the setpoint settles on the last target and holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrajectoryPoint:
    """A waypoint ``time_from_start`` seconds after the trajectory was received."""

    time_from_start: float
    positions: np.ndarray


class JointServo:
    """Rate-limited setpoints for ``n`` joints; ``update(dt)`` advances them by one physics step."""

    def __init__(
        self,
        initial: np.ndarray,
        velocity_limit: np.ndarray,
        accel_limit: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
    ) -> None:
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        self.velocity_limit = np.asarray(velocity_limit, dtype=float)
        self.accel_limit = np.asarray(accel_limit, dtype=float)
        self.setpoint = np.clip(np.asarray(initial, dtype=float), self.lower, self.upper)
        self.velocity = np.zeros_like(self.setpoint)
        self.target = self.setpoint.copy()
        self._trajectory: list[TrajectoryPoint] = []  # waypoints of the joints in _traj_indices
        self._traj_indices = np.zeros(0, dtype=int)
        self._traj_start = np.zeros(0)
        self._traj_time = 0.0

    def reset(self, positions: np.ndarray) -> None:
        """Jump to ``positions`` at rest (episode reset, not a motion)."""
        self.setpoint = np.clip(np.asarray(positions, dtype=float), self.lower, self.upper)
        self.velocity[:] = 0.0
        self.target = self.setpoint.copy()
        self._trajectory = []

    def set_target(self, indices: np.ndarray, positions: np.ndarray) -> None:
        """Move joints ``indices`` to ``positions`` (clipped to the limits).

        A running trajectory stops where it is if it drives any of these joints; commands for other
        joints (the gripper next to an arm trajectory) leave it running.
        """
        if np.intersect1d(indices, self._traj_indices).size:
            self._trajectory = []
        self.target[indices] = np.clip(positions, self.lower[indices], self.upper[indices])

    def set_trajectory(self, indices: np.ndarray, points: list[TrajectoryPoint]) -> None:
        """Follow timed waypoints for joints ``indices``, interpolating linearly from their current target.

        A trajectory whose last point has no timing degrades to a move to that point.
        """
        if not points:
            return
        if points[-1].time_from_start <= 0.0:
            self.set_target(indices, points[-1].positions)
            return
        lower, upper = self.lower[indices], self.upper[indices]
        self._trajectory = [
            TrajectoryPoint(p.time_from_start, np.clip(p.positions, lower, upper)) for p in points
        ]
        self._traj_indices = np.asarray(indices, dtype=int)
        self._traj_start = self.target[self._traj_indices].copy()
        self._traj_time = 0.0

    def _follow_trajectory(self, dt: float) -> None:
        self._traj_time += dt
        prev_t, prev_q = 0.0, self._traj_start
        for point in self._trajectory:
            if self._traj_time < point.time_from_start:
                alpha = (self._traj_time - prev_t) / max(point.time_from_start - prev_t, 1e-9)
                self.target[self._traj_indices] = prev_q + alpha * (point.positions - prev_q)
                return
            prev_t, prev_q = point.time_from_start, point.positions
        self.target[self._traj_indices] = self._trajectory[-1].positions
        self._trajectory = []

    def update(self, dt: float) -> np.ndarray:
        """Advance the setpoint by ``dt`` seconds towards the target and return it."""
        if self._trajectory:
            self._follow_trajectory(dt)
        error = self.target - self.setpoint
        # Fastest speed from which the joint can still stop at the target under the acceleration limit,
        # in whole steps of dt (the continuous sqrt(2 a e) would arrive too fast and stop in one step).
        a_dt = self.accel_limit * dt
        stop_speed = a_dt * (np.sqrt(0.25 + 2.0 * np.abs(error) / (a_dt * dt)) - 0.5)
        desired = np.sign(error) * np.minimum(self.velocity_limit, stop_speed)
        max_dv = self.accel_limit * dt
        self.velocity = np.clip(desired, self.velocity - max_dv, self.velocity + max_dv)
        step = self.velocity * dt
        arrive = np.abs(step) >= np.abs(error)
        self.setpoint = np.where(arrive, self.target, self.setpoint + step)
        self.velocity = np.where(arrive, 0.0, self.velocity)
        return self.setpoint
