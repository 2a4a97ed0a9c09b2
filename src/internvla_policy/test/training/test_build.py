"""A new model's image tokens start at the scale of its text tokens; the vision merger learns at its own
rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from internvla_policy.data import compute_statistics
from internvla_policy.model.tiny import tiny_norm_stats
from internvla_policy.training.build import DEFAULT_MODEL_DIMS, SMALL_MODEL_DIMS, new_model, tokenizer_corpus
from internvla_policy.training.samples import TrainingData, open_reader
from internvla_policy.training.trainer import VISION_MERGER, Trainer, TrainSettings, optimizer_groups

from .conftest import ACTION_KEYS, CAMERAS, TASKS


@torch.no_grad()
def test_image_tokens_enter_the_decoder_at_the_text_embeddings_scale(tmp_path) -> None:
    """At the built-in model's widths transformers' initialisation alone gives the image tokens four times
    the text tokens' RMS (0.082 against 0.020)."""
    model, _ = new_model(
        tmp_path, DEFAULT_MODEL_DIMS, tiny_norm_stats(), tokenizer_corpus(TASKS, 224), seed=0
    )
    rng = np.random.default_rng(5)
    views = [
        [Image.fromarray(rng.integers(0, 256, (224, 224, 3), np.uint8)) for _ in range(2)] for _ in TASKS
    ]
    inputs = model.qwen_inputs(model.model_views(views), list(TASKS))
    embeddings = model.qwen_vl_interface.hidden_states(inputs)[0]  # what the decoder's first layer gets
    image = inputs["input_ids"] == model.qwen_vl_interface.model.config.image_token_id
    image_rms, text_rms = (embeddings[mask].square().mean().sqrt().item() for mask in (image, ~image))
    assert image_rms == pytest.approx(text_rms, rel=0.15)


def test_the_vision_merger_learns_at_its_own_rate(tmp_path, dataset) -> None:
    model, _ = new_model(tmp_path, SMALL_MODEL_DIMS, {}, tokenizer_corpus(TASKS, 64), seed=0)
    rest, merger = optimizer_groups(model, 0.1)
    names = {id(p): name for name, p in model.named_parameters()}
    assert merger["params"] and all(names[id(p)].startswith(VISION_MERGER) for p in merger["params"])
    assert not any(names[id(p)].startswith(VISION_MERGER) for p in rest["params"])
    assert len(merger["params"]) + len(rest["params"]) == len(names)
    reader = open_reader(dataset, CAMERAS, ACTION_KEYS, 16, None)
    data = TrainingData(reader, compute_statistics(reader), None, log=lambda _: None)
    settings = TrainSettings(steps=2, batch_size=2, repeated_diffusion_steps=1, merger_lr_scale=0.1)
    trainer = Trainer(model, data, settings, tmp_path, log=lambda _: None)
    trainer.train_step()
    rest_lr, merger_lr = (group["lr"] for group in trainer.optimizer.param_groups)
    assert rest_lr == trainer.learning_rate() and merger_lr == pytest.approx(0.1 * rest_lr)
