"""Train the built-in default model end to end on a CPU, within a time budget (60 min by default).

1. Record scripted-expert demonstrations of the task family in the simulator (LeRobot v2.1, scene and
   wrist cameras at 224 px, grounding labels on every frame), from home unless ``--random-start`` asks
   for random arm poses, with ``--perturb`` DART-style pushes of the executed path.
2. Compute the action statistics and train a small InternVLA-M1 from scratch
   (``internvla_policy.training.DEFAULT_MODEL_DIMS``): the action diffusion loss on views that show the
   target boxes half of the time (drawn as the policy's ``overlay`` mode draws the grounding), co-trained
   with the grounding answer loss on the grounding node's own box prompt. Training gets whatever time
   the budget leaves; the learning-rate schedule ends with it.
3. Evaluate briefly in closed loop (with and without guidance) and write MODEL_CARD.md.

Training runs in ``--work``; only at the end are the files the loader and the card need copied to the
output folder (default: ``src/internvla_policy/models/default``, where ``checkpoint: builtin`` looks),
so a half-trained model is never picked up there. A second call reuses the recorded data in ``--work``.

Usage: python -m internvla_bringup.default_model [--budget-min 60] [--out DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from internvla_bringup.checkpoints import cache_dir
from internvla_bringup.evaluation import NO_GUIDANCE, EvalSettings, Evaluator
from internvla_bringup.sim.record import (
    ACTION_KEYS,
    Perturbation,
    camera_mounts,
    read_expert_report,
    record_expert_dataset,
)
from internvla_bringup.sim.robots import SCENE_CAMERA
from internvla_bringup.sim.scene import BLOCK_COLOURS, BOWL, block_name
from internvla_bringup.sim.tasks import DEFAULT_KINDS, Task
from internvla_grounding.prompts import DEFAULT_TEMPLATES, GroundingKind, render
from internvla_policy.model.checkpoint import locate_run
from internvla_policy.training import DataSpec, GroundingTask, ModelSource, TrainSettings, train_run
from internvla_policy.training.build import BASE_VLM_DIR, DEFAULT_MODEL_DIMS
from internvla_policy.training.diagnostics import USAGE_FILE, describe, run_diagnostics, write_usage
from internvla_policy.training.run_files import LOG_FILE
from internvla_policy.training.samples import grounding_answer, read_grounding

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "internvla_policy" / "models" / "default"
SUMMARY_FILE = "training_summary.json"
CAMERA_KEYS = (f"video.{SCENE_CAMERA}", "video.wrist_camera")
UNNORM_KEY = "franka"
IMAGE_SIZE = 224
GROUNDING_TEMPLATE = DEFAULT_TEMPLATES[GroundingKind.BOX]
SETTINGS = TrainSettings(
    steps=100_000,  # the time budget ends the run long before
    batch_size=16,
    learning_rate=1e-3,
    warmup_steps=100,
    repeated_diffusion_steps=2,
    overlay_probability=0.5,
    grounding_batch_size=8,
    grounding_weight=0.5,
    standardize_condition=True,  # the Q-Former's output differs across scenes by ~1% (DESIGN.md §6)
    merger_lr_scale=0.1,  # keeps Qwen's image tokens near its text tokens' scale (trainer.optimizer_groups)
    seed=0,
    save_every=500,
)


def task_family() -> list[str]:
    """Every instruction of the default task kinds, in a fixed order."""
    tasks = []
    for colour in BLOCK_COLOURS:
        tasks.append(Task("pick", block_name(colour)).instruction)
        if "place_in_bowl" in DEFAULT_KINDS:
            tasks.append(Task("place_in_bowl", block_name(colour), BOWL).instruction)
    return tasks


def tokenizer_texts(data_dir: Path, answers: int = 32) -> list[str]:
    """Instructions, their grounding prompts and some recorded answers: what the tokenizer must encode."""
    instructions = task_family()
    prompts = [render(GROUNDING_TEMPLATE, instruction) for instruction in instructions]
    labels = [result for episode in read_grounding(data_dir).values() for result in episode.targets]
    step = max(1, len(labels) // answers)
    examples = [
        grounding_answer(result, (result.image_width, result.image_height)) for result in labels[::step]
    ]
    return instructions + prompts + examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m internvla_bringup.default_model", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="run folder of the trained model")
    parser.add_argument(
        "--work", type=Path, default=cache_dir() / "default_model", help="data, state, evaluation"
    )
    parser.add_argument("--budget-min", type=float, default=60.0, help="wall-clock budget for all steps")
    parser.add_argument("--episodes", type=int, default=150, help="expert demonstrations to record")
    parser.add_argument(
        "--random-start",
        type=float,
        default=0.0,
        help="fraction of the demonstrations starting from a random arm pose instead of home "
        "(docs/training/README.md: 0.75 trained a worse model within the hour)",
    )
    parser.add_argument(
        "--perturb", type=float, default=0.0, help="chance per frame of a DART-style push of the path"
    )
    parser.add_argument("--eval-episodes", type=int, default=5, help="seeds for the closing evaluation")
    parser.add_argument(
        "--reserve-min", type=float, default=7.0, help="budget kept for decoding and evaluation"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch CPU threads (default: every core this process may use; measured here, 2 threads on "
        "2 cores trained 37%% more steps in the hour than 1)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the trainer state in --work")
    parser.add_argument(
        "--card-from",
        type=Path,
        metavar="EVAL_JSON",
        help="only rewrite --out's model card with this eval.json",
    )
    args = parser.parse_args(argv)
    if args.card_from:
        return rewrite_card(args.out, args.card_from)
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    log = _logger(started)
    data_dir = args.work / "sim_expert"
    perturbation = Perturbation(probability=args.perturb)
    if not recorded_as_asked(data_dir, args.episodes, args.random_start, perturbation):
        shutil.rmtree(data_dir, ignore_errors=True)
        record_expert_dataset(
            data_dir,
            args.episodes,
            seed=0,
            image_size=IMAGE_SIZE,
            label_stride=1,
            random_start=args.random_start,
            perturbation=perturbation,
            log=log,
        )
    train_s = args.budget_min * 60 - (time.monotonic() - started) - args.reserve_min * 60
    if train_s < 60:
        print("error: the budget leaves less than a minute of training", file=sys.stderr)
        return 2
    log(f"training for {train_s / 60:.1f} min")
    run_dir = args.work / "run"
    result = train_run(
        DataSpec(data_dir, CAMERA_KEYS, ACTION_KEYS, UNNORM_KEY),
        run_dir,
        TrainSettings(**{**SETTINGS.to_json(), "time_limit_s": train_s}),
        ModelSource(dims=DEFAULT_MODEL_DIMS, texts=tokenizer_texts(data_dir), max_coordinate=IMAGE_SIZE),
        grounding=GroundingTask(GROUNDING_TEMPLATE, functools.partial(render, GROUNDING_TEMPLATE)),
        state_dir=args.work / "trainer_state",
        resume=args.resume,
        log=log,
    )
    diagnostics = run_diagnostics(run_dir)
    write_usage(run_dir, diagnostics)
    log(describe(diagnostics))
    evaluation = Evaluator(
        EvalSettings(checkpoint=str(run_dir), episodes=args.eval_episodes), args.work / "eval", log
    ).run(args.work / "eval")
    summary = training_summary(data_dir, result.step, result.elapsed_s, time.monotonic() - started)
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    (run_dir / "MODEL_CARD.md").write_text(model_card(run_dir, summary, result.history, evaluation))
    publish(run_dir, result.checkpoint, args.out)
    log(f"done in {(time.monotonic() - started) / 60:.1f} min; model card: {args.out / 'MODEL_CARD.md'}")
    return 0


def recorded_as_asked(data_dir: Path, episodes: int, random_start: float, perturbation: Perturbation) -> bool:
    """Whether ``data_dir`` holds a finished recording with this command's settings (to reuse it)."""
    recorded = read_expert_report(data_dir)
    if recorded is None:
        return False
    wanted = {
        "episodes": episodes,
        "seed": 0,
        "image_size": [IMAGE_SIZE, IMAGE_SIZE],
        "random_start": random_start,
        "perturbation": asdict(perturbation),
        "cameras": camera_mounts("franka"),
    }
    return all(recorded.get(key) == value for key, value in wanted.items())


def rewrite_card(run_dir: Path, eval_json: Path) -> int:
    """MODEL_CARD.md of a published run again, with the success measured by a (longer) evaluation."""
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    history = [json.loads(line) for line in (run_dir / LOG_FILE).read_text().splitlines()]
    evaluation = json.loads(eval_json.read_text())
    (run_dir / "MODEL_CARD.md").write_text(model_card(run_dir, summary, history, evaluation))
    print(f"wrote {run_dir / 'MODEL_CARD.md'} with {evaluation['episodes']} evaluated seeds")
    return 0


def training_summary(data_dir: Path, steps: int, train_s: float, total_s: float) -> dict[str, Any]:
    """What the card reports about the data and the time spent (kept in the run: the data is not)."""
    expert = read_expert_report(data_dir)
    info = json.loads((data_dir / "meta" / "info.json").read_text())
    return {
        "steps": steps,
        "train_s": round(train_s, 1),
        "total_s": round(total_s, 1),
        "episodes": info["total_episodes"],
        "frames": info["total_frames"],
        "fps": info["fps"],
        "expert_success_rate": expert["expert_success_rate"],
        "image_size": IMAGE_SIZE,
        "random_start": expert["random_start"],
        "perturbation": expert["perturbation"],
    }


def publish(run_dir: Path, checkpoint: Path, out: Path) -> None:
    """Replace ``out`` with the run's loadable files (config, statistics, base VLM, weights), card and log."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "checkpoints").mkdir(parents=True)
    for name in (
        "config.yaml",
        "dataset_statistics.json",
        "MODEL_CARD.md",
        SUMMARY_FILE,
        LOG_FILE,
        USAGE_FILE,
    ):
        shutil.copy2(run_dir / name, out / name)
    shutil.copytree(run_dir / BASE_VLM_DIR, out / BASE_VLM_DIR)
    shutil.copy2(checkpoint, out / "checkpoints" / checkpoint.name)


def _logger(started: float) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(f"[{(time.monotonic() - started) / 60:5.1f} min] {message}", flush=True)

    return log


def model_card(
    run_dir: Path, summary: dict[str, Any], history: list[dict[str, Any]], evaluation: dict[str, Any]
) -> str:
    """MODEL_CARD.md: what the model is, what it was trained on, how long, its losses and its success."""
    checkpoint = locate_run(run_dir).checkpoint
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    parameters = sum(v.numel() for k, v in state.items() if not k.endswith("lm_head.weight"))
    first, last = history[0], history[-1]
    per_task = "\n".join(
        f"| {kind} | {row['episodes']} | {_pct(row['success_rate'])} | "
        f"{_pct(row['success_rate_no_guidance'])} |"
        for kind, row in evaluation["per_task"].items()
    )
    dims = "\n".join(f"- {key}: {value}" for key, value in asdict(DEFAULT_MODEL_DIMS).items())
    return f"""# Built-in default model (internvla-ros)

A small InternVLA-M1 trained from scratch in the simulator on the task family
({", ".join(task_family())}) with the simulated Franka, within a one-hour CPU budget. The measured
success below is what it does; `docs/training/README.md` analyses it. It has the released
architecture and state-dict key layout (Qwen2.5-VL, DINOv2, layer-wise Q-Former, DiT action head) at
small widths; it is not the released 3B model and knows nothing outside this task family.

## Files
- `config.yaml` (model, data and training settings), `dataset_statistics.json` (unnorm key `{UNNORM_KEY}`),
  `checkpoints/{checkpoint.name}` ({checkpoint.stat().st_size / 1e6:.1f} MB, float32), `base_vlm/`
  (tokenizer, processor and Qwen config), `train_log.jsonl` (losses every 10 steps).
- Inputs: scene and wrist camera (in that order), resized to {DEFAULT_MODEL_DIMS.image_size} px; the
  instruction as written. Output: 16-step chunks of 7-D delta end-effector actions (base frame, metres and
  roll-pitch-yaw radians, gripper 1 = open) at 10 Hz.

## Data
{summary["episodes"]} scripted-expert episodes ({summary["frames"]} frames, seeds from 0, expert
success {summary["expert_success_rate"]:.0%} with failures dropped), recorded at {summary["image_size"]} px
and {summary["fps"]} Hz with grounding labels (boxes of the named objects in the scene camera) on every
frame. {_start_line(summary)}

## Training
{last["step"]} steps of batch {SETTINGS.batch_size} (x{SETTINGS.repeated_diffusion_steps} diffusion
samples each) in {summary["train_s"] / 60:.1f} min on CPU ({summary["total_s"] / 60:.1f} min for the whole
command including recording and a short evaluation). AdamW, learning rate {SETTINGS.learning_rate} with
warm-up and cosine decay; gradients clipped to norm {SETTINGS.grad_clip} separately for the VLM and
the action path (`train_log.jsonl` logs both norms). Spatial guidance: half of the samples show the
target boxes drawn on the scene view (the policy's `overlay` mode), and every step co-trains the
grounding answer (batch {SETTINGS.grounding_batch_size}, weight {SETTINGS.grounding_weight}) to the
grounding node's box prompt.

| | first logged (step {first["step"]}) | last (step {last["step"]}) |
|---|---|---|
| action diffusion loss | {first["action_loss"]:.4f} | {last["action_loss"]:.4f} |
| grounding answer loss | {first["grounding_loss"]:.4f} | {last["grounding_loss"]:.4f} |

{_usage_line(run_dir)}

Parameters: {parameters:,}. Dimensions:
{dims}

## Measured success
Closed loop in the simulator through the policy node's core ({evaluation["episodes"]} held-out seeds from
{evaluation["seeds"][0]}, at most {evaluation["settings"]["max_steps"]} ticks):
success {_pct(evaluation["success_rate"])} with `{evaluation["guidance_mode"]}` guidance from the model's own
grounding, {_pct(evaluation["success_rate_no_guidance"])} with guidance `{NO_GUIDANCE}`; grounding box IoU
{_num(evaluation["grounding_iou"])} on those scenes.

| task | episodes | with guidance | without |
|---|---|---|---|
{per_task}

{_approach_line(evaluation)}

Reproduce: `python -m internvla_bringup.default_model` (training), `internvla eval --episodes 50`
(evaluation).
"""


def _start_line(summary: dict[str, Any]) -> str:
    """How the demonstrations started and whether their paths were pushed (absent: home, none)."""
    push = Perturbation(**summary.get("perturbation", {}))
    pushes = (
        f"the executed path was pushed off by about {push.std_m * 100:.0f} cm for {push.frames} frames with "
        f"chance {push.probability:g} per frame, the labels staying the expert's (DART-style)"
        if push.probability > 0
        else "no pushes"
    )
    fraction = summary.get("random_start", 0.0)
    starts = "Every episode starts at home"
    if fraction:
        starts = f"{fraction:.0%} of the episodes start from a random arm pose"
    return f"{starts}; {pushes}."


def _approach_line(evaluation: dict[str, Any]) -> str:
    """Where the policy went for the object, success or not (eval.json's ``approach``)."""
    approach = evaluation.get("approach", {})
    parts = []
    for key, name in (("guidance", "with guidance"), ("no_guidance", "without")):
        row = approach.get(key)
        if row is None or row["heading_cos"] is None:
            continue
        closest = row["closest_approach_m"]
        parts.append(
            f"{name}: first-chunk heading cosine {_num(row['heading_cos'])}, lateral correlation "
            f"{_num(row['lateral_correlation'])}, closest approach "
            f"{'n/a' if closest is None else f'{closest * 100:.1f} cm'}"
        )
    if not parts:
        return "Approach measures: not in this evaluation."
    return (
        "How it goes for the object to pick (1 = the first chunk heads straight at it, 0 = blind; the "
        "correlation of its first sideways move with where the object lies; the tool's closest distance to "
        "it): " + "; ".join(parts) + "."
    )


def _usage_line(run_dir: Path) -> str:
    """What the card says about whether the model acts on its inputs (``condition_usage.json``)."""
    path = run_dir / USAGE_FILE
    if not path.is_file():
        return "Condition usage: not measured (`python -m internvla_policy.training.diagnostics RUN`)."
    usage = json.loads(path.read_text())
    open_loop = usage["open_loop"]
    return (
        f"Does it act on what it sees? On {usage['samples']} training samples the action loss is "
        f"{usage['own']:.4f} with each sample's own condition, {usage['shuffled']:.4f} with the conditions "
        f'shuffled across the batch and {usage["uncondition"]:.4f} with the learned "no condition" '
        f"(gain {usage['gain']:.1%}). Open loop on recorded frames, its chunks' first steps are off by "
        f"{open_loop['model_m'] * 1e3:.1f} mm against {open_loop['mean_action_m'] * 1e3:.1f} mm for the "
        f"data's mean action (`python -m internvla_policy.training.diagnostics`)."
        + _start_response_line(usage)
    )


def _start_response_line(usage: dict[str, Any]) -> str:
    """The start response of ``condition_usage.json``, when the diagnostics that wrote it measured one."""
    start = usage.get("start")
    if start is None:
        return ""
    sideways = start["axes"]["y"]
    seeds = start.get("seeds", 1)  # diagnostics before the seed spread sampled one seed
    over_seeds = (
        f" (averaged over {seeds} noise seeds, which spread it by {sideways['seed_std_m'] * 100:.1f} cm)"
        if seeds > 1
        else " (one noise seed)"
    )
    return (
        f" From each episode's first frame ({start['episodes']} training episodes), the first "
        f"sideways move of its chunks spreads {sideways['model_std_m'] * 100:.1f} cm across scenes"
        f"{over_seeds} against {sideways['recorded_std_m'] * 100:.1f} cm for the expert (correlation "
        f"{_num(sideways['correlation'])}), {_locates(sideways)}"
    )


def _locates(sideways: dict[str, Any]) -> str:
    """A start that spreads less than a quarter of the expert's is, in practice, the same for every scene."""
    if sideways["model_std_m"] < 0.25 * sideways["recorded_std_m"]:
        return (
            "so it starts the same way whatever the scene and does not locate the block from its start pose."
        )
    return "so its start depends on the scene."


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
