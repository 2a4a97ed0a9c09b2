"""The default-model command's pieces: the task family, tokenizer texts, publishing and the model card."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

from internvla_bringup.default_model import (
    IMAGE_SIZE,
    SUMMARY_FILE,
    main,
    publish,
    recorded_as_asked,
    task_family,
    tokenizer_texts,
    training_summary,
)
from internvla_bringup.evaluation import EpisodeResult, EvalSettings, summarize
from internvla_bringup.sim.record import Perturbation, camera_mounts, record_expert_dataset
from internvla_policy.model import InternVLAM1
from internvla_policy.model.checkpoint import locate_run
from internvla_policy.training.diagnostics import (
    USAGE_FILE,
    AxisResponse,
    ConditionUsage,
    Diagnostics,
    OpenLoopError,
    StartResponse,
    write_usage,
)
from internvla_policy.training.run_files import LOG_FILE


def test_task_family_and_tokenizer_texts(tmp_path) -> None:
    family = task_family()
    assert len(family) == 8 and family[:2] == ["pick up the red block", "put the red block in the bowl"]
    data = record_expert_dataset(
        tmp_path / "data", 1, seed=1, image_size=64, label_stride=5, log=lambda _: None
    )
    texts = tokenizer_texts(data)
    assert texts[:8] == family and "Your task is: pick up the red block." in texts[8]
    (answer,) = json.loads(texts[-1])  # seed 1 is "pick up the blue block": one target
    assert answer["label"] == "blue block" and len(answer["bbox_2d"]) == 4
    summary = training_summary(data, steps=7, train_s=60.0, total_s=90.0)
    assert summary["episodes"] == 1 and summary["expert_success_rate"] == 1.0 and summary["steps"] == 7
    assert summary["random_start"] == 0.0 and summary["perturbation"]["probability"] == 0.0


def test_recorded_data_is_reused_only_when_recorded_as_asked(tmp_path) -> None:
    pushes = Perturbation(probability=0.05)
    assert not recorded_as_asked(tmp_path / "nothing", 1, 0.0, Perturbation())
    report = tmp_path / "meta" / "expert_report.json"
    report.parent.mkdir()
    wanted = {
        "episodes": 3,
        "seed": 0,
        "image_size": [IMAGE_SIZE, IMAGE_SIZE],
        "random_start": 0.75,
        "perturbation": asdict(pushes),
        "cameras": camera_mounts("franka"),
    }
    report.write_text(json.dumps({**wanted, "wall_time_s": 1.0}))
    assert recorded_as_asked(tmp_path, 3, 0.75, pushes) and not recorded_as_asked(tmp_path, 4, 0.75, pushes)
    assert not recorded_as_asked(tmp_path, 3, 0.0, pushes)
    # A recording from before these settings existed was from home without pushes...
    older = {k: v for k, v in wanted.items() if k in ("episodes", "seed", "image_size", "cameras")}
    report.write_text(json.dumps(older))
    assert recorded_as_asked(tmp_path, 3, 0.0, Perturbation())
    assert not recorded_as_asked(tmp_path, 3, 0.75, pushes)
    # ...but frames from cameras mounted elsewhere (or not noted) are another dataset.
    moved = json.loads(json.dumps(wanted["cameras"]))
    moved[0]["fovy_deg"] += 10.0
    for cameras in (moved, None):
        report.write_text(json.dumps({**wanted, "cameras": cameras}))
        assert not recorded_as_asked(tmp_path, 3, 0.75, pushes)


def test_publish_and_model_card_from_an_evaluation(tmp_path, small_run) -> None:
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    history = [
        {"step": 10, "loss": 2.0, "action_loss": 0.5, "grounding_loss": 3.0, "lr": 1e-3, "elapsed_s": 5.0},
        {"step": 20, "loss": 1.0, "action_loss": 0.25, "grounding_loss": 1.5, "lr": 1e-4, "elapsed_s": 10.0},
    ]
    (run / LOG_FILE).write_text("".join(json.dumps(record) + "\n" for record in history))
    summary = {"steps": 20, "train_s": 600.0, "total_s": 900.0, "episodes": 3, "frames": 250, "fps": 10}
    (run / SUMMARY_FILE).write_text(json.dumps({**summary, "expert_success_rate": 1.0, "image_size": 224}))
    (run / "MODEL_CARD.md").write_text("placeholder")
    axes = {
        "x": AxisResponse(0.004, 0.01, 0.04, 0.3),
        "y": AxisResponse(0.003, 0.02, 0.073, None),
        "z": AxisResponse(0.001, 0.005, 0.012, 0.0),
    }
    write_usage(
        run,
        Diagnostics(
            ConditionUsage(own=0.08, shuffled=0.1, uncondition=0.11, samples=128),
            OpenLoopError(model_m=0.0038, mean_action_m=0.0092, frames=30),
            StartResponse(axes, condition_spread=0.07, episodes=16, seeds=4),
        ),
    )
    out = tmp_path / "published"
    publish(run, locate_run(run).checkpoint, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "MODEL_CARD.md",
            SUMMARY_FILE,
            LOG_FILE,
            "base_vlm",
            "checkpoints",
            "config.yaml",
            "dataset_statistics.json",
            USAGE_FILE,
        ]
    )
    InternVLAM1.from_pretrained(out)  # the published folder loads on its own
    results = [
        EpisodeResult(1, "overlay", "pick up the red block", "pick", True, 50, "[]", 0.5),
        EpisodeResult(1, "off", "pick up the red block", "pick", False, 200, None, None),
    ]
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(
        json.dumps(summarize(results, EvalSettings(checkpoint="x", episodes=1, seed=1), 3.0))
    )
    assert main(["--out", str(out), "--card-from", str(evaluation)]) == 0
    card = (out / "MODEL_CARD.md").read_text()
    assert "success 100% with `overlay` guidance" in card and "0% with guidance `off`" in card
    assert "| action diffusion loss | 0.5000 | 0.2500 |" in card and "20 steps of batch 16" in card
    assert "Approach measures: not in this evaluation." in card  # these results carry no first chunk
    assert "On 128 training samples the action loss is 0.0800" in card and "(gain 20.0%" in card
    assert "off by 3.8 mm against 9.2 mm" in card
    assert (
        "spreads 0.3 cm across scenes (averaged over 4 noise seeds, which spread it by 2.0 cm) against "
        "7.3 cm for the expert (correlation n/a)"
    ) in card
    assert "so it starts the same way whatever the scene and does not locate the block" in card
    assert "| pick | 1 | 100% | 0% |" in card and "grounding box IoU\n0.50" in card
