"""The fast path's device preprocessing and static vision encoder against PIL, the Qwen processor,
the DINO path and transformers' encoder: equal to the last bit where the arithmetic allows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from internvla_policy.model import InternVLAM1
from internvla_policy.model.fast.pixels import FramePipeline
from internvla_policy.model.fast.resample import Resize, pillow_runs_vertical_first
from internvla_policy.model.fast.vision import StaticVisionTower
from internvla_policy.model.preprocessing import dino_resize, dino_tensor, resize_to

CPU = torch.device("cpu")


def test_resize_is_bit_exact_with_pillow() -> None:
    rng = np.random.default_rng(0)
    shapes = [((480, 640), (224, 224)), ((224, 224), (224, 224)), ((97, 3), (40, 400)), ((700, 50), (20, 45))]
    shapes += [(tuple(rng.integers(2, 500, 2)), tuple(rng.integers(2, 400, 2))) for _ in range(60)]
    for index, ((height, width), (out_h, out_w)) in enumerate(shapes):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for resample in (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR):
            expected = np.asarray(Image.fromarray(image).resize((int(out_w), int(out_h)), resample))
            resize = Resize.build((int(width), int(height)), (int(out_w), int(out_h)), resample, CPU)
            pixels = torch.from_numpy(image)
            for got in (resize.with_taps(pixels), resize(pixels)):  # the GPU formulation, then the CPU one
                assert got.dtype == torch.uint8
                np.testing.assert_array_equal(got.numpy(), expected, err_msg=f"shape {index}")


def test_pass_order_probe_is_decisive() -> None:
    """The probe case is one where the two pass orders differ, so the detected order is certain."""
    resize = Resize.build((24, 96), (20, 30), Image.Resampling.BICUBIC, CPU)
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (96, 24, 3), dtype=np.uint8))
    swapped = dataclasses.replace(resize, vertical_first=not resize.vertical_first)
    assert resize.vertical_first == pillow_runs_vertical_first()
    assert not torch.equal(resize.with_taps(image), swapped.with_taps(image))


@pytest.mark.parametrize(
    ("sizes", "image_size"),
    [
        ([[(640, 480)]], (224, 224)),
        ([[(320, 256), (333, 211)]], None),
        ([[(640, 480)], [(256, 320)]], (224, 224)),
    ],
    ids=["vga-to-224", "two-views-own-size", "batch-of-two"],
)
def test_frame_pipeline_equals_processor_and_dino_path(
    tiny_model: InternVLAM1, sizes: list[list[tuple[int, int]]], image_size: tuple[int, int] | None
) -> None:
    rng = np.random.default_rng(1)
    frames = [[rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in sample] for sample in sizes]
    processor = tiny_model.processor
    with_dino = image_size is not None
    pipeline = FramePipeline(
        sizes,
        image_size,
        processor,
        dino_short_side=224 if with_dino else None,
        device=CPU,
        dtype=torch.float32,
    )
    pixels, dino = pipeline([torch.from_numpy(frame) for sample in frames for frame in sample])
    images = [[Image.fromarray(frame) for frame in sample] for sample in frames]
    if image_size:
        images = [[resize_to(view, image_size) for view in sample] for sample in images]
    encoded = processor.encode(
        [[processor.fit(view) for view in sample] for sample in images], ["x"] * len(images)
    )
    assert torch.equal(pixels, encoded["pixel_values"])
    assert torch.equal(pipeline.grid_thw, encoded["image_grid_thw"])
    if with_dino:
        assert torch.equal(dino, dino_tensor([dino_resize(view) for sample in images for view in sample]))
    else:
        assert dino is None


def test_views_reaching_dino_at_different_sizes_are_refused(tiny_model: InternVLAM1) -> None:
    with pytest.raises(ValueError, match="all views must reach DINO at one size"):
        FramePipeline(
            [[(320, 256), (333, 211)]],
            None,
            tiny_model.processor,
            dino_short_side=224,
            device=CPU,
            dtype=torch.float32,
        )


@pytest.mark.parametrize("sizes", [[(224, 224)], [(644, 476)], [(224, 224), (308, 252)]], ids=str)
def test_static_vision_tower_equals_transformers(
    tiny_model: InternVLAM1, sizes: list[tuple[int, int]]
) -> None:
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    encoded = tiny_model.processor.encode([images], ["x"])
    visual = tiny_model.qwen_vl_interface.model.model.visual
    with torch.inference_mode():
        expected = visual(encoded["pixel_values"], grid_thw=encoded["image_grid_thw"]).pooler_output
        got = StaticVisionTower(visual, encoded["image_grid_thw"])(encoded["pixel_values"])
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
