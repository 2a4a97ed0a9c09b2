"""Layer-wise Q-Former: learned queries read the selected VLM hidden states plus the DINO tokens.

Inference-only port of upstream's ``LayerwiseQFormer``: dropout is left out (it is inactive in
eval mode) and, as upstream, there is no key padding mask, so a left-padded sample's pad
positions are attended to. Keeping that is what makes batched outputs match the original.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossAttentionBlock(nn.Module):
    """Pre-norm on the queries only; the keys and values are the projected features as they are."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(embed_dim=width, num_heads=heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, query: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        attended, _ = self.cross_attn(self.norm1(query), features, features, need_weights=False)
        query = query + attended
        return query + self.mlp(self.norm2(query))


class LayerwiseQFormer(nn.Module):
    """One cross-attention block per selected VLM layer; the queries carry from block to block."""

    def __init__(self, input_dim: int, width: int, num_queries: int, num_layers: int, heads: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, width)
        self.query_tokens = nn.Parameter(torch.zeros(num_queries, width))
        self.layers = nn.ModuleList(CrossAttentionBlock(width, heads) for _ in range(num_layers))

    def forward(self, layer_features: list[torch.Tensor]) -> torch.Tensor:
        """Map per-layer features [B, L, input_dim] (one per block) to condition tokens [B, Q, width]."""
        if len(layer_features) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} feature layers, got {len(layer_features)}")
        projected = self.proj(torch.stack(layer_features, dim=1)).unbind(dim=1)
        query = self.query_tokens.unsqueeze(0).expand(projected[0].shape[0], -1, -1)
        for block, features in zip(self.layers, projected, strict=True):
            query = block(query, features)
        return query
