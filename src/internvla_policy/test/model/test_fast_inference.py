"""The fast path against the reference path and the recorded upstream outputs, on the CPU.

On the CPU the fast path runs its stages eagerly in float32, so it must agree with the reference to
float32 rounding; in bfloat16 within the issue's 1e-2 relative error. Its stages must contain no
operation that waits for the device, since on a GPU they are captured as CUDA graphs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from internvla_policy.control.model_policy import ModelChunkPolicy
from internvla_policy.model import InternVLAM1
from internvla_policy.model.fast import FastInference

INSTRUCTION = "Pick up the red block and place it in the bowl."
# aten ops that read device data on the host: each would be a synchronisation (and break capture) on a GPU
SYNCING_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "unique", "item")


def relative_error(fast: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(fast - reference) / np.linalg.norm(reference))


@pytest.fixture(scope="module")
def fast_tiny(tiny_model: InternVLAM1) -> FastInference:
    return FastInference(tiny_model)


def test_float32_fast_path_reproduces_the_reference(
    tiny_model: InternVLAM1, fast_tiny: FastInference, rgb: np.ndarray
) -> None:
    assert fast_tiny.model is tiny_model and fast_tiny.dtype == torch.float32 and not fast_tiny.cuda_graphs
    wide = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cases = [
        ([wide], {"cfg_scale": 1.5, "ddim_steps": 10, "seed": 0}),
        ([Image.fromarray(rgb)], {"cfg_scale": 1.0, "ddim_steps": 5, "seed": 1}),
        ([rgb], {"cfg_scale": 1.0, "ddim_steps": 2, "seed": 2, "prompt_template": False}),
    ]
    for views, options in cases:
        reference = tiny_model.predict_action([views], [INSTRUCTION], **options)
        fast = fast_tiny.predict_action([views], [INSTRUCTION], **options)
        assert fast.normalized.shape == reference.normalized.shape == (1, 16, 7)
        assert relative_error(fast.normalized, reference.normalized) < 1e-5
        np.testing.assert_allclose(fast.normalized, reference.normalized, rtol=0, atol=1e-4)
        np.testing.assert_allclose(fast.actions, reference.actions, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(fast.actions[..., 6], reference.actions[..., 6])
        assert fast.unnorm_key == reference.unnorm_key == "franka"
        assert set(fast.timings) == {
            "setup",
            "preprocess",
            "vlm",
            "dino",
            "qformer",
            "dit",
            "postprocess",
            "total",
        }
        stages = sum(value for stage, value in fast.timings.items() if stage != "total")
        assert stages == pytest.approx(fast.timings["total"], rel=0.2)
    assert len(fast_tiny._plans[(((320, 240),),)].prompts) == 2  # with and without the CoT template


def test_plans_are_reused_and_seeds_behave_as_in_the_reference(
    fast_tiny: FastInference, rgb: np.ndarray
) -> None:
    first = fast_tiny.predict_action([[rgb]], [INSTRUCTION], cfg_scale=1.0, ddim_steps=2, seed=4)
    plans = dict(fast_tiny._plans)
    again = fast_tiny.predict_action([[rgb]], [INSTRUCTION], cfg_scale=1.0, ddim_steps=2, seed=4)
    other = fast_tiny.predict_action([[rgb]], [INSTRUCTION], cfg_scale=1.0, ddim_steps=2, seed=5)
    torch.manual_seed(4)
    from_global = fast_tiny.predict_action([[rgb]], [INSTRUCTION], cfg_scale=1.0, ddim_steps=2)
    assert dict(fast_tiny._plans) == plans  # same frame sizes: the same plan, no rebuild
    np.testing.assert_array_equal(first.normalized, again.normalized)
    np.testing.assert_array_equal(first.normalized, from_global.normalized)
    assert np.abs(first.normalized - other.normalized).max() > 1e-3
    assert again.timings["setup"] < first.timings["total"]


def test_fast_path_matches_upstream_recordings(
    reference_model: InternVLAM1, reference_case, cfg_name: str
) -> None:
    """Every recorded case (case2 is a left-padded batch of two) within the reference tests' tolerance."""
    meta = reference_case.meta
    scale = float(cfg_name.removeprefix("cfg"))
    torch.manual_seed(meta["seed"])
    prediction = FastInference(reference_model).predict_action(
        reference_case.images(), meta["instructions"], cfg_scale=scale, ddim_steps=10
    )
    expected = reference_case.array(f"{cfg_name}/normalized_actions.npy")
    np.testing.assert_allclose(prediction.normalized, expected, rtol=0, atol=1e-4)


def test_mixed_bfloat16_is_the_autocast_reference(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    """bfloat16 matrix weights with float32 activations under autocast: the reference path under
    upstream's autocast, within bfloat16 rounding on the CPU, and the caller's float32 model is left as it is.

    The answer is compared on a 224x224 frame: its vision windows are all full, so both paths run the
    same attention kernels. Where windows are partial the fast path's batched, masked attention rounds
    differently in bfloat16, and a random model's near-tied logits can then pick another token.
    """
    fast = FastInference(tiny_model, dtype=torch.bfloat16)
    assert fast.precision == "mixed" and fast.model is not tiny_model
    assert {p.dtype for p in tiny_model.parameters()} == {torch.float32}
    qwen = fast.model.qwen_vl_interface.model
    assert qwen.lm_head.weight.dtype == torch.bfloat16
    assert qwen.model.language_model.embed_tokens.weight.dtype == torch.float32
    assert fast.model.dino_encoder.body.blocks[0].norm1.weight.dtype == torch.float32
    assert fast.model.dino_encoder.body.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    square = np.random.default_rng(3).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    for seed in (0, 1):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reference = tiny_model.predict_action([[rgb]], [INSTRUCTION], seed=seed).normalized
        fast_actions = fast.predict_action([[rgb]], [INSTRUCTION], seed=seed).normalized
        # To the bit where the CPU has native bfloat16 kernels; without them (this machine in
        # 2026-12: no avx512_bf16) the two paths' bfloat16 matmuls round differently: measured
        # up to 0.11 (absolute, through 10 DDIM steps) on unclipped normalised actions of magnitude ~10.
        np.testing.assert_allclose(fast_actions, reference, rtol=0.02, atol=0.15)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = tiny_model.generate(square, "Point to the cup.", max_new_tokens=9)
    assert fast.generate(square, "Point to the cup.", max_new_tokens=9) == expected


def test_a_bfloat16_model_lends_its_matrices(tiny_model: InternVLAM1) -> None:
    """Loaded in bfloat16, the model's matrix weights are shared with the fast path, not copied."""
    low = tiny_model.converted(torch.bfloat16)
    fast = FastInference(low, dtype=torch.bfloat16)
    assert fast.model.layer_qformer.proj.weight.data_ptr() == low.layer_qformer.proj.weight.data_ptr()
    head, embeddings = low.qwen_vl_interface.model.lm_head, low.qwen_vl_interface.model.model.language_model
    assert fast.model.qwen_vl_interface.model.lm_head.weight.data_ptr() == head.weight.data_ptr()
    assert head.weight is embeddings.embed_tokens.weight and {p.dtype for p in low.parameters()} == {
        torch.bfloat16
    }


def test_pure_bfloat16_is_within_1e_2(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    fast = FastInference(tiny_model, dtype=torch.bfloat16, mixed_precision=False)
    assert fast.precision == "bfloat16" and {p.dtype for p in fast.model.parameters()} == {torch.bfloat16}
    for seed in (0, 1):
        reference = tiny_model.predict_action([[rgb]], [INSTRUCTION], seed=seed).normalized
        low = fast.predict_action([[rgb]], [INSTRUCTION], seed=seed).normalized
        assert 1e-5 < relative_error(low, reference) < 1e-2


def test_answers_match_generate_and_upstream(
    reference_model: InternVLAM1, tiny_a, tiny_model: InternVLAM1, rgb: np.ndarray
) -> None:
    recorded = json.loads((tiny_a / "chat" / "chat_outputs.json").read_text())
    image = Image.open(tiny_a / "chat" / "image.png").convert("RGB")
    fast = FastInference(reference_model)
    for variant, penalty in (("greedy", None), ("qwen_release_gencfg", 1.05)):
        answer = fast.generate(
            image, "Give the bounding box for the apple.", max_new_tokens=16, repetition_penalty=penalty
        )
        assert answer.token_ids == recorded[variant]["generated_ids"]
        assert answer.prompt_token_ids == recorded[variant]["prompt_input_ids"]
        assert answer.text == recorded[variant]["output_text"][0]
    tiny_fast = FastInference(tiny_model)
    for tokens in (1, 11):
        expected = tiny_model.generate(rgb, "Point to the cup.", max_new_tokens=tokens)
        answer = tiny_fast.generate(rgb, "Point to the cup.", max_new_tokens=tokens)
        assert answer == expected and len(answer.token_ids) <= tokens
    assert tiny_fast.answer(rgb, "Point to the cup.", max_new_tokens=3) == tiny_model.answer(
        rgb, "Point to the cup.", max_new_tokens=3
    )


def test_answers_stop_at_the_end_token(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    fast = FastInference(tiny_model)
    generation = tiny_model.processor.generation
    stops = generation.eos_token_id
    free = fast.generate(rgb, "Point to the cup.", max_new_tokens=12)
    assert not set(free.token_ids[:3]) & set(stops)
    # Make the third token an end token: the answer must end right there, as generate's does.
    generation.eos_token_id = [free.token_ids[2]]
    try:
        expected = tiny_model.generate(rgb, "Point to the cup.", max_new_tokens=12)
        answer = fast.generate(rgb, "Point to the cup.", max_new_tokens=12)
    finally:
        generation.eos_token_id = stops
    assert (
        answer.token_ids
        == expected.token_ids
        == free.token_ids[: free.token_ids.index(free.token_ids[2]) + 1]
    )


class SyncWatch(TorchDispatchMode):
    """Records every aten op that needs device data on the host."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(name in str(func) for name in SYNCING_OPS):
            self.seen.add(str(func))
        return func(*args, **(kwargs or {}))


def test_no_stage_reads_device_data_on_the_host(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    fast = FastInference(tiny_model)
    fast.predict_action([[rgb]], [INSTRUCTION], ddim_steps=2, seed=0)
    fast.generate(rgb, "Point to the cup.", max_new_tokens=9)
    plan = next(iter(fast._plans.values()))
    answers = next(iter(fast._answer_plans.values()))
    stages = [plan.preprocess, plan.dino, *next(iter(plan.prompts.values())), *plan.samplers.values()]
    stages += [answers.preprocess, *answers.prefills.values(), fast._decode_stage]
    assert sorted({stage.name for stage in stages}) == sorted(fast.stage_modes())
    with torch.inference_mode():
        for stage in stages:
            watch = SyncWatch()
            with watch:
                stage.fn()
            assert watch.seen == set(), f"{stage.name} synchronises: {sorted(watch.seen)}"


def test_warmup_and_drop_in_use_by_the_policy(tiny_model: InternVLAM1, rgb: np.ndarray) -> None:
    fast = FastInference(tiny_model)
    seconds = fast.warmup([(320, 240)], ddim_steps=2, answer_tokens=2)
    assert seconds > 0 and fast.warmup_s == seconds
    assert list(fast._plans) == [(((320, 240),),)] and list(fast._answer_plans) == [(320, 240)]
    answers_only = FastInference(tiny_model)
    answers_only.warmup([(320, 240)], actions=False, answer_tokens=2)
    assert not answers_only._plans and list(answers_only._answer_plans) == [(320, 240)]
    assert set(fast.stage_modes().values()) == {"eager"}
    kwargs = {"cfg_scale": 1.5, "ddim_steps": 2, "seed": 3, "unnorm_key": None}
    with_fast = ModelChunkPolicy(fast, **kwargs).predict([rgb], INSTRUCTION)
    with_model = ModelChunkPolicy(tiny_model, **kwargs).predict([rgb], INSTRUCTION)
    np.testing.assert_allclose(with_fast.normalized, with_model.normalized, rtol=0, atol=1e-5)
    assert fast.processor_image_size(640, 480) == tiny_model.processor_image_size(640, 480)


def test_bad_input_is_refused_like_the_reference(fast_tiny: FastInference, rgb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 RGB array"):
        fast_tiny.predict_action([[rgb.astype(np.float32)]], [INSTRUCTION])
    with pytest.raises(ValueError, match="one list of camera views per instruction"):
        fast_tiny.predict_action([[rgb]], [INSTRUCTION, INSTRUCTION])
    with pytest.raises(ValueError, match="ddim_steps=11"):
        fast_tiny.predict_action([[rgb]], [INSTRUCTION], ddim_steps=11)
    with pytest.raises(ValueError, match="unknown unnorm_key"):
        fast_tiny.predict_action([[rgb]], [INSTRUCTION], unnorm_key="bridge")
    with pytest.raises(ValueError, match="max_new_tokens"):
        fast_tiny.generate(rgb, "x", max_new_tokens=0)
