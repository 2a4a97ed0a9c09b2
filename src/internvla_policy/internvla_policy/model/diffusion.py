"""Noise schedule, DDIM respacing and the deterministic DDIM sampler of the action head.

Numerics follow upstream's guided-diffusion code on purpose: the schedule is computed in float64
numpy and each coefficient is gathered as a float32 tensor before it touches the samples, and the
update is written in the same order. The normalized actions reach |x| of about 30, so a sloppier
port drifts past the 1e-4 agreement the reference fixtures allow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

MAX_BETA = 0.999

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squaredcos_cap_v2_betas(num_steps: int) -> np.ndarray:
    """Betas of the cosine schedule (``squaredcos_cap_v2``), float64."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array(
        [
            min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), MAX_BETA)
            for i in range(num_steps)
        ],
        dtype=np.float64,
    )


def ddim_timesteps(num_train_steps: int, count: int) -> list[int]:
    """The original timesteps upstream's ``ddim{count}`` respacing keeps: the first integer stride that
    gives exactly ``count`` steps (ddim10 over 100 steps keeps 0, 10, ..., 90)."""
    for stride in range(1, num_train_steps):
        steps = range(0, num_train_steps, stride)
        if len(steps) == count:
            return list(steps)
    valid = sorted({len(range(0, num_train_steps, s)) for s in range(1, num_train_steps)})
    below = max((v for v in valid if v < count), default=None)
    above = min((v for v in valid if v > count), default=None)
    nearest = ", ".join(str(v) for v in (below, above) if v is not None)
    raise ValueError(
        f"ddim_steps={count} cannot be laid on {num_train_steps} diffusion steps with an integer stride "
        f"(upstream's DDIM respacing rule); nearest valid counts: {nearest}"
    )


@dataclass(frozen=True)
class DdimSchedule:
    """Per respaced step (ascending): the original timestep and the float64 coefficients the update needs."""

    timesteps: tuple[int, ...]
    alphas_cumprod_prev: np.ndarray
    sqrt_recip_alphas_cumprod: np.ndarray
    sqrt_recipm1_alphas_cumprod: np.ndarray

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)


@lru_cache(maxsize=32)
def ddim_schedule(num_train_steps: int, count: int) -> DdimSchedule:
    """Respace the training schedule to ``count`` DDIM steps, recomputing the betas at the kept steps
    the way upstream's ``SpacedDiffusion`` does (so alphas_cumprod carry its float64 rounding)."""
    base = np.cumprod(1.0 - squaredcos_cap_v2_betas(num_train_steps), axis=0)
    kept = ddim_timesteps(num_train_steps, count)
    betas, last = [], 1.0
    for step in kept:
        betas.append(1 - base[step] / last)
        last = base[step]
    alphas_cumprod = np.cumprod(1.0 - np.array(betas, dtype=np.float64), axis=0)
    return DdimSchedule(
        timesteps=tuple(kept),
        alphas_cumprod_prev=np.append(1.0, alphas_cumprod[:-1]),
        sqrt_recip_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod),
        sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod - 1),
    )


def ddim_coefficients(schedule: DdimSchedule, device: torch.device) -> torch.Tensor:
    """[steps, 3] float32 on ``device``: per step sqrt(1/a), sqrt(1/a - 1) and the previous a, each
    rounded from float64 to float32 as upstream gathers them."""
    columns = (
        schedule.sqrt_recip_alphas_cumprod,
        schedule.sqrt_recipm1_alphas_cumprod,
        schedule.alphas_cumprod_prev,
    )
    table = np.stack(columns, axis=1)
    return torch.tensor(table, dtype=torch.float32, device=device)


def ddim_sample(
    eps_fn: EpsFn, noise: torch.Tensor, schedule: DdimSchedule, coefficients: torch.Tensor | None = None
) -> torch.Tensor:
    """Run DDIM (eta 0, no clipping) from ``noise``; ``eps_fn(x, t)`` gets the original timesteps.

    Unlike upstream, no noise is drawn per step (it is multiplied by sigma = 0 there), so the caller's
    random stream only moves by the initial noise. ``coefficients`` (from :func:`ddim_coefficients`,
    already on the device) keep the loop free of host-to-device copies, as CUDA graph capture needs.
    """
    x = noise
    if coefficients is None:
        coefficients = ddim_coefficients(schedule, x.device)
    for index in reversed(range(schedule.num_steps)):
        timesteps = torch.full((x.shape[0],), schedule.timesteps[index], dtype=torch.long, device=x.device)
        eps = eps_fn(x, timesteps)
        recip, recipm1, alpha_bar_prev = coefficients[index]
        pred_x0 = recip * x - recipm1 * eps
        eps = (recip * x - pred_x0) / recipm1
        x = pred_x0 * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev) * eps
    return x


def guided_eps_fn(
    net: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    condition: torch.Tensor,
    uncondition: torch.Tensor | None,
    cfg_scale: float,
) -> EpsFn:
    """Noise prediction with classifier-free guidance when ``uncondition`` is given.

    Upstream duplicates the samples and keeps both halves through the sampler; evaluating the net on
    [x; x] against [cond; uncond] and carrying one half gives the same numbers at half the DDIM work.
    The net runs in its own dtype; the sampler state stays float32.
    """
    dtype = condition.dtype

    def eps(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if uncondition is None:
            return net(x.to(dtype), timesteps, condition).float()
        both = net(
            torch.cat([x, x]).to(dtype),
            torch.cat([timesteps, timesteps]),
            torch.cat([condition, uncondition]),
        )
        cond, uncond = both.float().chunk(2)
        return uncond + cfg_scale * (cond - uncond)

    return eps
