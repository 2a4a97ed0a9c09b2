"""Pinocchio kinematics: FK and damped-least-squares IK with joint limits, on the robot's URDF.

Joints of the URDF that are not controlled (fingers, other limbs) are locked at their neutral
value by building a reduced model, so the Jacobian has exactly one column per controlled joint.
The base frame may be any frame that the controlled joints do not move (checked at load).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pinocchio as pin

from internvla_policy.control.kinematics.base import IkResult, JointLimits, KinematicsError, reject_non_finite
from internvla_policy.control.pose import Pose, rotation_angle


def _load_reduced_model(urdf_path: str, joint_names: tuple[str, ...]) -> pin.Model:
    if not Path(urdf_path).is_file():
        raise KinematicsError(f"URDF file not found: {urdf_path}")
    try:
        full = pin.buildModelFromUrdf(urdf_path)
    except (RuntimeError, ValueError) as exc:
        raise KinematicsError(f"cannot parse URDF {urdf_path}: {exc}") from exc
    known = list(full.names)[1:]
    missing = [n for n in joint_names if n not in known]
    if missing:
        raise KinematicsError(f"joints {missing} are not in the URDF (it has {known})")
    for name in joint_names:
        if full.joints[full.getJointId(name)].nq != 1:
            raise KinematicsError(f"joint '{name}' is not a 1-DoF revolute or prismatic joint")
    locked = [full.getJointId(n) for n in known if n not in joint_names]
    return pin.buildReducedModel(full, locked, pin.neutral(full)) if locked else full


def _limits_of(model: pin.Model, joint_names: tuple[str, ...], urdf_path: str) -> JointLimits:
    idx = [model.joints[model.getJointId(n)].idx_q for n in joint_names]
    vidx = [model.joints[model.getJointId(n)].idx_v for n in joint_names]
    limits = JointLimits(
        lower=model.lowerPositionLimit[idx].copy(),
        upper=model.upperPositionLimit[idx].copy(),
        velocity=model.velocityLimit[vidx].copy(),
    )
    bad = [
        n
        for n, lo, hi, v in zip(joint_names, limits.lower, limits.upper, limits.velocity, strict=True)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi and np.isfinite(v) and v > 0)
    ]
    if bad:
        raise KinematicsError(f"joints {bad} have no finite position/velocity limits in {urdf_path}")
    return limits


def joint_limits_from_urdf(urdf_path: str, joint_names: tuple[str, ...]) -> JointLimits:
    """Position and velocity limits of the named joints, in the given order, as the URDF declares."""
    return _limits_of(_load_reduced_model(urdf_path, joint_names), tuple(joint_names), urdf_path)


class PinocchioKinematics:
    """FK/IK of `ee_frame` relative to `base_frame` for the controlled `joint_names`."""

    def __init__(
        self,
        urdf_path: str,
        joint_names: tuple[str, ...],
        base_frame: str,
        ee_frame: str,
        *,
        max_iterations: int = 200,
        damping: float = 1e-2,
        position_tolerance: float = 1e-4,
        rotation_tolerance: float = 1e-3,
    ) -> None:
        self.joint_names = tuple(joint_names)
        self._model = _load_reduced_model(urdf_path, self.joint_names)
        self.limits = _limits_of(self._model, self.joint_names, urdf_path)
        self._data = self._model.createData()
        for frame in (base_frame, ee_frame):
            if not self._model.existFrame(frame):
                links = sorted(f.name for f in self._model.frames if f.type == pin.FrameType.BODY)
                raise KinematicsError(f"frame '{frame}' is not in the URDF (links: {links})")
        self._base_id = self._model.getFrameId(base_frame)
        self._ee_id = self._model.getFrameId(ee_frame)
        # q in the caller's joint order -> pinocchio configuration vector.
        joints = [self._model.joints[self._model.getJointId(n)] for n in self.joint_names]
        self._q_index = np.array([j.idx_q for j in joints])
        self._v_index = np.array([j.idx_v for j in joints])
        self._world_T_base = self._fixed_base_placement()
        self._max_iterations = max_iterations
        self._damping = damping
        self._position_tolerance = position_tolerance
        self._rotation_tolerance = rotation_tolerance

    def _to_model_q(self, q: np.ndarray) -> np.ndarray:
        qm = np.zeros(self._model.nq)
        qm[self._q_index] = q
        return qm

    def _fixed_base_placement(self) -> pin.SE3:
        placements = []
        for q in (self.limits.lower, self.limits.upper, 0.5 * (self.limits.lower + self.limits.upper)):
            pin.framesForwardKinematics(self._model, self._data, self._to_model_q(q))
            placements.append(self._data.oMf[self._base_id].copy())
        if any(not placements[0].isApprox(p, 1e-9) for p in placements[1:]):
            raise KinematicsError("base_frame moves with the controlled joints; use a frame upstream of them")
        return placements[0]

    def _ee_in_base(self, q: np.ndarray) -> pin.SE3:
        pin.framesForwardKinematics(self._model, self._data, self._to_model_q(q))
        return self._world_T_base.actInv(self._data.oMf[self._ee_id])

    def fk(self, q: np.ndarray) -> Pose:
        placement = self._ee_in_base(np.asarray(q, dtype=float))
        return Pose(placement.translation.copy(), placement.rotation.copy())

    def ik(self, target: Pose, seed: np.ndarray) -> IkResult:
        """Damped least squares on the SE(3) log error, projected onto the joint limits each step."""
        lo, hi = self.limits.lower, self.limits.upper
        rejected = reject_non_finite(target, seed, self.limits)
        if rejected is not None:
            return rejected
        goal = pin.SE3(np.asarray(target.rotation, dtype=float), np.asarray(target.position, dtype=float))
        q = np.clip(np.asarray(seed, dtype=float), lo, hi)
        eye6 = np.eye(6)
        pos_err = rot_err = np.inf
        for it in range(self._max_iterations + 1):
            current = self._ee_in_base(q)
            pos_err = float(np.linalg.norm(goal.translation - current.translation))
            rot_err = rotation_angle(current.rotation, goal.rotation)
            if pos_err <= self._position_tolerance and rot_err <= self._rotation_tolerance:
                return IkResult(q, True, pos_err, rot_err, it)
            if it == self._max_iterations:
                break
            # Error in the end-effector's local frame; the log-map Jacobian makes the step exact
            # to first order even for large errors.
            goal_in_ee = current.actInv(goal)
            err = pin.log6(goal_in_ee).vector
            q_model = self._to_model_q(q)
            jac = pin.computeFrameJacobian(self._model, self._data, q_model, self._ee_id, pin.LOCAL)
            jac = pin.Jlog6(goal_in_ee.inverse()) @ jac[:, self._v_index]
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self._damping**2 * eye6, err)
            q_next = np.clip(q + dq, lo, hi)
            if np.allclose(q_next, q, atol=1e-12, rtol=0.0):
                break
            q = q_next
        message = f"no solution within limits: {pos_err * 1000:.1f} mm, {rot_err:.3f} rad off"
        return IkResult(q, False, pos_err, rot_err, it, message)
