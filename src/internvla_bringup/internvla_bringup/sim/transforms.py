"""Rotation helpers shared by the scene builder, the kinematics, the expert and the recorder.

Conventions (REP-103): rotation matrices map body to world; roll-pitch-yaw are the fixed-axis
X-Y-Z angles, R = Rz(yaw) @ Ry(pitch) @ Rx(roll); quaternions are (w, x, y, z) as in MuJoCo.
"""

from __future__ import annotations

import mujoco
import numpy as np


def rpy_to_matrix(rpy: np.ndarray) -> np.ndarray:
    """Rotation matrix of fixed-axis roll, pitch, yaw."""
    roll, pitch, yaw = (float(a) for a in rpy)
    cr, sr, cp, sp, cy, sy = (
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
    )
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def matrix_to_rpy(rot: np.ndarray) -> np.ndarray:
    """Fixed-axis roll, pitch, yaw of a rotation matrix (pitch in [-pi/2, pi/2])."""
    pitch = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
    if abs(rot[2, 0]) < 1.0 - 1e-9:
        roll = np.arctan2(rot[2, 1], rot[2, 2])
        yaw = np.arctan2(rot[1, 0], rot[0, 0])
    else:  # gimbal lock: only roll +- yaw is defined, put it all in yaw
        roll = 0.0
        yaw = np.arctan2(-rot[0, 1], rot[1, 1])
    return np.array([roll, pitch, yaw])


def matrix_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation matrix, w >= 0."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot, dtype=np.float64).reshape(9))
    return quat if quat[0] >= 0 else -quat


def rotation_vector(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vector (axis * angle) of a rotation matrix; the log map used for orientation error."""
    quat = matrix_to_quat(rot)
    vec = np.zeros(3)
    mujoco.mju_quat2Vel(vec, quat, 1.0)
    return vec


def look_at_quat(forward: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Quaternion of a MuJoCo camera (looks along its -z, y up) facing ``forward`` with ``up`` hint."""
    fwd = np.asarray(forward, dtype=float) / np.linalg.norm(forward)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, fwd)
    return matrix_to_quat(np.column_stack([right, cam_up, -fwd]))


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Angles wrapped into [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi
