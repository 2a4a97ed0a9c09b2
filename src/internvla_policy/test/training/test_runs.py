"""Runs in the released layout: bit-for-bit reload, resume, the command line on the shared dataset."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from internvla_policy.data import LeRobotDataset, compute_statistics
from internvla_policy.model import InternVLAM1
from internvla_policy.model.checkpoint import read_state_dict
from internvla_policy.model.tiny import write_tiny_run
from internvla_policy.training import DataSpec, ModelSource, TrainSettings, train_run
from internvla_policy.training.build import SMALL_MODEL_DIMS, new_model, tokenizer_corpus
from internvla_policy.training.cli import main, parser
from internvla_policy.training.pipeline import GroundingTask
from internvla_policy.training.run_files import LOG_FILE, checkpoint_path, save_weights, write_run_metadata
from internvla_policy.training.samples import TrainingData, open_reader, read_grounding
from internvla_policy.training.standardization import FOLDED_KEYS
from internvla_policy.training.trainer import Trainer, clip_gradients, clip_groups

from .conftest import ACTION_KEYS, CAMERAS, TASKS

SETTINGS = TrainSettings(
    steps=6,
    batch_size=2,
    repeated_diffusion_steps=2,
    overlay_probability=0.5,
    grounding_batch_size=1,
    warmup_steps=2,
    log_every=1,
    save_every=2,
)
GROUNDING = GroundingTask("find {instruction}", lambda text: f"find {text}")


def test_saved_weights_reload_bit_for_bit_through_the_released_loader(tmp_path, dataset) -> None:
    reader = open_reader(dataset, CAMERAS, ACTION_KEYS, 16, None)
    statistics = compute_statistics(reader)
    run = tmp_path / "run"
    model, tree = new_model(
        run, SMALL_MODEL_DIMS, {"franka": statistics.to_json()}, tokenizer_corpus(TASKS, 64), 0
    )
    with torch.no_grad():
        for parameter in model.parameters():  # make every weight distinct from its initial value
            parameter.add_(0.01 * torch.randn_like(parameter))
    write_run_metadata(run, tree, {"franka": statistics})
    save_weights(run, model.state_dict(), step=5)
    loaded = InternVLAM1.from_pretrained(run)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    assert loaded.config.dino_short_side == 56 and loaded.config.dit_size.depth == 1
    assert loaded.norm_stats["franka"]["action"]["q99"] == statistics.action.q99.tolist()
    views = [[np.full((64, 64, 3), 120, np.uint8), np.full((32, 32, 3), 60, np.uint8)]]
    first = model.eval().predict_action(views, [TASKS[0]], seed=3)
    second = loaded.predict_action(views, [TASKS[0]], seed=3)
    assert np.array_equal(first.normalized, second.normalized)


def _trainer(run, state, dataset, model=None, settings: TrainSettings = SETTINGS) -> Trainer:
    if model is None:
        model, tree = new_model(run, SMALL_MODEL_DIMS, {}, tokenizer_corpus(TASKS, 64), settings.seed)
        reader = open_reader(dataset, CAMERAS, ACTION_KEYS, 16, None)
        write_run_metadata(run, tree, {"franka": compute_statistics(reader)})
    reader = open_reader(dataset, CAMERAS, ACTION_KEYS, 16, None)
    data = TrainingData(reader, compute_statistics(reader), read_grounding(dataset), log=lambda _: None)
    return Trainer(
        model, data, settings, run, state_dir=state, grounding_prompt=GROUNDING.prompt, log=lambda _: None
    )


@pytest.mark.parametrize("standardize", [False, True], ids=["raw_condition", "standardized_condition"])
def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(
    tmp_path, dataset, standardize
) -> None:
    """With the condition's standardisation, every checkpoint holds it folded in (released keys) and the
    trainer state the weights as trained: the resumed run continues from those, bit for bit."""
    settings = replace(SETTINGS, standardize_condition=standardize, standardize_samples=4)
    straight = _trainer(tmp_path / "a", tmp_path / "a_state", dataset, settings=settings).run()
    interrupted = _trainer(tmp_path / "b", tmp_path / "b_state", dataset, settings=settings)
    assert interrupted.run(until=4).step == 4
    again = _trainer(
        tmp_path / "b",
        tmp_path / "b_state",
        dataset,
        InternVLAM1.from_pretrained(tmp_path / "b"),
        settings=settings,
    )
    assert again.resume() and again.step == 4
    folded = read_state_dict(checkpoint_path(tmp_path / "b", 4))
    unfolded = again.model.state_dict()
    assert folded.keys() == unfolded.keys()
    differ = {key for key in folded if not torch.equal(folded[key], unfolded[key])}
    assert differ == (set(FOLDED_KEYS) if standardize else set())
    resumed = again.run()
    assert (straight.step, resumed.step) == (6, 6)
    assert [r["step"] for r in resumed.history] == [1, 2, 3, 4, 5, 6]
    logged = [json.loads(line)["step"] for line in (tmp_path / "b" / LOG_FILE).read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]
    a, b = read_state_dict(straight.checkpoint), read_state_dict(resumed.checkpoint)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert [r["loss"] for r in straight.history] == [r["loss"] for r in resumed.history]


def test_resume_refuses_a_state_saved_with_the_other_standardization_setting(tmp_path, dataset) -> None:
    settings = replace(SETTINGS, standardize_condition=True, standardize_samples=2)
    _trainer(tmp_path / "run", tmp_path / "state", dataset, settings=settings).run(until=1)
    model = InternVLAM1.from_pretrained(tmp_path / "run")
    with pytest.raises(ValueError, match="standardize_condition=True"):
        _trainer(tmp_path / "run", tmp_path / "state", dataset, model).resume()


def test_train_run_writes_a_loadable_run_with_its_settings(tmp_path, dataset) -> None:
    spec = DataSpec(dataset, CAMERAS, ACTION_KEYS, "sim")
    result = train_run(
        spec,
        tmp_path / "run",
        SETTINGS,
        ModelSource(dims=SMALL_MODEL_DIMS, texts=TASKS),
        grounding=GROUNDING,
        log=print,
    )
    assert result.step == 6 and {"action_loss", "grounding_loss", "lr"} <= set(result.history[-1])
    model = InternVLAM1.from_pretrained(tmp_path / "run")
    trainer = model.config.raw["trainer"]
    assert trainer["settings"]["steps"] == 6 and trainer["grounding_template"] == "find {instruction}"
    assert trainer["data"]["camera_keys"] == list(CAMERAS) and model.unnorm_keys == ["sim"]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "steps_2_pytorch_model.pt",
        "steps_4_pytorch_model.pt",
        "steps_6_pytorch_model.pt",
    ]


def test_data_root_is_recorded_home_relative(tmp_path, monkeypatch) -> None:
    """A published run's config names the data as ``~/...``, not one user's home folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = DataSpec(tmp_path / "home" / "data" / "sim", CAMERAS, ACTION_KEYS, "sim")
    assert spec.to_json()["root"] == "~/data/sim"
    assert DataSpec(tmp_path / "elsewhere", CAMERAS, ACTION_KEYS, "sim").to_json()["root"] == str(
        tmp_path / "elsewhere"
    )


def test_fine_tuning_on_the_shared_dataset(tmp_path, shared_dataset, capsys) -> None:
    """A few steps from a (tiny, random) pretrained run on the released Franka action space."""
    source = write_tiny_run(tmp_path / "tiny")
    action_keys = ["action.delta_eef_position", "action.delta_eef_rotation", "action.gripper_close"]
    args = ["--dataset", str(shared_dataset), "--out", str(tmp_path / "ft"), "--init-from", str(source)]
    args += ["--camera-keys", "video.ego_view", "--action-keys", *action_keys, "--episodes", "1"]
    args += ["--steps", "2", "--batch-size", "2", "--repeated-diffusion-steps", "1", "--log-every", "1"]
    assert main(args) == 0
    assert "done: 2 steps" in capsys.readouterr().out
    model = InternVLAM1.from_pretrained(tmp_path / "ft")
    expected = compute_statistics(LeRobotDataset(shared_dataset, action_keys=action_keys, episodes=[1]))
    assert model.norm_stats["franka"]["action"]["q01"] == expected.action.q01.tolist()
    assert model.norm_stats["franka"]["action"]["mask"] == [True] * 6 + [False]
    assert (tmp_path / "ft" / "base_vlm" / "tokenizer.json").is_file()  # copied from the source run
    assert len((tmp_path / "ft" / LOG_FILE).read_text().splitlines()) == 2


def test_command_line_errors_name_the_problem(tmp_path, dataset, capsys) -> None:
    args = ["--dataset", str(dataset), "--out", str(tmp_path / "x"), "--camera-keys", "video.nope"]
    assert main([*args, "--action-keys", *ACTION_KEYS, "--steps", "1"]) == 2
    assert "video.nope" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch_size must be positive"):
        TrainSettings(batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        TrainSettings(batch_size=1, standardize_condition=True)


def test_the_vlm_and_the_action_path_are_clipped_on_their_own(tmp_path) -> None:
    model, _ = new_model(tmp_path, SMALL_MODEL_DIMS, {}, tokenizer_corpus(TASKS, 64), seed=0)
    groups = clip_groups(model)
    names = {id(p): name for name, p in model.named_parameters()}
    assert {names[id(p)].split(".")[0] for p in groups["vlm"]} == {"qwen_vl_interface"}
    assert "qwen_vl_interface" not in {names[id(p)].split(".")[0] for p in groups["action"]}
    assert len(groups["vlm"]) + len(groups["action"]) == sum(p.requires_grad for p in model.parameters())
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 1e3 if id(parameter) in map(id, groups["vlm"]) else 1e-4)
    action_before = [p.grad.clone() for p in groups["action"]]
    norms = clip_gradients(groups, 1.0)
    assert norms["vlm_grad_norm"] > 1e3 and norms["action_grad_norm"] < 1.0
    # a huge VLM gradient is brought to the limit without shrinking the action path's small one
    assert torch.linalg.vector_norm(
        torch.cat([p.grad.flatten() for p in groups["vlm"]])
    ).item() == pytest.approx(1.0, rel=1e-3)
    assert all(torch.equal(p.grad, before) for p, before in zip(groups["action"], action_before, strict=True))


def test_switches_are_on_off_options_on_the_command_line(dataset) -> None:
    required = ["--dataset", str(dataset), "--out", "x", "--camera-keys", "c", "--action-keys", "a"]
    assert parser().parse_args(required).standardize_condition is None  # the settings' default decides
    assert parser().parse_args([*required, "--standardize-condition"]).standardize_condition is True
    assert parser().parse_args([*required, "--no-standardize-condition"]).standardize_condition is False
