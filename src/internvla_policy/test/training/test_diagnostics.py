"""Condition usage, open-loop error and start response: a new model ignores its inputs; the command line
scores a trained run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from internvla_policy.data import compute_statistics
from internvla_policy.model.tiny import tiny_norm_stats
from internvla_policy.training import DataSpec, ModelSource, TrainSettings, train_run
from internvla_policy.training.build import SMALL_MODEL_DIMS, new_model, tokenizer_corpus
from internvla_policy.training.diagnostics import (
    USAGE_FILE,
    condition_usage,
    main,
    open_loop_error,
    start_response,
)
from internvla_policy.training.samples import TrainingData, open_reader

from .conftest import ACTION_KEYS, CAMERAS, TASKS

SETTINGS = TrainSettings(steps=6, batch_size=2, warmup_steps=2, repeated_diffusion_steps=1)


def _data(dataset) -> TrainingData:
    reader = open_reader(dataset, CAMERAS, ACTION_KEYS, 16, None)
    return TrainingData(reader, compute_statistics(reader), None, log=lambda _: None)


def test_a_new_model_predicts_the_same_whatever_its_condition(tmp_path, dataset) -> None:
    model, _ = new_model(tmp_path, SMALL_MODEL_DIMS, tiny_norm_stats(), tokenizer_corpus(TASKS, 64), seed=0)
    usage = condition_usage(model.eval(), _data(dataset), batches=2, batch_size=4)
    # the DiT's zero-initialised last layer predicts zero noise for every condition
    assert usage.own == usage.shuffled == usage.uncondition
    assert usage.gain == 0.0 and usage.samples == 8


def test_open_loop_error_against_a_hand_computed_mean_action_baseline(tmp_path, dataset) -> None:
    model, _ = new_model(tmp_path, SMALL_MODEL_DIMS, tiny_norm_stats(), tokenizer_corpus(TASKS, 64), seed=0)
    result = open_loop_error(model.eval(), _data(dataset), "franka")
    # frame 0 of each episode (8 and 6 frames); x moves 0.01 m a step, y -0.002 m times the frame, z 0
    mean_y = -0.002 * (sum(range(8)) + sum(range(6))) / 14
    per_frame = sum(abs(mean_y + 0.002 * k) for k in range(4)) / 12
    assert result.frames == 2 and result.mean_action_m == pytest.approx(per_frame, rel=1e-6)
    assert np.isfinite(result.model_m) and result.model_m > 0


def test_start_response_of_a_new_model_against_hand_computed_recorded_spreads(tmp_path, dataset) -> None:
    model, _ = new_model(tmp_path, SMALL_MODEL_DIMS, tiny_norm_stats(), tokenizer_corpus(TASKS, 64), seed=0)
    result = start_response(model.eval(), _data(dataset), "franka")
    # first 8 steps summed: episode 0 x 8 * 0.01, y -0.002 * (0 + ... + 7); episode 1 has only 6 steps
    assert result.episodes == 2
    assert result.axes["x"].recorded_std_m == pytest.approx(np.std([0.08, 0.06]))
    assert result.axes["y"].recorded_std_m == pytest.approx(np.std([-0.056, -0.030]))
    assert result.axes["z"].recorded_std_m == 0.0
    # zero noise prediction: each seed gives both scenes the same chunk, so no spread across scenes and no
    # correlation; the chunk is the seed's noise, so the seeds spread it (sideways; x and z are constant in
    # the data, and their statistics pin them)
    assert result.seeds == 4
    for axis in result.axes.values():
        assert axis.model_std_m == pytest.approx(0.0, abs=1e-9) and axis.correlation is None
    assert result.axes["y"].seed_std_m > 0
    assert 0.0 < result.condition_spread < 1.0  # the two first frames differ, and so do their conditions


def test_start_response_needs_two_episodes(tmp_path, dataset) -> None:
    model, _ = new_model(tmp_path, SMALL_MODEL_DIMS, tiny_norm_stats(), tokenizer_corpus(TASKS, 64), seed=0)
    reader = open_reader(dataset, CAMERAS, ACTION_KEYS, 16, [0])
    with pytest.raises(ValueError, match="at least 2, got 1"):
        start_response(
            model.eval(), TrainingData(reader, compute_statistics(reader), None, lambda _: None), "franka"
        )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, dataset):
    """The small model after a few steps: its last layer is no longer zero, so conditions matter."""
    run = tmp_path_factory.mktemp("usage") / "run"
    train_run(
        DataSpec(dataset, CAMERAS, ACTION_KEYS, "sim"),
        run,
        SETTINGS,
        ModelSource(dims=SMALL_MODEL_DIMS, texts=TASKS),
        log=lambda _: None,
    )
    return run


def test_the_command_line_scores_a_run_on_its_training_data(trained_run, capsys) -> None:
    assert main([str(trained_run), "--batches", "4"]) == 0
    report = json.loads((trained_run / USAGE_FILE).read_text())
    assert report["samples"] == 64
    assert len({report["own"], report["shuffled"], report["uncondition"]}) == 3
    assert report["open_loop"]["frames"] == 2 and report["open_loop"]["mean_action_m"] > 0
    assert np.isclose(report["gain"], 1 - report["own"] / report["shuffled"])
    start = report["start"]
    assert start["episodes"] == 2 and start["axes"]["x"]["recorded_std_m"] == pytest.approx(0.01)
    # the trained DiT is no longer zero: y differs between the scenes' starts (x and z are constant in
    # the data, so their statistics pin them)
    assert start["axes"]["y"]["model_std_m"] > 0 and start["axes"]["z"]["model_std_m"] == 0.0
    out = capsys.readouterr().out
    assert f"gain {report['gain']:.1%}" in out and "first sideways move spread" in out


def test_the_command_line_names_a_missing_dataset(trained_run, tmp_path, capsys) -> None:
    assert main([str(trained_run), "--dataset", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err
