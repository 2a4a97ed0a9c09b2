"""A scripted pick-and-place expert for the task family, using ground truth and IK.

The expert plans top-down waypoints from the true object poses, moves a Cartesian tool target
along them at a bounded speed, and turns each target into joint positions with MuJoCo-Jacobian
IK. It retries a grasp that did not lift the block, so recorded data also shows recoveries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from internvla_bringup.sim.env import SimEnv
from internvla_bringup.sim.scene import BOWL, BOWL_HEIGHT
from internvla_bringup.sim.transforms import wrap_angle

APPROACH_HEIGHT = 0.12  # metres above the grasp point for the pre-grasp pose
CARRY_HEIGHT = 0.2  # metres above the table while carrying
FAST, SLOW = 0.25, 0.1  # tool speeds, m/s
YAW_RATE = 1.5  # rad/s
MAX_RETRIES = 2
SETTLED = 0.005  # metres of tool tracking error below which a reached waypoint counts as arrived
SETTLE_TIMEOUT = 1.0  # seconds to wait for the arm to settle on a waypoint before moving on anyway


@dataclass(frozen=True)
class Waypoint:
    """Go to ``pos`` with tool ``yaw`` at ``speed`` (0: stay), gripper at ``gripper``, then wait ``dwell``."""

    pos: np.ndarray
    yaw: float
    gripper: float
    speed: float
    dwell: float = 0.0
    check_grasp: bool = False


@dataclass(frozen=True)
class ExpertAction:
    """What the expert commands for the next control period."""

    arm_target: np.ndarray  # joint positions
    gripper: float  # opening fraction, 1 = open
    tcp_pos: np.ndarray  # tool target position
    tcp_rot: np.ndarray  # tool target rotation matrix


class ScriptedExpert:
    """Solves the episode's task in ``env`` one control period at a time (call ``act`` then ``env.step``)."""

    def __init__(self, env: SimEnv, control_period: float = 0.1) -> None:
        if env.config.tcp_down_rpy is None:
            raise ValueError(f"the scripted expert has no top-down grasp for robot '{env.robot}'")
        self.env = env
        self.dt = control_period
        self._down = env.tool_down_rotation(0.0)
        self.reset()

    def reset(self) -> None:
        """Plan from the current state (call after ``env.reset``)."""
        pos, rot = self.env.tcp_pose()
        self._cmd_pos = pos
        self._cmd_yaw = self._yaw_of(rot)
        self._q = self.env.arm_positions()
        self._retries = 0
        self._plan = self._waypoints()
        self._index = 0
        self._dwell_left = self._plan[0].dwell
        self._waited = 0.0
        self.ik_failures = 0

    @property
    def done(self) -> bool:
        return self._index >= len(self._plan)

    @property
    def retries(self) -> int:
        """Grasps re-attempted so far in this episode."""
        return self._retries

    def _yaw_of(self, rot: np.ndarray) -> float:
        relative = rot @ self._down.T  # tool rotation = Rz(yaw) @ down
        return float(np.arctan2(relative[1, 0], relative[0, 0]))

    def _grasp_yaw(self, obj: str) -> float:
        """Block yaw plus the multiple of 90 degrees closest to the current tool yaw (symmetry of a cube)."""
        yaw = self.env.object_yaw(obj)
        return float(self._cmd_yaw + wrap_angle(4.0 * (yaw - self._cmd_yaw)) / 4.0)

    def _waypoints(self) -> list[Waypoint]:
        task, ws = self.env.task, self.env.config.workspace
        block = ws.block_size
        obj = self.env.object_position(task.obj)
        yaw = self._grasp_yaw(task.obj)
        grasp = np.array([obj[0], obj[1], ws.table_z + 0.3 * block])
        above = grasp + np.array([0.0, 0.0, APPROACH_HEIGHT])
        lift = np.array([obj[0], obj[1], ws.table_z + CARRY_HEIGHT])
        plan = [
            Waypoint(above, yaw, 1.0, FAST),
            Waypoint(grasp, yaw, 1.0, SLOW),
            Waypoint(grasp, yaw, 0.0, 0.0, dwell=0.6),
            Waypoint(lift, yaw, 0.0, SLOW, check_grasp=True),
        ]
        if task.kind == "pick":
            return [*plan, Waypoint(lift, yaw, 0.0, 0.0, dwell=0.5)]
        target = self.env.object_position(task.target)
        # The tool holds the block 0.2 block sizes below its centre (see ``grasp``).
        if task.target == BOWL:
            release_z = ws.table_z + BOWL_HEIGHT + 0.01 + 0.3 * block
        else:
            release_z = target[2] + 0.8 * block + 0.005
        carry = np.array([target[0], target[1], ws.table_z + CARRY_HEIGHT])
        release = np.array([target[0], target[1], release_z])
        return [
            *plan,
            Waypoint(carry, yaw, 0.0, FAST),
            Waypoint(release, yaw, 0.0, SLOW),
            Waypoint(release, yaw, 1.0, 0.0, dwell=0.5),
            Waypoint(carry, yaw, 1.0, FAST),
        ]

    def _grasp_held(self) -> bool:
        ws = self.env.config.workspace
        return self.env.object_position(self.env.task.obj)[2] > ws.table_z + 0.5 * ws.block_size + 0.03

    def _advance(self, waypoint: Waypoint) -> None:
        if waypoint.check_grasp and not self._grasp_held() and self._retries < MAX_RETRIES:
            self._retries += 1
            self._plan, self._index = self._waypoints(), 0
        else:
            self._index += 1
        if not self.done:
            self._dwell_left = self._plan[self._index].dwell
        self._waited = 0.0

    def act(self) -> ExpertAction:
        """The command for the next control period; advances the plan when a waypoint is reached."""
        if self.done:
            return self._command(self._plan[-1].gripper)
        waypoint = self._plan[self._index]
        delta = waypoint.pos - self._cmd_pos
        distance = float(np.linalg.norm(delta))
        if waypoint.speed > 0.0 and distance > 0.0:
            self._cmd_pos = self._cmd_pos + delta * min(1.0, waypoint.speed * self.dt / distance)
        yaw_error = float(wrap_angle(waypoint.yaw - self._cmd_yaw))
        self._cmd_yaw += float(np.clip(yaw_error, -YAW_RATE * self.dt, YAW_RATE * self.dt))
        reached = np.linalg.norm(waypoint.pos - self._cmd_pos) < 1e-6 and abs(yaw_error) <= YAW_RATE * self.dt
        if reached:
            self._waited += self.dt
            settled = (
                np.linalg.norm(self.env.tcp_pose()[0] - self._cmd_pos) < SETTLED
                or self._waited > SETTLE_TIMEOUT
            )
            if self._dwell_left > 1e-9:
                self._dwell_left -= self.dt
            elif settled:
                self._advance(waypoint)
        return self._command(waypoint.gripper)

    def _command(self, gripper: float) -> ExpertAction:
        rot = self.env.tool_down_rotation(self._cmd_yaw)
        result = self.env.kinematics.solve(self._cmd_pos, rot, self._q, self.env.data.qpos)
        self.ik_failures += int(not result.converged)
        self._q = result.q
        return ExpertAction(result.q.copy(), gripper, self._cmd_pos.copy(), rot)
