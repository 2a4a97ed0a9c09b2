"""predict_action and generate on the project's own tiny model: inputs, determinism, options, views."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from internvla_policy.model import InternVLAM1, unnormalize_actions
from internvla_policy.model.preprocessing import dino_resize

INSTRUCTION = "pick up the red block and place it in the bowl."


def test_prediction_shapes_units_and_timings(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    prediction = tiny_model.predict_action(
        [[rgb], [rgb[::-1].copy()]], [INSTRUCTION, "open the drawer."], seed=3
    )
    assert prediction.normalized.shape == (2, tiny_model.horizon, tiny_model.action_dim) == (2, 16, 7)
    assert prediction.normalized.dtype == np.float32 and prediction.actions.dtype == np.float64
    stats = tiny_model.norm_stats[prediction.unnorm_key]["action"]
    np.testing.assert_array_equal(prediction.actions, unnormalize_actions(prediction.normalized, stats))
    assert set(np.unique(prediction.actions[..., 6])) <= {0.0, 1.0}
    assert set(prediction.timings) == {"preprocess", "vlm", "dino", "qformer", "dit", "total"}
    assert all(value >= 0 for value in prediction.timings.values())
    assert not np.allclose(prediction.normalized[0], prediction.normalized[1])


def test_same_seed_same_chunk_and_generator_equivalent(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    first = tiny_model.predict_action([[rgb]], [INSTRUCTION], seed=11)
    again = tiny_model.predict_action([[rgb]], [INSTRUCTION], seed=11)
    via_generator = tiny_model.predict_action(
        [[rgb]], [INSTRUCTION], generator=torch.Generator().manual_seed(11)
    )
    other = tiny_model.predict_action([[rgb]], [INSTRUCTION], seed=12)
    np.testing.assert_array_equal(first.normalized, again.normalized)
    np.testing.assert_array_equal(first.normalized, via_generator.normalized)
    assert np.abs(first.normalized - other.normalized).max() > 1e-3


def test_global_rng_is_used_without_seed_or_generator(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    torch.manual_seed(5)
    from_global = tiny_model.predict_action([[rgb]], [INSTRUCTION])
    np.testing.assert_array_equal(
        from_global.normalized, tiny_model.predict_action([[rgb]], [INSTRUCTION], seed=5).normalized
    )


def test_pil_and_array_inputs_agree(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    from_array = tiny_model.predict_action([[rgb]], [INSTRUCTION], seed=1)
    from_pil = tiny_model.predict_action([[Image.fromarray(rgb)]], [INSTRUCTION], seed=1)
    np.testing.assert_array_equal(from_array.normalized, from_pil.normalized)


def test_guidance_and_step_count_are_honoured_on_every_call(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    def run(**kwargs: float) -> np.ndarray:
        return tiny_model.predict_action([[rgb]], [INSTRUCTION], seed=2, **kwargs).normalized

    guided, unguided = run(cfg_scale=1.5), run(cfg_scale=1.0)
    assert np.abs(guided - unguided).max() > 1e-3
    ten, five = run(ddim_steps=10), run(ddim_steps=5)
    assert np.abs(ten - five).max() > 1e-3  # upstream silently reused its first sampler here
    np.testing.assert_array_equal(run(ddim_steps=10), ten)


def test_ddim_step_count_without_integer_stride_is_refused(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="nearest valid counts: 10, 12"):
        tiny_model.predict_action([[rgb]], [INSTRUCTION], ddim_steps=11)


def test_batch_rows_match_single_samples(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    """Equal-length prompts need no padding, so batching must not change a sample's chunk."""
    other = np.ascontiguousarray(rgb[:, ::-1])
    batched = tiny_model.predict_action([[rgb], [other]], [INSTRUCTION] * 2, seed=9).normalized
    single = tiny_model.predict_action([[rgb]], [INSTRUCTION], seed=9).normalized  # noise = batch's first row
    np.testing.assert_allclose(batched[0], single[0], atol=1e-4, rtol=0)


def test_multi_view_samples(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    small = rgb[:120, :160].copy()
    prediction = tiny_model.predict_action([[rgb, small], [small, rgb]], [INSTRUCTION] * 2, seed=4)
    single_view = tiny_model.predict_action([[rgb], [small]], [INSTRUCTION] * 2, seed=4)
    assert prediction.normalized.shape == (2, 16, 7)
    assert np.abs(prediction.normalized - single_view.normalized).max() > 1e-3


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (
            np.zeros((64, 64, 3), dtype=np.float32),
            r"expected a uint8 RGB array of shape \(H, W, 3\), got a float32",
        ),
        (np.zeros((64, 64), dtype=np.uint8), r"shape \(64, 64\)"),
        (np.zeros((64, 64, 4), dtype=np.uint8), r"shape \(64, 64, 4\)"),
        (np.zeros((0, 64, 3), dtype=np.uint8), r"shape \(0, 64, 3\)"),
        ("image.png", "got str"),
    ],
)
def test_bad_images_say_what_was_expected(tiny_model: InternVLAM1, bad: object, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        tiny_model.predict_action([[bad]], [INSTRUCTION])
    with pytest.raises(ValueError, match=expected):
        tiny_model.answer(bad, "what is this?")


def test_bad_batches(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="one list of camera views per instruction, got 2 samples for 1"):
        tiny_model.predict_action([[rgb], [rgb]], [INSTRUCTION])
    with pytest.raises(ValueError, match="sample 0: expected a non-empty list of camera views"):
        tiny_model.predict_action([rgb], [INSTRUCTION])
    with pytest.raises(ValueError, match="instructions: expected a list of strings"):
        tiny_model.predict_action([[rgb]], INSTRUCTION)
    with pytest.raises(ValueError, match="different numbers of DINO tokens"):
        tiny_model.predict_action([[rgb], [rgb, rgb]], [INSTRUCTION] * 2)
    with pytest.raises(ValueError, match=r"must not contain <\|image_pad\|>"):
        tiny_model.predict_action([[rgb]], ["put <|image_pad|> here"])


def test_unknown_unnorm_key_lists_available(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    assert tiny_model.unnorm_keys == ["franka"]
    with pytest.raises(ValueError, match="unknown unnorm_key 'bridge'; available: franka"):
        tiny_model.predict_action([[rgb]], [INSTRUCTION], unnorm_key="bridge")


def test_dino_resize_crops_to_patch_multiples() -> None:
    def resized(width: int, height: int) -> tuple[int, int]:
        return dino_resize(Image.new("RGB", (width, height))).size

    assert resized(224, 224) == (224, 224)
    assert resized(320, 256) == (280, 224)  # already a multiple of 14
    assert resized(640, 480) == (294, 224)  # upstream: 298 wide and a crash
    assert resized(480, 640) == (224, 294)
    assert resized(100, 50) == (448, 224)


def test_views_of_any_size_without_image_size(tmp_path: Path, tiny_run: Path) -> None:
    """A config without datasets.vla_data.image_size feeds views at their own size to both encoders."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    del config["datasets"]["vla_data"]["image_size"]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    model = InternVLAM1.from_pretrained(run)
    assert model.config.image_size is None
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert model.dino_features([[Image.fromarray(frame)]]).shape == (1, 16 * 21, 384)
    prediction = model.predict_action([[frame]], [INSTRUCTION], seed=0)
    assert np.isfinite(prediction.normalized).all()


def test_prompt_text_follows_upstream(tiny_model: InternVLAM1) -> None:
    assert tiny_model.prompt_text("Open the Drawer.") == tiny_model.config.cot_prompt.replace(
        "{instruction}", "open the drawer."
    )


def test_generate_is_greedy_and_bounded(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    answer = tiny_model.generate(rgb, "Give the bounding box for the red block.", max_new_tokens=5)
    assert 1 <= len(answer.token_ids) <= 5
    assert answer.image_size == tiny_model.processor_image_size(320, 240) == (308, 252)
    assert tiny_model.answer(rgb, "Give the bounding box for the red block.", max_new_tokens=5) == answer.text
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1"):
        tiny_model.answer(rgb, "hello", max_new_tokens=0)


def test_without_prompt_template_the_bare_instruction_conditions(
    tiny_model: InternVLAM1, rgb: np.ndarray
) -> None:
    assert tiny_model.config.cot_prompt is not None
    templated = tiny_model.predict_action([[rgb]], ["Pick up the red block."], seed=5)
    bare = tiny_model.predict_action([[rgb]], ["Pick up the red block."], seed=5, prompt_template=False)
    assert not np.allclose(templated.normalized, bare.normalized)
    again = tiny_model.predict_action([[rgb]], ["pick up the red block."], seed=5, prompt_template=False)
    np.testing.assert_array_equal(bare.normalized, again.normalized)
