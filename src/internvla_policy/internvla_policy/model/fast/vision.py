"""Qwen2.5-VL's vision encoder for a fixed set of image grids, with nothing left to work out per call.

transformers' encoder recomputes, on every call, the rotary angles, the window permutation and the
attention segment boundaries from ``grid_thw`` (Python loops, ``.tolist()``), and its SDPA attention
splits the tokens into one call per window after reading the boundaries back to the host. Those
host round trips make it impossible to capture in a CUDA graph and slow it down eagerly. For a fixed
grid all of that is constant: here it is computed once with transformers' own helpers, and each
block's attention over its segments (windows, or whole images in the full-attention blocks) runs as
one batched call (``Segments``). The block weights are the model's own modules; only the attention
wiring is re-done.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn import functional
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids, get_vision_window_index


class Segments:
    """Attention restricted to consecutive token segments (windows, or whole images), run as one batched
    SDPA call: each segment's tokens are gathered into a row padded to the longest segment, padded keys
    are masked, and the outputs are put back in token order. Per segment this is the same computation
    as transformers' one call per segment, without the host round trip and without the N x N work a
    block-diagonal mask over all tokens would cost on large images."""

    def __init__(self, boundaries: torch.Tensor, length: int, device: torch.device) -> None:
        bounds = [int(b) for b in boundaries.tolist()]
        spans = [(start, end) for start, end in itertools.pairwise(bounds) if end > start]
        if not spans or spans[0][0] != 0 or spans[-1][1] != length:
            raise RuntimeError(f"attention segments {bounds} do not cover the {length} tokens")
        longest = max(end - start for start, end in spans)
        offsets = torch.arange(longest)
        starts = torch.tensor([start for start, _ in spans])[:, None]
        ends = torch.tensor([end for _, end in spans])[:, None]
        valid = starts + offsets < ends  # [segments, longest]
        self.gather = torch.where(valid, starts + offsets, length).to(device)  # index `length`: a zero row
        self.valid_rows = valid.reshape(-1).nonzero().squeeze(1).to(device)
        self.key_mask = None if bool(valid.all()) else valid[:, None, None, :].to(device)
        self.single = len(spans) == 1

    def attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """[N, heads, dim] each -> [N, heads, dim]."""
        if self.single:  # batched 4-D, as SDPA's fused kernels want
            out = functional.scaled_dot_product_attention(
                *(states.transpose(0, 1)[None] for states in (query, key, value)), scale=scale
            )
            return out[0].transpose(0, 1)
        batched = [self._rows(states) for states in (query, key, value)]
        out = functional.scaled_dot_product_attention(*batched, attn_mask=self.key_mask, scale=scale)
        return out.transpose(1, 2).reshape(-1, *query.shape[1:])[self.valid_rows]

    def _rows(self, states: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([states, states.new_zeros(1, *states.shape[1:])])
        return padded[self.gather].transpose(1, 2)  # [segments, heads, longest, dim]


class StaticVisionTower:
    """Runs ``visual`` (a ``Qwen2_5_VisionTransformerPretrainedModel``) on pixel patches of the grids
    given at construction; returns the merged image features in the processor's token order."""

    def __init__(self, visual: nn.Module, grid_thw: torch.Tensor) -> None:
        config = visual.config
        device = visual.patch_embed.proj.weight.device
        grid = grid_thw.to(torch.long).cpu()
        self.visual = visual
        self.unit = visual.spatial_merge_unit
        position_ids = get_vision_position_ids(grid, visual.spatial_merge_size)
        window_index, window_bounds = get_vision_window_index(
            grid,
            spatial_merge_size=visual.spatial_merge_size,
            window_size=visual.window_size,
            patch_size=visual.patch_size,
        )
        self.length = int(position_ids.shape[0])
        self.window_index = window_index.to(device)
        self.reverse_index = torch.argsort(window_index).to(device)
        anchor = torch.empty(0, device=device)
        with torch.no_grad():
            cos, sin = visual.rotary_pos_emb(anchor, position_ids.to(device))
        self.cos, self.sin = (self._window_order(table) for table in (cos, sin))
        full = Segments(get_vision_cu_seqlens(grid), self.length, device)
        windows = Segments(window_bounds, self.length, device)
        full_blocks = set(config.fullatt_block_indexes)
        self.segments = [full if i in full_blocks else windows for i in range(len(visual.blocks))]

    def _window_order(self, rows: torch.Tensor) -> torch.Tensor:
        """Reorder per-patch rows into window order (whole 2x2 merge groups move together)."""
        grouped = rows.reshape(self.length // self.unit, self.unit, -1)
        return grouped[self.window_index].reshape(self.length, -1)

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[patches, 1176] -> [merged tokens, out_hidden] in the order the prompt's image tokens have."""
        hidden = self._window_order(self.visual.patch_embed(pixel_values))
        for block, segments in zip(self.visual.blocks, self.segments, strict=True):
            hidden = hidden + self._attention(block.attn, block.norm1(hidden), segments)
            hidden = hidden + block.mlp(block.norm2(hidden))
        return self.visual.merger(hidden)[self.reverse_index]

    def _attention(self, attn: nn.Module, hidden: torch.Tensor, segments: Segments) -> torch.Tensor:
        length = hidden.shape[0]
        qkv = attn.qkv(hidden).reshape(length, 3, attn.num_heads, -1).permute(1, 0, 2, 3)
        query, key = apply_rotary_pos_emb_vision(qkv[0], qkv[1], self.cos, self.sin)
        out = segments.attend(query, key, qkv[2], attn.scaling)
        return attn.proj(out.reshape(length, -1))
