"""Camera frames to both encoders' inputs on the device, for frames of known sizes.

The reference path runs PIL and the Qwen image processor on the CPU for every call. Here the same
arithmetic is laid out once per set of frame sizes (resize taps, patch order, normalisation
constants) and then runs on the device as a handful of tensor operations, so a call only copies
the raw uint8 frames over. Every step reproduces its reference counterpart exactly in float32:

- Qwen branch: resize to the config's ``image_size`` (PIL bicubic), then to the processor's
  ``smart_resize`` size (bicubic, skipped when already there); rescale in float64 and cast to
  float32, normalise with the CLIP mean/std, cut into 14 px patches in the 2x2 merge order with the
  frame repeated over the temporal patch (``Qwen2VLImageProcessorPil``).
- DINO branch: from the ``image_size`` frame, shorter side to 224 (PIL bilinear), centre crop to
  whole 14 px patches, /255, ImageNet mean/std (``preprocessing.dino_resize`` / ``dino_tensor``).

Constants (taps, means) are made on the device when the pipeline is built, so a call copies nothing
from the host and can be captured in a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, dino_geometry
from ..qwen import QwenProcessor
from .resample import Resize

Size = tuple[int, int]
"""(width, height), PIL's order."""


@dataclass(frozen=True)
class Crop:
    """A crop box (left, top, right, bottom) in pixels, applied to [H, W, C] tensors."""

    box: tuple[int, int, int, int]

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        left, top, right, bottom = self.box
        return pixels[top:bottom, left:right]

    @property
    def size(self) -> Size:
        left, top, right, bottom = self.box
        return (right - left, bottom - top)


class ViewPipeline:
    """Device preprocessing of one camera view of a fixed source size into the Qwen patches and,
    when ``dino_short_side`` is given, the DINO input."""

    def __init__(
        self,
        source: Size,
        image_size: Size | None,
        processor: QwenProcessor,
        *,
        dino_short_side: int | None,
        device: torch.device,
    ) -> None:
        bicubic = Image.Resampling.BICUBIC
        base = image_size or source
        self.fitted = processor.target_size(*base)
        self.to_base = Resize.build(source, base, bicubic, device)
        self.to_fitted = Resize.build(base, self.fitted, bicubic, device)
        self.dino: tuple[Resize, Crop] | None = None
        if dino_short_side is not None:
            scaled, box = dino_geometry(base, dino_short_side)
            self.dino = (Resize.build(base, scaled, Image.Resampling.BILINEAR, device), Crop(box))
        self.dino_mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device)
        self.dino_std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device)
        image_processor = processor.image_processor
        self.patch = image_processor.patch_size
        self.merge = image_processor.merge_size
        self.temporal = image_processor.temporal_patch_size
        self.rescale = float(image_processor.rescale_factor)
        self.mean = torch.tensor(image_processor.image_mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(image_processor.image_std, dtype=torch.float32, device=device)

    @property
    def grid(self) -> tuple[int, int, int]:
        """(t, h, w) patch grid of this view, as the processor's ``image_grid_thw`` row."""
        width, height = self.fitted
        return (1, height // self.patch, width // self.patch)

    def qwen_patches(self, base: torch.Tensor) -> torch.Tensor:
        """[H, W, 3] uint8 at ``image_size`` -> [h*w patches, 3*t*14*14] float32."""
        pixels = self.to_fitted(base)
        scaled = (pixels.to(torch.float64) * self.rescale).to(torch.float32)
        normalised = ((scaled - self.mean) / self.std).permute(2, 0, 1)
        channels, height, width = normalised.shape
        grid_h, grid_w = height // self.patch, width // self.patch
        patches = normalised.reshape(
            channels,
            grid_h // self.merge,
            self.merge,
            self.patch,
            grid_w // self.merge,
            self.merge,
            self.patch,
        ).permute(1, 4, 2, 5, 0, 3, 6)
        patches = patches.unsqueeze(5).expand(*patches.shape[:5], self.temporal, *patches.shape[5:])
        return patches.reshape(grid_h * grid_w, channels * self.temporal * self.patch * self.patch)

    def dino_pixels(self, base: torch.Tensor) -> torch.Tensor:
        """[H, W, 3] uint8 at ``image_size`` -> [3, h, w] float32 DINO input."""
        if self.dino is None:
            raise RuntimeError("this view pipeline was built without the DINO branch")
        resize, crop = self.dino
        pixels = crop(resize(base)).to(torch.float32).div(255)
        return ((pixels - self.dino_mean) / self.dino_std).permute(2, 0, 1)

    @property
    def dino_size(self) -> Size | None:
        return None if self.dino is None else self.dino[1].size


class FramePipeline:
    """All views of a batch (per sample, per view, fixed sizes): raw frames in, encoder inputs out."""

    def __init__(
        self,
        sources: Sequence[Sequence[Size]],
        image_size: Size | None,
        processor: QwenProcessor,
        *,
        dino_short_side: int | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.sources = [list(sample) for sample in sources]
        self.views = [
            ViewPipeline(size, image_size, processor, dino_short_side=dino_short_side, device=device)
            for sample in self.sources
            for size in sample
        ]
        self.dtype = dtype
        self.with_dino = dino_short_side is not None
        if self.with_dino and len({view.dino_size for view in self.views}) > 1:
            raise ValueError(
                "the fast path stacks every view for DINO, as upstream does, so all views must reach DINO at "
                f"one size; these give {sorted({view.dino_size for view in self.views})}. Resize the "
                "cameras to one size (or use a config with datasets.vla_data.image_size), or call "
                "InternVLAM1.predict_action, which accepts mixed sizes"
            )

    @property
    def grid_thw(self) -> torch.Tensor:
        return torch.tensor([view.grid for view in self.views], dtype=torch.long)

    @property
    def fitted_sizes(self) -> list[list[Size]]:
        """Per sample and view, the (w, h) Qwen sees: the prompt's image-token counts follow from it."""
        sizes = iter(view.fitted for view in self.views)
        return [[next(sizes) for _ in sample] for sample in self.sources]

    def __call__(self, frames: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Device uint8 frames [H, W, 3], flat in sample-then-view order -> (pixel_values, DINO input).

        pixel_values is [sum of patches, 1176] and the DINO input [B*V, 3, h, w], both in ``dtype``.
        """
        bases = [view.to_base(frame) for view, frame in zip(self.views, frames, strict=True)]
        patches = torch.cat([view.qwen_patches(base) for view, base in zip(self.views, bases, strict=True)])
        dino = None
        if self.with_dino:
            dino = torch.stack([view.dino_pixels(base) for view, base in zip(self.views, bases, strict=True)])
            dino = dino.to(self.dtype)
        return patches.to(self.dtype), dino
