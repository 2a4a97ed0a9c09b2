"""DINOv2 ViT written with the torch.hub module's parameter names, so released checkpoints load as-is.

Neither torchvision nor timm installs cleanly where this runs, and only inference is needed, so
this is the eval-mode subset of the hub model: no drop-path, no masking, no register tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

from .config import DINO_PATCH_SIZE as PATCH_SIZE
from .config import TransformerSize
from .layers import Attention, Mlp

HUB_IMAGE_SIZE = 518  # the hub models are built for 518 px, hence a 37x37 position grid
INTERPOLATE_OFFSET = 0.1  # hub default; it shifts the bicubic scale factor, so it changes the numbers
LAYER_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class LayerScale(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = Attention(width, heads)
        self.ls1 = LayerScale(width)
        self.norm2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(width)
        self.ls2 = LayerScale(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """The hub ``DinoVisionTransformer``; ``depth`` may be below the variant's (fixtures keep fewer)."""

    def __init__(self, size: TransformerSize, depth: int) -> None:
        super().__init__()
        grid = HUB_IMAGE_SIZE // PATCH_SIZE
        self.cls_token = nn.Parameter(torch.zeros(1, 1, size.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, size.width))
        self.mask_token = nn.Parameter(torch.zeros(1, size.width))  # training-only, kept for the key layout
        self.patch_embed = PatchEmbed(size.width)
        self.blocks = nn.ModuleList(Block(size.width, size.heads) for _ in range(depth))
        self.norm = nn.LayerNorm(size.width, eps=LAYER_NORM_EPS)

    def interpolate_pos_encoding(self, rows: int, cols: int) -> torch.Tensor:
        """Resample the 37x37 position grid to ``rows`` x ``cols`` patches, exactly as the hub code does."""
        stored = self.pos_embed
        grid = int(math.sqrt(stored.shape[1] - 1))
        if rows == cols == grid:
            return stored
        table = stored.float()
        width = table.shape[-1]
        patch_table = table[:, 1:].reshape(1, grid, grid, width).permute(0, 3, 1, 2)
        # The hub passes a scale factor (with a 0.1 offset), not a size: the sampling positions differ.
        patch_table = functional.interpolate(
            patch_table,
            scale_factor=((rows + INTERPOLATE_OFFSET) / grid, (cols + INTERPOLATE_OFFSET) / grid),
            mode="bicubic",
            antialias=False,
        )
        patch_table = patch_table.permute(0, 2, 3, 1).reshape(1, rows * cols, width)
        return torch.cat([table[:, :1], patch_table], dim=1).to(stored.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``x_norm_patchtokens`` [N, rows*cols, width] of images [N, 3, H, W] (sides multiples of 14)."""
        rows, cols = images.shape[-2] // PATCH_SIZE, images.shape[-1] // PATCH_SIZE
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.interpolate_pos_encoding(rows, cols)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1:]


class DinoEncoder(nn.Module):
    """Upstream's ``dino_encoder``: the hub model lives under ``body`` in the state dict."""

    def __init__(self, size: TransformerSize, depth: int) -> None:
        super().__init__()
        self.body = DinoVisionTransformer(size, depth)
        self.num_channels = size.width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)
