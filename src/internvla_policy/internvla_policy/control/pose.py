"""Rigid poses and the rotation helpers the control core needs.

A pose is a position (metres) and a rotation matrix, expressed in one frame that the caller
names (the robot's base frame throughout the control core). Rotation maths delegates to
pinocchio (already the kinematics dependency) so that the exponential/logarithm maps near
zero and pi are handled by one well-tested implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pinocchio as pin


@dataclass(frozen=True)
class Pose:
    """A rigid transform: `position` [3] in metres and `rotation` [3, 3] (orthonormal)."""

    position: np.ndarray
    rotation: np.ndarray

    def is_finite(self) -> bool:
        return bool(np.all(np.isfinite(self.position)) and np.all(np.isfinite(self.rotation)))

    def quaternion_xyzw(self) -> tuple[float, float, float, float]:
        """Unit quaternion in the geometry_msgs/Quaternion field order (x, y, z, w)."""
        q = pin.Quaternion(self.rotation)
        q.normalize()
        return float(q.x), float(q.y), float(q.z), float(q.w)

    @staticmethod
    def from_quaternion(position: np.ndarray, xyzw: tuple[float, float, float, float]) -> Pose:
        x, y, z, w = xyzw
        q = pin.Quaternion(w, x, y, z)
        q.normalize()
        return Pose(np.asarray(position, dtype=float), q.toRotationMatrix())


def rpy_to_matrix(rpy: np.ndarray) -> np.ndarray:
    """Roll-pitch-yaw (fixed axes X, then Y, then Z; R = Rz(yaw) Ry(pitch) Rx(roll)), as in URDF."""
    return pin.rpy.rpyToMatrix(float(rpy[0]), float(rpy[1]), float(rpy[2]))


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle vector (axis times angle in radians) to a rotation matrix."""
    return pin.exp3(np.asarray(rotvec, dtype=float))


def matrix_to_rotvec(rotation: np.ndarray) -> np.ndarray:
    return pin.log3(np.asarray(rotation, dtype=float))


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in radians of the rotation taking `a` to `b` (geodesic distance on SO(3))."""
    return float(np.linalg.norm(matrix_to_rotvec(a.T @ b)))
