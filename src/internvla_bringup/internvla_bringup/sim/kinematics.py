"""Forward and inverse kinematics of the simulated arm from MuJoCo's own model and Jacobians.

The scripted expert needs IK that agrees exactly with the simulated robot, so it works on a
scratch ``MjData`` of the same model. Damped least squares with a null-space pull towards the
home posture keeps solutions smooth from one control step to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from internvla_bringup.sim.transforms import rotation_vector


@dataclass(frozen=True)
class IkResult:
    q: np.ndarray
    position_error: float  # metres
    rotation_error: float  # radians
    converged: bool


class ArmKinematics:
    """FK/IK of one kinematic chain (``joints``) to the tool body ``tcp_body``."""

    def __init__(
        self, model: mujoco.MjModel, joints: tuple[str, ...], tcp_body: str, home: np.ndarray
    ) -> None:
        self._model = model
        self._data = mujoco.MjData(model)
        self._qadr = np.array([model.joint(j).qposadr[0] for j in joints])
        self._dadr = np.array([model.joint(j).dofadr[0] for j in joints])
        self._body = model.body(tcp_body).id
        ranges = np.array([model.joint(j).range for j in joints])
        self.lower, self.upper = ranges[:, 0], ranges[:, 1]
        self.home = np.asarray(home, dtype=float)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def _set(self, q: np.ndarray, context_qpos: np.ndarray | None) -> None:
        if context_qpos is not None:
            self._data.qpos[:] = context_qpos
        self._data.qpos[self._qadr] = q
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_comPos(self._model, self._data)  # the Jacobians read cdof and subtree centres of mass

    def forward(self, q: np.ndarray, context_qpos: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Tool position (3,) and rotation matrix (3, 3) in the world (= robot base) frame."""
        self._set(np.asarray(q, dtype=float), context_qpos)
        return self._data.xpos[self._body].copy(), self._data.xmat[self._body].reshape(3, 3).copy()

    def solve(
        self,
        target_pos: np.ndarray,
        target_rot: np.ndarray,
        q_init: np.ndarray,
        context_qpos: np.ndarray | None = None,
        iterations: int = 60,
        damping: float = 1e-3,
        posture_gain: float = 0.05,
    ) -> IkResult:
        """Joint positions reaching the target pose, starting from ``q_init``, within joint limits."""
        q = np.clip(np.asarray(q_init, dtype=float).copy(), self.lower, self.upper)
        if context_qpos is not None:
            self._data.qpos[:] = context_qpos
        n = len(q)
        for iteration in range(iterations + 1):
            self._set(q, None)
            e_pos = target_pos - self._data.xpos[self._body]
            e_rot = rotation_vector(target_rot @ self._data.xmat[self._body].reshape(3, 3).T)
            err_p, err_r = float(np.linalg.norm(e_pos)), float(np.linalg.norm(e_rot))
            if (err_p < 1e-4 and err_r < 1e-3) or iteration == iterations:
                break
            mujoco.mj_jacBody(self._model, self._data, self._jacp, self._jacr, self._body)
            jac = np.vstack([self._jacp[:, self._dadr], self._jacr[:, self._dadr]])
            jjt = jac @ jac.T + damping * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, np.concatenate([e_pos, e_rot]))
            null = np.eye(n) - jac.T @ np.linalg.solve(jjt, jac)
            dq += null @ (posture_gain * (self.home - q))
            step = np.max(np.abs(dq))
            if step > 0.3:  # keep each Newton step in the region where the linearisation holds
                dq *= 0.3 / step
            q = np.clip(q + dq, self.lower, self.upper)
        return IkResult(q, err_p, err_r, err_p < 2e-3 and err_r < 2e-2)
