"""The port against upstream's recorded outputs (shared/reference/tiny_a), end to end and stage by stage.

Tolerances are the fixture README's for a float32 CPU port: 1e-4 on normalised actions, 2e-5 on
hidden states and Q-Former output, exact on ids, masks, grids and preprocessed pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from internvla_policy.model import InternVLAM1, unnormalize_actions
from internvla_policy.model.diffusion import ddim_sample, ddim_schedule
from internvla_policy.model.normalization import GRIPPER_INDEX
from internvla_policy.model.preprocessing import dino_resize, dino_tensor, resize_to

ACTION_ATOL = 1e-4
FEATURE_ATOL = 2e-5


def _cfg_scale(cfg_name: str) -> float:
    return float(cfg_name.removeprefix("cfg"))


def test_predict_action_matches_upstream(reference_model: InternVLAM1, reference_case, cfg_name: str) -> None:
    meta = reference_case.meta
    prediction = reference_model.predict_action(
        reference_case.images(), meta["instructions"], cfg_scale=_cfg_scale(cfg_name), seed=meta["seed"]
    )
    expected = reference_case.array(f"{cfg_name}/normalized_actions.npy")
    assert prediction.normalized.dtype == np.float32
    assert prediction.normalized.shape == expected.shape
    np.testing.assert_allclose(prediction.normalized, expected, rtol=0, atol=ACTION_ATOL)

    expected_actions = reference_case.array(f"{cfg_name}/unnormalized_actions.npy")
    assert prediction.actions.dtype == np.float64
    np.testing.assert_array_equal(
        prediction.actions[..., GRIPPER_INDEX], expected_actions[..., GRIPPER_INDEX]
    )
    np.testing.assert_allclose(prediction.actions, expected_actions, rtol=0, atol=1e-6)
    assert prediction.unnorm_key == "franka"


def test_seeded_noise_is_torch_randn_after_manual_seed(reference_case, cfg_name: str) -> None:
    """seed=S draws the same noise as upstream's torch.manual_seed(S); torch.randn(B, 16, 7)."""
    recorded = reference_case.array(f"{cfg_name}/initial_noise.npy")
    drawn = torch.randn(recorded.shape, generator=torch.Generator().manual_seed(reference_case.meta["seed"]))
    np.testing.assert_array_equal(drawn.numpy(), recorded)


def test_global_seed_and_seed_argument_agree(reference_model: InternVLAM1, case0) -> None:
    torch.manual_seed(case0.meta["seed"])
    from_global = reference_model.predict_action(case0.images(), case0.meta["instructions"])
    from_seed = reference_model.predict_action(
        case0.images(), case0.meta["instructions"], seed=case0.meta["seed"]
    )
    np.testing.assert_array_equal(from_global.normalized, from_seed.normalized)


def test_qwen_inputs_and_hidden_states(reference_model: InternVLAM1, reference_case) -> None:
    meta = reference_case.meta
    size = reference_model.config.image_size
    views = [
        [reference_model.processor.fit(resize_to(v, size)) for v in views]
        for views in reference_case.images()
    ]
    prompts = [reference_model.prompt_text(text) for text in meta["instructions"]]
    assert [
        reference_model.processor.render_prompt(len(v), p) for v, p in zip(views, prompts, strict=True)
    ] == meta["chat_template_texts"]
    inputs = reference_model.processor.encode(views, prompts)
    np.testing.assert_array_equal(inputs["input_ids"].numpy(), reference_case.array("qwen_input_ids.npy"))
    np.testing.assert_array_equal(
        inputs["attention_mask"].numpy(), reference_case.array("qwen_attention_mask.npy")
    )
    np.testing.assert_array_equal(
        inputs["image_grid_thw"].numpy(), reference_case.array("qwen_image_grid_thw.npy")
    )
    start, end = meta["qformer_hidden_state_slice"]
    with torch.inference_mode():
        hidden = reference_model.qwen_vl_interface.hidden_states(inputs)
    selected = torch.stack(hidden[start:end]).numpy()
    np.testing.assert_allclose(
        selected, reference_case.array("qformer_input_hidden_states.npy"), atol=FEATURE_ATOL
    )


def test_case0_pixels_all_hidden_states_and_dino(reference_model: InternVLAM1, case0) -> None:
    view = resize_to(case0.images()[0][0], reference_model.config.image_size)
    inputs = reference_model.processor.encode(
        [[reference_model.processor.fit(view)]], [reference_model.prompt_text(case0.meta["instructions"][0])]
    )
    np.testing.assert_array_equal(inputs["pixel_values"].numpy(), case0.array("qwen_pixel_values.npy"))
    with torch.inference_mode():
        hidden = torch.stack(reference_model.qwen_vl_interface.hidden_states(inputs)).numpy()
        pixels = dino_tensor([dino_resize(view)])
        features = reference_model.dino_encoder(pixels)
    np.testing.assert_allclose(hidden, case0.array("qwen_all_hidden_states.npy"), atol=FEATURE_ATOL)
    np.testing.assert_array_equal(pixels.numpy(), case0.array("dino_input.npy"))
    np.testing.assert_allclose(features.numpy(), case0.array("dino_features.npy"), atol=FEATURE_ATOL)


def test_dino_projection_and_qformer(reference_model: InternVLAM1, reference_case) -> None:
    size = reference_model.config.image_size
    images = [[resize_to(v, size) for v in views] for views in reference_case.images()]
    recorded_dino = reference_case.array("dino_pro_features.npy")
    with torch.inference_mode():
        dino = reference_model.dino_pro(reference_model.dino_features(images))
        layers = [
            torch.cat([torch.from_numpy(h), torch.from_numpy(recorded_dino)], dim=1)
            for h in reference_case.array("qformer_input_hidden_states.npy")
        ]
        condition = reference_model.layer_qformer(layers)
    np.testing.assert_allclose(dino.numpy(), recorded_dino, atol=FEATURE_ATOL)
    np.testing.assert_allclose(
        condition.numpy(), reference_case.array("action_condition_feature.npy"), atol=FEATURE_ATOL
    )


def test_dit_reproduces_recorded_noise_predictions(
    reference_model: InternVLAM1, reference_case, cfg_name: str
) -> None:
    net = reference_model.action_model.net
    xs = reference_case.array(f"{cfg_name}/dit_trace_x.npy")
    timesteps = reference_case.array(f"{cfg_name}/dit_trace_t.npy")
    outputs = reference_case.array(f"{cfg_name}/dit_trace_out.npy")
    condition = torch.from_numpy(reference_case.array("action_condition_feature.npy"))
    if xs.shape[1] == 2 * condition.shape[0]:  # guided: the second half is conditioned on "uncondition"
        condition = torch.cat([condition, net.z_embedder.uncondition.unsqueeze(0).expand_as(condition)])
    with torch.inference_mode():
        for x, t, expected in zip(xs, timesteps, outputs, strict=True):
            np.testing.assert_allclose(
                net(torch.from_numpy(x), torch.from_numpy(t), condition).numpy(), expected, atol=FEATURE_ATOL
            )


def test_ddim_sampler_replays_upstream_trajectory(
    reference_model: InternVLAM1, reference_case, cfg_name: str
) -> None:
    """Fed upstream's recorded noise predictions, the sampler visits upstream's states and timesteps."""
    xs = reference_case.array(f"{cfg_name}/dit_trace_x.npy")
    timesteps = reference_case.array(f"{cfg_name}/dit_trace_t.npy")
    outputs = reference_case.array(f"{cfg_name}/dit_trace_out.npy")
    batch = reference_case.array(f"{cfg_name}/initial_noise.npy").shape[0]
    scale = _cfg_scale(cfg_name)
    calls = iter(range(len(xs)))

    def recorded_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        step = next(calls)
        np.testing.assert_array_equal(t.numpy(), timesteps[step][:batch])
        np.testing.assert_allclose(x.numpy(), xs[step][:batch], atol=ACTION_ATOL)
        eps = torch.from_numpy(outputs[step])
        if eps.shape[0] == 2 * batch:
            cond, uncond = eps.chunk(2)
            return uncond + scale * (cond - uncond)
        return eps

    schedule = ddim_schedule(reference_model.config.diffusion_steps, len(xs))
    samples = ddim_sample(
        recorded_eps, torch.from_numpy(reference_case.array(f"{cfg_name}/initial_noise.npy")), schedule
    )
    np.testing.assert_allclose(
        samples.numpy(), reference_case.array(f"{cfg_name}/normalized_actions.npy"), rtol=0, atol=ACTION_ATOL
    )


@pytest.mark.parametrize(
    ("variant", "repetition_penalty"),
    [("greedy", None), ("qwen_release_gencfg", 1.05)],
    ids=["greedy", "release"],
)
def test_chat_answer_token_for_token(
    reference_model: InternVLAM1, tiny_a: Path, variant: str, repetition_penalty: float | None
) -> None:
    record = json.loads((tiny_a / "chat" / "chat_outputs.json").read_text())
    expected = record[variant]
    answer = reference_model.generate(
        Image.open(tiny_a / "chat" / "image.png"),
        record["instruction"],
        max_new_tokens=record["max_new_tokens"],
        repetition_penalty=repetition_penalty,
    )
    assert answer.prompt_token_ids == expected["prompt_input_ids"]
    assert answer.token_ids == expected["generated_ids"]
    assert answer.text == expected["output_text"][0]
    grid = expected["image_grid_thw"][0]
    assert answer.image_size == (grid[2] * 14, grid[1] * 14)
    assert (
        reference_model.processor_image_size(*Image.open(tiny_a / "chat" / "image.png").size)
        == answer.image_size
    )


def test_unnormalize_probe(tiny_a: Path, reference_model: InternVLAM1) -> None:
    normalized = np.load(tiny_a / "unnormalize_probe" / "normalized_in.npy")
    expected = np.load(tiny_a / "unnormalize_probe" / "unnormalized_out.npy")
    result = unnormalize_actions(normalized, reference_model.norm_stats["franka"]["action"])
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, expected)
