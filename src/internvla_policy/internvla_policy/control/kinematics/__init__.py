"""Kinematics backends behind one interface (`Kinematics`); `make_kinematics` picks one by name."""

from __future__ import annotations

from internvla_policy.control.kinematics.base import IkResult, JointLimits, Kinematics, KinematicsError
from internvla_policy.control.kinematics.pinocchio_backend import PinocchioKinematics, joint_limits_from_urdf

BACKENDS = ("pinocchio", "moveit")


def make_kinematics(
    backend: str,
    urdf_path: str,
    joint_names: tuple[str, ...],
    base_frame: str,
    ee_frame: str,
    *,
    moveit_group: str = "",
    ik_max_iterations: int = 200,
    ik_damping: float = 1e-2,
) -> Kinematics:
    """Build the named backend. "moveit" needs `moveit_py` and a planning group name."""
    if backend == "pinocchio":
        return PinocchioKinematics(
            urdf_path, joint_names, base_frame, ee_frame, max_iterations=ik_max_iterations, damping=ik_damping
        )
    if backend == "moveit":
        from internvla_policy.control.kinematics.moveit_backend import MoveItKinematics, moveit_available

        if not moveit_available():
            raise KinematicsError("kinematics backend 'moveit' needs moveit_py, which is not importable here")
        if not moveit_group:
            raise KinematicsError("kinematics backend 'moveit' needs a planning group name")
        return MoveItKinematics(urdf_path, joint_names, base_frame, ee_frame, moveit_group)
    raise KinematicsError(f"unknown kinematics backend '{backend}' (choose one of {BACKENDS})")


__all__ = [
    "BACKENDS",
    "IkResult",
    "JointLimits",
    "Kinematics",
    "KinematicsError",
    "PinocchioKinematics",
    "joint_limits_from_urdf",
    "make_kinematics",
]
