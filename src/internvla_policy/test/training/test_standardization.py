"""The condition's standardisation: folded into the DiT it gives the same noise predictions (guided and
not) in the released key layout, and with it a small model trained for seconds tells scenes apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from internvla_policy.data import EpisodeRecord, compute_statistics, write_dataset
from internvla_policy.model import InternVLAM1
from internvla_policy.model.tiny import randomize_parameters, tiny_norm_stats
from internvla_policy.training.build import SMALL_MODEL_DIMS, new_model, tokenizer_corpus
from internvla_policy.training.diagnostics import start_response
from internvla_policy.training.run_files import write_run_metadata
from internvla_policy.training.samples import TrainingData, open_reader
from internvla_policy.training.standardization import (
    FOLDED_KEYS,
    ConditionStatistics,
    folded_weights,
    standardize,
    trained_weights,
)
from internvla_policy.training.trainer import Trainer, TrainSettings

from .conftest import ACTION_KEYS, CAMERAS, TASKS

DIMS = SMALL_MODEL_DIMS


def _small_model(run, seed: int, norm_stats=None) -> tuple[InternVLAM1, dict]:
    return new_model(run, DIMS, norm_stats or tiny_norm_stats(), tokenizer_corpus(TASKS, 64), seed=seed)


def _statistics(generator: torch.Generator) -> ConditionStatistics:
    """Like the built-in recipe's Q-Former output: large per-token values that differ across samples by
    about 1% (a spread of 0.004-0.012 per feature)."""
    mean = 1.26 * torch.randn(DIMS.num_query_tokens, DIMS.action_width, generator=generator)
    spread = 0.004 + 0.008 * torch.rand(DIMS.action_width, generator=generator)
    return ConditionStatistics(mean, spread.square(), samples=1000)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_folding_keeps_the_noise_predictions_and_the_released_keys(tmp_path, dtype) -> None:
    """Folded, the DiT predicts on the raw condition what it predicted on the standardised one, for the
    condition alone and under guidance (which mixes in the "no condition" tokens).

    In float64 they agree to 5e-14 (bound 1e-5). Folded float32 is less exact: the condition's large common
    part (its spread across samples is ~1%) meets weights ~100x larger and is cancelled by the position
    table, which costs float32 about two digits (1.5-2.6e-5 here on outputs up to 3, against 1e-6 for
    the training form): the bound for float32 is 1e-4.
    """
    model, _ = _small_model(tmp_path / "a", seed=0)
    randomize_parameters(model, torch.Generator().manual_seed(1))  # no zero layer hides a difference
    model.to(dtype).eval()
    generator = torch.Generator().manual_seed(2)
    statistics = _statistics(generator)
    condition = statistics.mean + statistics.var.sqrt() * torch.randn(
        3, DIMS.num_query_tokens, DIMS.action_width, generator=generator
    )
    condition = condition.to(dtype)
    actions = torch.randn(3, 16, 7, generator=generator, dtype=dtype)
    timesteps = torch.tensor([0, 45, 99])
    net = model.action_model.net

    def predictions(model: InternVLAM1, condition: torch.Tensor) -> list[torch.Tensor]:
        """The DiT's noise prediction for the condition and for its "no condition" tokens (in the model's
        dtype), and the guided one the sampler uses (float32)."""
        dit = model.action_model.net
        uncondition = dit.z_embedder.uncondition.expand_as(condition)
        guided = model.noise_predictor(condition, 1.5)(actions, timesteps)
        return [dit(actions, timesteps, condition), dit(actions, timesteps, uncondition), guided.to(dtype)]

    before = predictions(model, standardize(condition, statistics))
    trained = trained_weights(model.state_dict())
    folded_state = {**model.state_dict(), **folded_weights(net, statistics)}

    released, _ = _small_model(tmp_path / "b", seed=3)
    assert folded_state.keys() == released.state_dict().keys()
    released.to(dtype).load_state_dict(folded_state)  # strict: nothing missing, nothing extra
    after = predictions(released.eval(), condition)
    tolerance = 1e-5 if dtype == torch.float64 else 1e-4
    for name, a, b in zip(("conditioned", "no condition", "guided"), after, before, strict=True):
        assert torch.allclose(a, b, atol=tolerance, rtol=0), (name, (a - b).abs().max().item())
    # what the trainer keeps to resume from is the weights as trained, not the folded ones
    assert trained.keys() == set(FOLDED_KEYS)
    assert all(torch.equal(trained[key], model.state_dict()[key]) for key in FOLDED_KEYS)
    assert not any(torch.equal(trained[key], folded_state[key]) for key in FOLDED_KEYS)


def test_training_standardises_each_token_across_the_batch() -> None:
    """Each token's mean over the batch is removed; each feature is divided by its spread across samples,
    pooled over the tokens (BatchNorm's eps added), not by the differences between tokens."""
    tokens = torch.tensor([[-5.0], [0.0], [5.0]])  # three tokens far apart, the same in every sample
    condition = (tokens + 0.01 * torch.randn(8, 3, 4, dtype=torch.float64)).requires_grad_()
    standardised = standardize(condition)
    assert torch.allclose(standardised.mean(0), torch.zeros(3, 4, dtype=torch.float64), atol=1e-12)
    var = (condition - condition.mean(0)).square().mean((0, 1))
    assert torch.allclose(standardised.square().mean((0, 1)), var / (var + 1e-5), rtol=1e-9)
    standardised.sum().backward()  # the gradient flows through the batch's statistics
    assert condition.grad is not None


SCENE_OFFSETS_M = (-0.02, -0.007, 0.007, 0.02)
"""Per scene, the sideways move of every step; the scene camera shows a square whose place says which."""
SCENE_FRAMES = 4


def _scene(index: int) -> EpisodeRecord:
    view = np.full((SCENE_FRAMES, 56, 56, 3), 90, np.uint8)
    view[:, 24:36, 2 + 14 * index : 12 + 14 * index] = (220, 30, 30)
    steps = np.ones(SCENE_FRAMES)
    return EpisodeRecord(
        task=TASKS[0],
        columns={
            "action.delta_eef_position": np.stack(
                [0.01 * steps, SCENE_OFFSETS_M[index] * steps, 0 * steps], 1
            ),
            "action.delta_eef_rotation": np.zeros((SCENE_FRAMES, 3)),
            "action.gripper_open": steps[:, None],
        },
        videos={CAMERAS[0]: view},
    )


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> TrainingData:
    """Four scenes, the same instruction, one camera: only where the square is tells the move."""
    root = write_dataset(
        tmp_path_factory.mktemp("scenes") / "data", [_scene(i) for i in range(len(SCENE_OFFSETS_M))], fps=10
    )
    reader = open_reader(root, CAMERAS[:1], ACTION_KEYS, 16, None)
    return TrainingData(reader, compute_statistics(reader), None, log=lambda _: None)


def test_a_model_trained_for_seconds_tells_the_scenes_apart(tmp_path, scenes) -> None:
    """200 steps (seconds) of the small model; its checkpoint (standardisation folded in) moves sideways
    with the scene, averaged over 8 noise seeds. Measured over training seeds 0-3: correlation 0.96-0.99,
    spread across scenes 0.7-1.2 cm against the expert's 1.5 cm. Without the standardisation the same run
    spreads 1e-7 cm across scenes: its sample follows the noise seed alone."""
    statistics = compute_statistics(scenes.reader)
    run = tmp_path / "run"
    model, tree = _small_model(run, seed=0, norm_stats={"franka": statistics.to_json()})
    write_run_metadata(run, tree, {"franka": statistics})
    settings = TrainSettings(
        steps=200,
        batch_size=8,
        learning_rate=3e-3,
        warmup_steps=5,
        repeated_diffusion_steps=4,
        standardize_condition=True,
        standardize_samples=32,
        log_every=50,
    )
    Trainer(model, scenes, settings, run, log=lambda _: None).run()
    response = start_response(InternVLAM1.from_pretrained(run), scenes, "franka", steps=1, seeds=8)
    sideways = response.axes["y"]
    assert sideways.correlation is not None and sideways.correlation > 0.8
    assert sideways.model_std_m > 0.25 * sideways.recorded_std_m
