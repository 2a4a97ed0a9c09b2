"""Transformer pieces shared by the DINOv2 encoder and the DiT action head.

Both upstream modules use timm-style blocks with the same parameter names (``qkv``, ``proj``,
``fc1``, ``fc2``), so one implementation serves both state dicts; they differ only in the
MLP's GELU (exact in DINOv2, tanh-approximated in the DiT).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, computed with SDPA."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))


class Mlp(nn.Module):
    """Two-layer 4x MLP; ``gelu`` is "none" (exact) or "tanh" (approximate)."""

    def __init__(self, width: int, gelu: str = "none") -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 4 * width)
        self.act = nn.GELU(approximate=gelu)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
