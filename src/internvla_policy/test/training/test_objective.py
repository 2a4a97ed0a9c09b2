"""The losses: a training step lowers them on a fixed batch; guidance dropout; answer-token masking."""

from __future__ import annotations

import numpy as np
import torch

from internvla_policy.data import compute_statistics
from internvla_policy.model.tiny import tiny_norm_stats
from internvla_policy.training.build import SMALL_MODEL_DIMS, new_model, tokenizer_corpus
from internvla_policy.training.objective import ANSWER_END, action_condition, diffusion_loss, grounding_loss
from internvla_policy.training.samples import TrainingData, open_reader, read_grounding

from .conftest import ACTION_KEYS, CAMERAS, TASKS


def _model(tmp_path):
    model, _ = new_model(
        tmp_path / "run", SMALL_MODEL_DIMS, tiny_norm_stats(), tokenizer_corpus(TASKS, 64), seed=0
    )
    return model


def _losses(model, actions, questions, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    condition = action_condition(model, actions.views, actions.instructions)
    generator = torch.Generator().manual_seed(seed)
    action = diffusion_loss(
        model.action_model.net,
        actions.actions,
        condition,
        num_steps=100,
        repeats=2,
        cfg_dropout=0.1,
        generator=generator,
    )
    return action, grounding_loss(model, questions.images, questions.prompts, questions.answers)


def test_one_step_changes_the_parameters_and_lowers_the_loss_on_a_fixed_batch(tmp_path, dataset) -> None:
    torch.manual_seed(0)
    model = _model(tmp_path)
    reader = open_reader(dataset, CAMERAS, ACTION_KEYS, 16, None)
    data = TrainingData(reader, compute_statistics(reader), read_grounding(dataset), log=lambda _: None)
    rng = np.random.default_rng(0)
    actions = data.action_batch(rng, 4, overlay_probability=0.5)
    questions = data.grounding_batch(rng, 2, lambda text: f"find: {text}", model.processor_image_size)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    action, answer = _losses(model, actions, questions, seed=7)
    (action + answer).backward()
    optimizer.step()
    with torch.no_grad():
        action_after, answer_after = _losses(model, actions, questions, seed=7)
    assert action_after.item() < action.item() and answer_after.item() < answer.item()
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    for module in ("qwen_vl_interface", "dino_encoder", "dino_pro", "layer_qformer", "action_model"):
        assert any(name.startswith(module) for name in changed), module
    # the zero-initialised output layer makes the first prediction 0, so the first loss is E[noise^2] ~ 1
    assert 0.7 < action.item() < 1.3


def test_full_guidance_dropout_ignores_the_condition(tmp_path) -> None:
    net = _model(tmp_path).action_model.net
    torch.nn.init.normal_(net.final_layer.linear.weight)
    actions = torch.rand(3, 16, 7) * 2 - 1
    first, second = (
        torch.randn(3, SMALL_MODEL_DIMS.num_query_tokens, SMALL_MODEL_DIMS.action_width) for _ in range(2)
    )

    def loss(condition: torch.Tensor, dropout: float) -> float:
        generator = torch.Generator().manual_seed(3)
        return diffusion_loss(
            net, actions, condition, num_steps=100, repeats=2, cfg_dropout=dropout, generator=generator
        ).item()

    assert loss(first, 1.0) == loss(second, 1.0)
    assert loss(first, 0.0) != loss(second, 0.0)


def test_answer_tokens_follow_the_prompt_unchanged(tmp_path, dataset) -> None:
    """The grounding loss counts answer tokens by tokenising the answer alone: appending it must not
    change how the prompt tokenises."""
    model = _model(tmp_path)
    reader = open_reader(dataset, CAMERAS, ACTION_KEYS, 16, None)
    data = TrainingData(reader, compute_statistics(reader), read_grounding(dataset), log=lambda _: None)
    questions = data.grounding_batch(
        np.random.default_rng(0), 1, lambda t: f"find: {t}", model.processor_image_size
    )
    views = [[questions.images[0]]]
    prompt = model.qwen_inputs(views, questions.prompts)["input_ids"][0].tolist()
    full = model.qwen_inputs(views, questions.prompts, [questions.answers[0] + ANSWER_END])["input_ids"][
        0
    ].tolist()
    answer = model.processor.tokenizer(questions.answers[0] + ANSWER_END, add_special_tokens=False)[
        "input_ids"
    ]
    assert full == prompt + answer
    assert model.processor.decode(answer) == questions.answers[0]
