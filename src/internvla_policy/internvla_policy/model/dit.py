"""The DiT action head (``action_model.net``): a plain pre-LN transformer over condition + action tokens.

Not the adaLN DiT: the diffusion timestep embedding is added to each of the Q-Former's condition
tokens, which are prepended to the embedded noisy actions; a learned position table covers both.
Parameter names follow upstream (CogACT's DiT with timm's Attention and Mlp).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TransformerSize
from .layers import Attention, Mlp

TIMESTEP_FREQUENCIES = 256
MAX_PERIOD = 10000
LAYER_NORM_EPS = 1e-6


def timestep_embedding(timesteps: torch.Tensor, dim: int = TIMESTEP_FREQUENCIES) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of integer timesteps, cosines first (upstream's order)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(TIMESTEP_FREQUENCIES, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(timesteps).to(self.mlp[0].weight.dtype))


class ActionEmbedder(nn.Module):
    def __init__(self, action_dim: int, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(action_dim, width)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        return self.linear(actions)


class ConditionEmbedder(nn.Module):
    """Projects the condition tokens; ``uncondition`` is the learned "no condition" for guidance."""

    def __init__(self, num_tokens: int, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.uncondition = nn.Parameter(torch.zeros(num_tokens, width))

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.linear(condition)


class DiTBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=LAYER_NORM_EPS)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(width, gelu="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FinalLayer(nn.Module):
    def __init__(self, width: int, action_dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False, eps=LAYER_NORM_EPS)
        self.linear = nn.Linear(width, action_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm_final(x))


class DiT(nn.Module):
    """Predicts the diffusion noise of an action chunk given condition tokens."""

    def __init__(
        self, size: TransformerSize, action_dim: int, horizon: int, num_condition_tokens: int
    ) -> None:
        super().__init__()
        self.horizon = horizon
        self.x_embedder = ActionEmbedder(action_dim, size.width)
        # Upstream builds a history embedder but never calls it; it is kept so the keys match.
        self.history_embedder = ActionEmbedder(action_dim, size.width)
        self.t_embedder = TimestepEmbedder(size.width)
        self.z_embedder = ConditionEmbedder(num_condition_tokens, size.width)
        self.positional_embedding = nn.Parameter(torch.zeros(num_condition_tokens + horizon, size.width))
        self.blocks = nn.ModuleList(DiTBlock(size.width, size.heads) for _ in range(size.depth))
        self.final_layer = FinalLayer(size.width, action_dim)

    def forward(
        self, actions: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        """actions [B, horizon, A], timesteps [B] (original diffusion indices), condition [B, Q, W] -> eps."""
        context = self.t_embedder(timesteps)[:, None, :] + self.z_embedder(condition)
        x = torch.cat([context, self.x_embedder(actions)], dim=1) + self.positional_embedding
        for block in self.blocks:
            x = block(x)
        return self.final_layer(x)[:, -self.horizon :]


class ActionModel(nn.Module):
    """Upstream's ``action_model`` wrapper: only ``net`` has weights; the sampler lives in diffusion.py."""

    def __init__(
        self, size: TransformerSize, action_dim: int, horizon: int, num_condition_tokens: int
    ) -> None:
        super().__init__()
        self.net = DiT(size, action_dim, horizon, num_condition_tokens)
