"""PIL's uint8 resampling, reproduced bit for bit as two integer matrix products that run on any device.

The reference path resizes camera frames with ``PIL.Image.resize`` on the CPU. Doing the same on the
GPU with ``torch.nn.functional.interpolate`` would be close but not equal, and a one-level pixel
difference moves the normalised actions by far more than the 1e-5 the float32 fast path must agree to.
So the filter taps are computed the way Pillow's ``Resample.c`` computes them (double-precision
weights, normalised, then rounded to 22-bit fixed point), and each pass is applied as a float64
matrix product: every term is an integer below 2**53, so the sums are exact and the rounding to uint8
matches Pillow's. (A dense product does more multiplications than Pillow's few taps per pixel, but
runs as one call that takes microseconds on a GPU. On the CPU the resize is left to Pillow itself.)

Which pass runs first matters too (each pass rounds to uint8). Pillow always ran the horizontal pass
first until it learned to run the vertical one first when the height shrinks by more than twice what
the width does; which behaviour the installed Pillow has is found out once by a probe resize.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from PIL import Image

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit images
BICUBIC_A = -0.5


def _bicubic(x: float) -> float:
    x = abs(x)
    if x < 1.0:
        return ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * BICUBIC_A
    return 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


FILTERS: dict[Image.Resampling, tuple[Callable[[float], float], float]] = {
    Image.Resampling.BICUBIC: (_bicubic, 2.0),
    Image.Resampling.BILINEAR: (_bilinear, 1.0),
}


def fixed_point_taps(in_size: int, out_size: int, resample: Image.Resampling) -> np.ndarray:
    """The [out_size, in_size] integer tap matrix Pillow uses along one axis (as float64)."""
    kernel, base_support = FILTERS[resample]
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = base_support * filter_scale
    taps = np.zeros((out_size, in_size), dtype=np.float64)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        weights = [kernel((x - center + 0.5) / filter_scale) for x in range(first, last)]
        total = sum(weights)
        for offset, weight in enumerate(weights):
            normalised = weight / total if total != 0.0 else weight
            scaled = normalised * (1 << PRECISION_BITS)
            taps[out, first + offset] = math.trunc(scaled - 0.5 if normalised < 0 else scaled + 0.5)
    return taps


@dataclass(frozen=True)
class Resize:
    """One ``PIL.Image.resize`` of a fixed (width, height) to another, on uint8 [H, W, 3] tensors.

    On a GPU: a horizontal and a vertical pass in the order the installed Pillow uses, each skipped when
    that side keeps its size (as Pillow does). On the CPU, where the frames already are, Pillow itself.
    """

    target: tuple[int, int]
    resample: Image.Resampling
    rows: torch.Tensor | None
    """[out_h, in_h] taps of the vertical pass, or None."""
    cols: torch.Tensor | None
    """[out_w, in_w] taps of the horizontal pass, or None."""
    vertical_first: bool = False

    @classmethod
    def build(
        cls,
        source: tuple[int, int],
        target: tuple[int, int],
        resample: Image.Resampling,
        device: torch.device,
    ) -> Resize:
        (in_w, in_h), (out_w, out_h) = source, target

        def taps(size_in: int, size_out: int) -> torch.Tensor | None:
            if size_in == size_out:
                return None
            return torch.from_numpy(fixed_point_taps(size_in, size_out, resample)).to(device)

        shrink_h, shrink_w = in_h - out_h, in_w - out_w
        vertical_first = pillow_runs_vertical_first() and shrink_h > 0 and shrink_h > 2 * shrink_w
        return cls(target, resample, taps(in_h, out_h), taps(in_w, out_w), vertical_first)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """[H, W, 3] uint8 -> the resized [h, w, 3] uint8 image."""
        if self.rows is None and self.cols is None:
            return pixels
        if pixels.device.type == "cpu":
            return torch.from_numpy(
                np.array(Image.fromarray(pixels.numpy()).resize(self.target, self.resample))
            )
        return self.with_taps(pixels)

    def with_taps(self, pixels: torch.Tensor) -> torch.Tensor:
        """The GPU formulation on any device (the tests run it on the CPU against Pillow)."""
        values = pixels.to(torch.float64)
        passes = (
            (self._vertical, self._horizontal) if self.vertical_first else (self._horizontal, self._vertical)
        )
        for one_pass in passes:
            values = one_pass(values)
        return values.to(torch.uint8)

    def _horizontal(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.cols is None:
            return pixels
        return _round_to_uint8(torch.einsum("ow,hwc->hoc", self.cols, pixels))

    def _vertical(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.rows is None:
            return pixels
        return _round_to_uint8(torch.einsum("oh,hwc->owc", self.rows, pixels))


def _round_to_uint8(sums: torch.Tensor) -> torch.Tensor:
    """Pillow's ``clip8``: add half a unit, drop the fraction bits, clamp to 0..255 (kept as float64)."""
    return torch.floor((sums + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)).clamp_(0, 255)


PROBE_SOURCE = (24, 96)  # (width, height): the height shrinks by far more than twice the width
PROBE_TARGET = (20, 30)


@cache
def pillow_runs_vertical_first() -> bool:
    """Whether the installed Pillow runs the vertical pass first for strongly height-reducing resizes.

    The probe image is one where the two pass orders give different pixels, so the answer is certain.
    """
    image = np.random.default_rng(0).integers(0, 256, (*PROBE_SOURCE[::-1], 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize(PROBE_TARGET, Image.Resampling.BICUBIC))
    taps = [
        torch.from_numpy(fixed_point_taps(PROBE_SOURCE[axis], PROBE_TARGET[axis], Image.Resampling.BICUBIC))
        for axis in (1, 0)
    ]
    probe = Resize(PROBE_TARGET, Image.Resampling.BICUBIC, *taps, vertical_first=True)
    return bool((probe.with_taps(torch.from_numpy(image)).numpy() == expected).all())
