"""Input checking and the image paths upstream's ``predict_action`` takes before the two encoders.

Upstream leans on torchvision for the DINO branch; its PIL behaviour (``Resize(224)``, ``ToTensor``,
``Normalize``) is reproduced here so outputs match without torchvision installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from .config import DINO_SHORT_SIDE
from .dinov2 import PATCH_SIZE

ImageLike = np.ndarray | Image.Image
T = TypeVar("T")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def as_rgb_image(image: ImageLike, where: str) -> Image.Image:
    """Accept a uint8 RGB array (H, W, 3) or a PIL image (converted to RGB); ``where`` names it in errors."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    return Image.fromarray(as_rgb_array(image, where))


def as_rgb_array(image: ImageLike, where: str) -> np.ndarray:
    """The same check as :func:`as_rgb_image`, giving a uint8 (H, W, 3) array: arrays pass without a copy,
    which the fast path wants for camera frames it sends straight to the device."""
    if isinstance(image, Image.Image):
        return np.asarray(as_rgb_image(image, where))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise ValueError(
                f"{where}: expected a uint8 RGB array of shape (H, W, 3), "
                f"got a {image.dtype} array of shape {image.shape}"
            )
        return image
    raise ValueError(
        f"{where}: expected a uint8 (H, W, 3) numpy array or a PIL image, got {type(image).__name__}"
    )


def as_image_batch(
    batch_images: Sequence[Sequence[ImageLike]],
    instructions: Sequence[str],
    convert: Callable[[ImageLike, str], T] = as_rgb_image,
) -> list[list[T]]:
    """Check a batch (per sample, per camera view) against its instructions and convert each view with
    ``convert`` (to RGB PIL by default)."""
    if isinstance(instructions, str) or not isinstance(instructions, Sequence):
        raise ValueError("instructions: expected a list of strings, one per sample")
    if len(batch_images) != len(instructions) or not instructions:
        raise ValueError(
            f"expected one list of camera views per instruction, got {len(batch_images)} samples "
            f"for {len(instructions)} instructions"
        )
    batch = []
    for b, (views, instruction) in enumerate(zip(batch_images, instructions, strict=True)):
        if not isinstance(instruction, str):
            raise ValueError(f"instruction {b}: expected a string, got {type(instruction).__name__}")
        if isinstance(views, np.ndarray | Image.Image) or not views:
            raise ValueError(f"sample {b}: expected a non-empty list of camera views")
        batch.append([convert(view, f"sample {b} view {v}") for v, view in enumerate(views)])
    return batch


def resize_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """PIL resize to (width, height) with PIL's default filter for RGB, as upstream's ``img.resize``."""
    return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def dino_resize(image: Image.Image, short_side: int = DINO_SHORT_SIDE) -> Image.Image:
    """torchvision ``Resize(224)`` on PIL (shorter side 224, longer ``int(224*long/short)``, bilinear).

    ``short_side`` replaces 224 for small models whose config sets ``framework.dino.short_side``.

    Upstream crashes when the longer side does not come out a multiple of the 14 px patch (a 480x640
    view gives 224x298). Here that side is centre-cropped to the multiple below (298 -> 294, 2 px off
    each edge): the pixel scale and aspect ratio DINO was trained on are kept and at most 13 px go.
    """
    size, box = dino_geometry(image.size, short_side)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    if box != (0, 0, *size):
        image = image.crop(box)
    return image


def dino_geometry(
    size: tuple[int, int], short_side: int = DINO_SHORT_SIDE
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """What :func:`dino_resize` does to an image of ``size`` (w, h): the size it resizes to, and the crop
    box (left, top, right, bottom) that keeps whole patches (the full image when nothing is cut)."""
    width, height = size
    short, long = min(width, height), max(width, height)
    new_long = int(short_side * long / short)
    resized = (short_side, new_long) if width <= height else (new_long, short_side)
    crop_w, crop_h = resized[0] - resized[0] % PATCH_SIZE, resized[1] - resized[1] % PATCH_SIZE
    left, top = (resized[0] - crop_w) // 2, (resized[1] - crop_h) // 2
    return resized, (left, top, left + crop_w, top + crop_h)


def dino_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """Same-size RGB images -> [N, 3, H, W] float32, scaled to [0, 1] then ImageNet-normalised."""
    pixels = torch.from_numpy(np.stack([np.asarray(image) for image in images])).permute(0, 3, 1, 2)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[None, :, None, None]
    return (pixels.to(torch.float32).div(255) - mean) / std
