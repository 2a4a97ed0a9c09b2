"""MoveItPy kinematics: the robot's configured IK plugin plus a collision check on the live scene.

Only importable where MoveIt 2's Python bindings (`moveit_py`) are installed (ROS installs with
MoveIt, the Docker image); `make_kinematics` selects it when the `kinematics_backend` parameter
says "moveit". MoveItPy reads the MoveIt configuration (robot_description, SRDF, kinematics.yaml)
from the ROS parameters of the process, which the launch file provides. Joint limits for the
safety layer still come from the URDF, as with every backend.
"""

from __future__ import annotations

import numpy as np

from internvla_policy.control.kinematics.base import IkResult, KinematicsError, reject_non_finite
from internvla_policy.control.kinematics.pinocchio_backend import joint_limits_from_urdf
from internvla_policy.control.pose import Pose, rotation_angle


def moveit_available() -> bool:
    try:
        import moveit.planning  # noqa: F401
    except ImportError:
        return False
    return True


class MoveItKinematics:
    """FK/IK through a MoveIt planning group; IK solutions in collision are reported as failures."""

    def __init__(
        self,
        urdf_path: str,
        joint_names: tuple[str, ...],
        base_frame: str,
        ee_frame: str,
        group: str,
        *,
        node_name: str = "internvla_policy_moveit",
        ik_timeout_s: float = 0.01,
    ) -> None:
        from moveit.core.robot_state import RobotState
        from moveit.planning import MoveItPy

        self.joint_names = tuple(joint_names)
        self.limits = joint_limits_from_urdf(urdf_path, self.joint_names)
        self._moveit = MoveItPy(node_name=node_name)
        self._scene_monitor = self._moveit.get_planning_scene_monitor()
        robot_model = self._moveit.get_robot_model()
        if not robot_model.has_joint_model_group(group):
            raise KinematicsError(
                f"MoveIt group '{group}' not found (groups: {robot_model.joint_model_group_names})"
            )
        group_model = robot_model.get_joint_model_group(group)
        group_joints = [n for n in group_model.joint_model_names if n in joint_names]
        if sorted(group_joints) != sorted(self.joint_names):
            raise KinematicsError(f"MoveIt group '{group}' joints {group_joints} differ from joint_names")
        # Group order -> caller order.
        self._to_group = np.array([self.joint_names.index(n) for n in group_joints])
        self._state = RobotState(robot_model)
        self._group = group
        self._base_frame = base_frame
        self._ee_frame = ee_frame
        self._ik_timeout_s = ik_timeout_s

    def _set(self, q: np.ndarray) -> None:
        self._state.set_joint_group_positions(self._group, np.asarray(q, dtype=float)[self._to_group])
        self._state.update()

    def _get(self) -> np.ndarray:
        q = np.empty(len(self.joint_names))
        q[self._to_group] = self._state.get_joint_group_positions(self._group)
        return q

    def _in_base(self, frame: str) -> np.ndarray:
        """4x4 transform of `frame` in the base frame (MoveIt gives transforms in the model frame)."""
        base_in_model = self._state.get_frame_transform(self._base_frame)
        return np.linalg.inv(base_in_model) @ self._state.get_frame_transform(frame)

    def fk(self, q: np.ndarray) -> Pose:
        self._set(q)
        t = self._in_base(self._ee_frame)
        return Pose(t[:3, 3].copy(), t[:3, :3].copy())

    def ik(self, target: Pose, seed: np.ndarray) -> IkResult:
        from geometry_msgs.msg import Pose as PoseMsg

        lo, hi = self.limits.lower, self.limits.upper
        rejected = reject_non_finite(target, seed, self.limits)
        if rejected is not None:
            return rejected
        self._set(seed)
        target_in_base = np.eye(4)
        target_in_base[:3, :3], target_in_base[:3, 3] = target.rotation, target.position
        target_in_model = self._state.get_frame_transform(self._base_frame) @ target_in_base
        goal = Pose(target_in_model[:3, 3], target_in_model[:3, :3])
        msg = PoseMsg()
        msg.position.x, msg.position.y, msg.position.z = (float(v) for v in goal.position)
        x, y, z, w = goal.quaternion_xyzw()
        msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = x, y, z, w
        solved = self._state.set_from_ik(self._group, msg, self._ee_frame, self._ik_timeout_s)
        q = np.clip(self._get(), lo, hi)
        reached = self.fk(q)
        pos_err = float(np.linalg.norm(reached.position - target.position))
        rot_err = rotation_angle(reached.rotation, target.rotation)
        if not solved:
            return IkResult(q, False, pos_err, rot_err, 1, "MoveIt IK found no solution")
        with self._scene_monitor.read_only() as scene:
            colliding = scene.is_state_colliding(
                robot_state=self._state, joint_model_group_name=self._group, verbose=False
            )
        if colliding:
            return IkResult(q, False, pos_err, rot_err, 1, "IK solution is in collision")
        return IkResult(q, True, pos_err, rot_err, 1)
