"""Safety: what may move the robot, and by how much per control tick.

Two independent parts, both free of ROS so that every clamp is unit-tested:

- `SafetyGate` answers "may anything be commanded now?": the enable flag (set through the enable
  service; real robots start disabled), a latching emergency stop (only an explicit reset clears
  it, and only once the e-stop input itself reads released), and an optional operator heartbeat
  (deadman) that must be fresh and pressed.
- `limit_pose_step` and `limit_joint_step` bound each command: the end-effector target is kept
  inside a workspace box (base frame) and within a maximum translation and rotation from the
  measured pose; the joint command is kept inside the URDF position limits (minus a margin) and
  within the URDF velocity limits (times a scale) over one control period.
- `joint_limit_problem` and `workspace_problem` judge the measured state: a joint reading outside
  its URDF limits, or a tool outside the workspace box, by more than a small tolerance, is a
  fault (a broken encoder, a wrong URDF, a robot moved by hand) and the controller holds rather
  than steer from it.

Each clamp that changed a value is reported by name so the node can count and log it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from internvla_policy.control.kinematics.base import JointLimits
from internvla_policy.control.pose import Pose, matrix_to_rotvec, rotvec_to_matrix
from internvla_policy.control.state import PolicyState


@dataclass(frozen=True)
class SafetyLimits:
    """Per-tick motion bounds. Lengths in metres, angles in radians, positions in the base frame."""

    workspace_min: np.ndarray
    workspace_max: np.ndarray
    max_translation_per_tick: float
    max_rotation_per_tick: float
    joints: JointLimits
    joint_position_margin: float
    joint_velocity_scale: float
    joint_limit_tolerance: float
    workspace_tolerance: float


def limit_pose_step(current: Pose, target: Pose, limits: SafetyLimits) -> tuple[Pose, list[str]]:
    """Clamp `target` into the workspace box, then to the per-tick step from `current`.

    The box comes first so that a robot that starts outside the box is drawn back in no faster
    than the step limit allows.
    """
    clamps: list[str] = []
    position = np.clip(target.position, limits.workspace_min, limits.workspace_max)
    if not np.array_equal(position, target.position):
        clamps.append("workspace")
    step = position - current.position
    distance = float(np.linalg.norm(step))
    if distance > limits.max_translation_per_tick:
        position = current.position + step * (limits.max_translation_per_tick / distance)
        clamps.append("translation_step")
    rotvec = matrix_to_rotvec(current.rotation.T @ target.rotation)
    angle = float(np.linalg.norm(rotvec))
    rotation = target.rotation
    if angle > limits.max_rotation_per_tick:
        rotation = current.rotation @ rotvec_to_matrix(rotvec * (limits.max_rotation_per_tick / angle))
        clamps.append("rotation_step")
    return Pose(position, rotation), clamps


def limit_joint_step(
    q_current: np.ndarray, q_target: np.ndarray, period_s: float, limits: SafetyLimits
) -> tuple[np.ndarray, list[str]]:
    """Clamp a joint command to the position limits (with margin) and the velocity limits over `period_s`.

    The velocity clamp comes last and nothing follows it, so no command is ever more than one
    velocity step from the measured position. The result lies between `q_current` and a target
    inside the margin band: a joint inside the URDF limits stays inside them, and one measured
    beyond the band (or slightly beyond the limits, within the fault tolerance) is drawn inward
    at most one step per tick, never pushed outward.
    """
    clamps: list[str] = []
    lower = limits.joints.lower + limits.joint_position_margin
    upper = limits.joints.upper - limits.joint_position_margin
    q = np.clip(q_target, lower, upper)
    if not np.array_equal(q, q_target):
        clamps.append("joint_position")
    max_step = limits.joints.velocity * limits.joint_velocity_scale * period_s
    stepped = np.clip(q, q_current - max_step, q_current + max_step)
    if not np.array_equal(stepped, q):
        clamps.append("joint_velocity")
    return stepped, clamps


def joint_limit_problem(names: tuple[str, ...], q: np.ndarray, limits: SafetyLimits) -> str | None:
    """Why measured positions are a fault (outside the URDF limits beyond the tolerance); None if not."""
    tolerance = limits.joint_limit_tolerance
    below = limits.joints.lower - tolerance - q
    above = q - limits.joints.upper - tolerance
    excess = np.maximum(below, above)
    if not np.any(excess > 0.0):
        return None
    i = int(np.argmax(excess))
    return (
        f"joint {names[i]} measured at {q[i]:.3f}, outside its URDF limits "
        f"[{limits.joints.lower[i]:.3f}, {limits.joints.upper[i]:.3f}] by more than {tolerance:.3f}: "
        "check the encoder and the URDF, or move the joint back by hand"
    )


def workspace_problem(position: np.ndarray, limits: SafetyLimits) -> str | None:
    """Why a measured tool position is a fault (outside the box beyond the tolerance); None if not."""
    outside = np.maximum(limits.workspace_min - position, position - limits.workspace_max)
    distance = float(np.linalg.norm(np.maximum(outside, 0.0)))
    if distance <= limits.workspace_tolerance:
        return None
    return (
        f"end effector measured {distance:.3f} m outside the workspace box (tolerance "
        f"{limits.workspace_tolerance:.3f} m): move it back by hand or widen the workspace"
    )


class SafetyGate:
    """Enable flag, latching e-stop and optional deadman heartbeat. Thread-safe."""

    def __init__(self, start_enabled: bool, heartbeat_timeout_s: float) -> None:
        self._lock = threading.Lock()
        self._enabled = start_enabled
        self._estopped = False
        self._estop_input_pressed = False
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._heartbeat: tuple[bool, float] | None = None

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def estopped(self) -> bool:
        return self._estopped

    def set_enabled(self, enabled: bool) -> tuple[bool, str]:
        with self._lock:
            if enabled and self._estopped:
                return False, "e-stop is latched: reset it first"
            self._enabled = enabled
            return True, "enabled" if enabled else "disabled"

    def on_estop(self, pressed: bool) -> None:
        """Record the e-stop input; `True` latches the stop until `reset_estop`."""
        with self._lock:
            self._estop_input_pressed = pressed
            if pressed:
                self._estopped = True

    def latch_estop(self) -> None:
        """Latch the stop from a momentary input (the e-stop service): no button state to release."""
        with self._lock:
            self._estopped = True

    def reset_estop(self) -> tuple[bool, str]:
        """Clear a latched e-stop. The node stays disabled afterwards: enabling is a separate decision."""
        with self._lock:
            if self._estop_input_pressed:
                return False, "e-stop input still reads pressed"
            was = self._estopped
            self._estopped = False
            self._enabled = False
            return True, "e-stop reset; call enable to resume" if was else "e-stop was not latched"

    def on_heartbeat(self, pressed: bool, now: float) -> None:
        with self._lock:
            self._heartbeat = (pressed, now)

    def check(self, now: float) -> tuple[PolicyState, str] | None:
        """The state that forbids commanding now, with the reason; None when the gate is open."""
        with self._lock:
            if self._estopped:
                return PolicyState.ESTOPPED, "e-stop latched"
            if not self._enabled:
                return PolicyState.DISABLED, "disabled (call the enable service)"
            if self._heartbeat_timeout_s > 0.0:
                if self._heartbeat is None:
                    return PolicyState.HOLDING, "no operator heartbeat yet"
                pressed, stamp = self._heartbeat
                if not pressed:
                    return PolicyState.HOLDING, "operator heartbeat released"
                age, limit = now - stamp, self._heartbeat_timeout_s
                if age > limit:
                    return PolicyState.HOLDING, f"operator heartbeat stale: {age:.2f} s > {limit:.2f} s"
            return None
