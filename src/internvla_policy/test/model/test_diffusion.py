"""DDIM respacing rule and the noise schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from internvla_policy.model.diffusion import (
    ddim_sample,
    ddim_schedule,
    ddim_timesteps,
    guided_eps_fn,
    squaredcos_cap_v2_betas,
)


def test_upstream_respacing_rule() -> None:
    assert ddim_timesteps(100, 10) == list(range(0, 100, 10))
    assert ddim_timesteps(100, 5) == list(range(0, 100, 20))
    assert ddim_timesteps(100, 3) == [0, 34, 68]
    assert ddim_timesteps(100, 100) == list(range(100))
    with pytest.raises(ValueError, match="nearest valid counts: 10, 12"):
        ddim_timesteps(100, 11)


def test_cosine_schedule() -> None:
    betas = squaredcos_cap_v2_betas(100)
    assert betas.dtype == np.float64 and betas.shape == (100,)
    assert np.all(np.diff(betas) > 0) and betas[-1] == 0.999  # capped
    schedule = ddim_schedule(100, 10)
    assert schedule.timesteps == tuple(range(0, 100, 10))
    assert schedule.alphas_cumprod_prev[0] == 1.0
    np.testing.assert_allclose(
        1.0 / schedule.sqrt_recip_alphas_cumprod**2,
        np.cumprod(1.0 - betas)[list(schedule.timesteps)],
        rtol=1e-12,
    )


def test_last_step_returns_the_clean_sample_prediction() -> None:
    """With a noise predictor that knows the true noise, DDIM lands exactly on the clean sample."""
    clean = torch.linspace(-1, 1, 2 * 16 * 7).reshape(2, 16, 7)
    noise = torch.randn(2, 16, 7, generator=torch.Generator().manual_seed(0))
    schedule = ddim_schedule(100, 10)
    alpha_bar = float(1.0 / schedule.sqrt_recip_alphas_cumprod[-1] ** 2)
    start = np.sqrt(alpha_bar) * clean + np.sqrt(1 - alpha_bar) * noise

    def true_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        index = schedule.timesteps.index(int(t[0]))
        a = float(1.0 / schedule.sqrt_recip_alphas_cumprod[index] ** 2)
        return (x - np.sqrt(a) * clean) / np.sqrt(1 - a)

    np.testing.assert_allclose(
        ddim_sample(true_eps, start.float(), schedule).numpy(), clean.numpy(), atol=1e-4
    )


def test_guidance_mixes_condition_and_uncondition() -> None:
    calls = []

    def net(x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return z[:, :1, :1].expand(-1, x.shape[1], x.shape[2]) + 0 * x

    x, t = torch.zeros(3, 16, 7), torch.zeros(3, dtype=torch.long)
    cond, uncond = torch.full((3, 4, 5), 2.0), torch.full((3, 4, 5), 1.0)
    guided = guided_eps_fn(net, cond, uncond, 1.5)(x, t)
    np.testing.assert_allclose(guided.numpy(), 1.0 + 1.5 * (2.0 - 1.0))
    np.testing.assert_allclose(guided_eps_fn(net, cond, None, 1.5)(x, t).numpy(), 2.0)
    assert calls == [6, 3]
