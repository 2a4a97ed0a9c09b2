"""From one 7-D model action to an end-effector target and a gripper opening.

The released InternVLA-M1 checkpoints output delta end-effector actions: [dx, dy, dz, droll,
dpitch, dyaw, gripper] (metres, radians, gripper in [0, 1]) per control step. Different training
datasets used different conventions, so all of them are parameters (`ActionConvention`):

- `frame`: "base" applies the delta in the robot base frame (p' = p + dp, R' = dR R); "ee" applies
  it in the current end-effector frame (p' = p + R dp, R' = R dR).
- `rotation_format`: "rpy" reads the three rotation numbers as roll-pitch-yaw about fixed X, Y, Z
  (dR = Rz(yaw) Ry(pitch) Rx(roll), the URDF convention); "rotvec" as an axis-angle vector.
- `axis_signs` (6 values of +1/-1) and `translation_scale` / `rotation_scale` map a dataset's axes
  and units onto the robot's: a sign flips an axis (e.g. a camera-aligned y), a scale converts units.
- `gripper_inverted`: the model's gripper value means "closed" (1 = closed) rather than "open".
- `gripper_binary`: threshold the (possibly ensembled) gripper value at 0.5, as the released
  post-processing does, instead of passing a continuous opening.

The gripper output is always an opening fraction: 0 = closed, 1 = fully open.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from internvla_policy.control.pose import Pose, rotvec_to_matrix, rpy_to_matrix

ACTION_SPACE = "delta_eef_rpy_gripper"
DIMENSION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
FRAMES = ("base", "ee")
ROTATION_FORMATS = ("rpy", "rotvec")


@dataclass(frozen=True)
class ActionConvention:
    frame: str = "base"
    rotation_format: str = "rpy"
    axis_signs: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    translation_scale: float = 1.0
    rotation_scale: float = 1.0
    gripper_inverted: bool = False
    gripper_binary: bool = True

    def target_pose(self, current: Pose, action: np.ndarray) -> Pose:
        """Apply the delta part of `action` to the measured end-effector pose `current`."""
        delta = np.asarray(action[:6], dtype=float) * np.asarray(self.axis_signs, dtype=float)
        translation = delta[:3] * self.translation_scale
        rotation_params = delta[3:6] * self.rotation_scale
        if self.rotation_format == "rpy":
            delta_rotation = rpy_to_matrix(rotation_params)
        else:
            delta_rotation = rotvec_to_matrix(rotation_params)
        if self.frame == "base":
            return Pose(current.position + translation, delta_rotation @ current.rotation)
        return Pose(current.position + current.rotation @ translation, current.rotation @ delta_rotation)

    def gripper_opening(self, action: np.ndarray) -> float:
        """Opening fraction in [0, 1] (1 = open) from the action's last dimension."""
        value = float(np.clip(action[6], 0.0, 1.0))
        if self.gripper_binary:
            value = 1.0 if value >= 0.5 else 0.0
        return 1.0 - value if self.gripper_inverted else value
