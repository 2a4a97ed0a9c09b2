"""Qwen2.5-VL's vision encoder for a fixed set of image grids, with nothing left to work out per call.

transformers' encoder recomputes, on every call, the rotary angles, the window permutation and the
attention segment boundaries from ``grid_thw`` (Python loops, ``.tolist()``), and its SDPA attention
splits the tokens into one call per window after reading the boundaries back to the host. Those
host round trips make it impossible to capture in a CUDA graph and slow it down eagerly. For a fixed
grid all of that is constant: here it is computed once with transformers' own helpers, and each
block's attention runs as one SDPA call with a block-diagonal mask (one segment per window, or per
image in the full-attention blocks), which is the same arithmetic as the per-window calls.
The block weights are the model's own modules; only the attention wiring is re-done.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids, get_vision_window_index


def segment_mask(boundaries: torch.Tensor, length: int, device: torch.device) -> torch.Tensor | None:
    """[1, 1, N, N] boolean mask letting each token attend within its segment; None for one segment."""
    bounds = boundaries.tolist()
    if len(bounds) <= 2:
        return None
    segment = torch.repeat_interleave(
        torch.arange(len(bounds) - 1), torch.tensor([end - start for start, end in zip(bounds, bounds[1:])])
    )
    if segment.numel() != length:
        raise RuntimeError(f"attention segments cover {segment.numel()} tokens, expected {length}")
    same = segment[:, None] == segment[None, :]
    return same.to(device)[None, None]


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
        full_mask = segment_mask(get_vision_cu_seqlens(grid), self.length, device)
        window_mask = segment_mask(window_bounds, self.length, device)
        full_blocks = set(config.fullatt_block_indexes)
        self.masks = [full_mask if i in full_blocks else window_mask for i in range(len(visual.blocks))]

    def _window_order(self, rows: torch.Tensor) -> torch.Tensor:
        """Reorder per-patch rows into window order (whole 2x2 merge groups move together)."""
        grouped = rows.reshape(self.length // self.unit, self.unit, -1)
        return grouped[self.window_index].reshape(self.length, -1)

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[patches, 1176] -> [merged tokens, out_hidden] in the order the prompt's image tokens have."""
        hidden = self._window_order(self.visual.patch_embed(pixel_values))
        for block, mask in zip(self.visual.blocks, self.masks, strict=True):
            hidden = hidden + self._attention(block.attn, block.norm1(hidden), mask)
            hidden = hidden + block.mlp(block.norm2(hidden))
        return self.visual.merger(hidden)[self.reverse_index]

    def _attention(self, attn: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        length = hidden.shape[0]
        query, key, value = (
            attn.qkv(hidden).reshape(length, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        )
        query, key = apply_rotary_pos_emb_vision(query, key, self.cos, self.sin)
        query, key, value = (states.transpose(0, 1).unsqueeze(0) for states in (query, key, value))
        out = functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=attn.scaling)
        return attn.proj(out.squeeze(0).transpose(0, 1).reshape(length, -1))
