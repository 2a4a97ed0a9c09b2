"""Does a trained model act on what it sees? Its action loss with each sample's own condition tokens,
against the same loss with the conditions shuffled across the batch and with the learned "no
condition" (``z_embedder.uncondition``); and its sampled chunks on recorded frames against the
recorded actions, next to what always predicting the data's mean action would score.

A model whose three losses are equal has learnt the average action chunk of its data, whatever its
training loss: the first built-in model measured 0.1056 (own), 0.1078 (shuffled) and 0.1073 (none) on
its own training frames, and went nowhere near the named block in closed loop. Every variant is scored with
the same timesteps and noise, so the differences are paired, not sampling noise.

Open-loop error is the mean absolute error of the first ``OPEN_LOOP_STEPS`` translation steps (the
first three action dimensions, metres) of a chunk sampled as the policy node samples it; the first
model scored 8.7 mm where the mean action scores 8.5 mm (16 episodes, 187 frames).

Start response: from each episode's first frame (the arm at its start pose, nothing yet moved towards
the target), the first ``START_STEPS`` translation steps of the sampled chunk, summed per axis, against
the recorded ones: their spread across episodes and their correlation. Open-loop error averages over
whole episodes, where the arm's own progress tells the way (behaviour cloning's copycat shortcut); a
model that does not locate the target predicts the same start for every scene, which only this
shows. Every scene is sampled with the same ``START_SEEDS`` noise seeds: the spread across scenes (of
the seed-averaged starts) is the scene's doing, the spread across seeds beside it the noise's. With a
single shared seed a model whose sample follows its noise, not its scene, looks like one that starts
the same way everywhere (DESIGN.md §6). The published built-in model measured (with one seed) a
sideways spread of 0.3 cm against the expert's 7.3 cm (correlation -0.22) on its first 16 training
episodes. ``condition_spread`` says where that is lost: the across-episode standard deviation of the
condition tokens at those frames, relative to their overall one (about 0.07 for that model, against
0.11 for the scene camera's pixels).

Usage: python -m internvla_policy.training.diagnostics RUN [--dataset DIR] [--episodes N ...]
(writes RUN/condition_usage.json with the three measures; the dataset and its keys default to the ones the
run was trained on).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from internvla_policy.data import DatasetError, DatasetStatistics
from internvla_policy.data.lerobot import chunk_steps
from internvla_policy.model import CheckpointError, InternVLAM1

from .objective import action_condition, diffusion_loss
from .samples import TrainingData, open_reader

USAGE_FILE = "condition_usage.json"
DEFAULT_EPISODES = 16
"""Episodes scored when none are named: the run's first ones (decoding them all takes minutes)."""
OPEN_LOOP_STEPS = 4
"""Chunk steps compared open loop: what the policy executes before its next chunk arrives."""
OPEN_LOOP_STRIDE = 8
"""Every eighth recorded frame is scored open loop."""
START_STEPS = 8
"""Chunk steps summed for the start response: the first 0.8 s at 10 Hz, where the expert's path to the
target bends sideways."""
START_SEEDS = 4
"""Noise seeds (0, 1, ...) each episode's start is sampled with."""
AXES = ("x", "y", "z")


@dataclass(frozen=True)
class ConditionUsage:
    """Mean action diffusion losses over the same samples, timesteps and noise."""

    own: float
    shuffled: float
    uncondition: float
    samples: int

    @property
    def gain(self) -> float:
        """Share of the shuffled-condition loss that the sample's own condition removes."""
        return 1.0 - self.own / self.shuffled

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "gain": self.gain}


@dataclass(frozen=True)
class OpenLoopError:
    """Mean absolute translation error (metres) of sampled chunks and of the data's mean action."""

    model_m: float
    mean_action_m: float
    frames: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AxisResponse:
    """One translation axis of the start response (metres): spreads across episodes and seeds, and the
    correlation of the seed-averaged start with the recorded one."""

    model_std_m: float
    """Across episodes, of each episode's start averaged over the seeds."""
    seed_std_m: float
    """Across seeds, averaged over the episodes."""
    recorded_std_m: float
    correlation: float | None
    """None when either side does not vary (a model that ignores its inputs)."""


@dataclass(frozen=True)
class StartResponse:
    """Per axis, how the first chunk from each episode's first frame follows the recorded start."""

    axes: dict[str, AxisResponse]
    condition_spread: float
    episodes: int
    seeds: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Diagnostics:
    """The three measures of ``run_diagnostics``."""

    usage: ConditionUsage
    open_loop: OpenLoopError
    start: StartResponse


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


@torch.no_grad()
def start_response(
    model: InternVLAM1,
    data: TrainingData,
    unnorm_key: str,
    *,
    steps: int = START_STEPS,
    seeds: int = START_SEEDS,
) -> StartResponse:
    """The start response over every episode ``data`` holds (at least two), sampled as the node samples
    with the noise seeds 0 .. ``seeds`` - 1 for each."""
    if len(data.episodes) < 2:
        raise ValueError(f"the start response compares episodes: need at least 2, got {len(data.episodes)}")
    views = [data.views(episode, 0) for episode in data.episodes]
    instructions = [data.instructions[episode] for episode in data.episodes]
    predicted = np.array(  # [episode, seed, axis]
        [
            [
                model.predict_action([v], [text], seed=seed, unnorm_key=unnorm_key)
                .actions[0, :steps, :3]
                .sum(0)
                for seed in range(seeds)
            ]
            for v, text in zip(views, instructions, strict=True)
        ]
    )
    per_episode = predicted.mean(axis=1)
    recorded = np.stack([data.reader.actions(e)[:steps, :3].sum(0) for e in data.episodes])
    condition = action_condition(model, views, instructions)
    spread = float(condition.std(dim=0).mean() / condition.std())
    axes = {
        name: AxisResponse(
            float(per_episode[:, i].std()),
            float(predicted[:, :, i].std(axis=1).mean()),
            float(recorded[:, i].std()),
            _correlation(per_episode[:, i], recorded[:, i]),
        )
        for i, name in enumerate(AXES)
    }
    return StartResponse(axes, spread, len(data.episodes), seeds)


def open_loop_error(
    model: InternVLAM1,
    data: TrainingData,
    unnorm_key: str,
    *,
    stride: int = OPEN_LOOP_STRIDE,
    seed: int = 0,
) -> OpenLoopError:
    """Chunks sampled (guidance 1.5, 10 DDIM steps, as the node) on every ``stride``-th recorded frame,
    against the recorded (unnormalised) actions; the frames are the ones ``data`` holds decoded."""
    recorded = {episode: data.reader.actions(episode) for episode in data.episodes}
    mean = np.concatenate(list(recorded.values()))[:, :3].mean(axis=0)
    model_errors, mean_errors = [], []
    for episode, actions in recorded.items():
        for frame in range(0, len(actions), stride):
            chunk = model.predict_action(
                [data.views(episode, frame)], [data.instructions[episode]], seed=seed, unnorm_key=unnorm_key
            ).actions[0]
            truth = actions[chunk_steps(frame, OPEN_LOOP_STEPS, len(actions)), :3]
            model_errors.append(np.abs(chunk[:OPEN_LOOP_STEPS, :3] - truth).mean())
            mean_errors.append(np.abs(mean - truth).mean())
    return OpenLoopError(float(np.mean(model_errors)), float(np.mean(mean_errors)), len(model_errors))


@torch.no_grad()
def condition_usage(
    model: InternVLAM1, data: TrainingData, *, batches: int = 8, batch_size: int = 16, seed: int = 0
) -> ConditionUsage:
    """The three losses over ``batches`` random batches of ``data`` (no overlays, no guidance dropout)."""
    rng = np.random.default_rng(seed)
    net = model.action_model.net
    shuffle = torch.Generator().manual_seed(seed)
    totals = np.zeros(3)
    for batch_index in range(batches):
        batch = data.action_batch(rng, batch_size)
        condition = action_condition(model, batch.views, batch.instructions)
        variants = (
            condition,
            condition[torch.randperm(len(condition), generator=shuffle)],
            net.z_embedder.uncondition.unsqueeze(0).expand_as(condition),
        )
        for index, variant in enumerate(variants):
            totals[index] += diffusion_loss(
                net,
                batch.actions,
                variant,
                num_steps=model.config.diffusion_steps,
                repeats=4,
                cfg_dropout=0.0,
                generator=torch.Generator().manual_seed(seed + batch_index),
            ).item()
    own, shuffled, uncondition = (totals / batches).tolist()
    return ConditionUsage(own, shuffled, uncondition, batches * batch_size)


def run_diagnostics(
    run: Path, dataset: Path | None = None, episodes: list[int] | None = None, batches: int = 8
) -> Diagnostics:
    """Load ``run`` and score it on ``episodes`` of ``dataset`` (default: the first ``DEFAULT_EPISODES``
    of its training data, as its config records)."""
    model = InternVLAM1.from_pretrained(run).eval()
    data_spec = model.config.raw.get("trainer", {}).get("data")
    if data_spec is None:
        raise CheckpointError(f"{run}: its config.yaml has no trainer.data section (not trained here)")
    root = Path(dataset or data_spec["root"]).expanduser()
    unnorm_key = data_spec["unnorm_key"]
    statistics = DatasetStatistics.from_json(model.norm_stats[unnorm_key], f"norm_stats[{unnorm_key!r}]")
    keys = (data_spec["camera_keys"], data_spec["action_keys"], model.horizon)
    if episodes is None:
        trained = open_reader(root, *keys, data_spec.get("episodes")).episode_indices
        episodes = list(trained[:DEFAULT_EPISODES])
    reader = open_reader(root, *keys, episodes)
    data = TrainingData(reader, statistics, None, log=lambda _: None)
    return Diagnostics(
        condition_usage(model, data, batches=batches),
        open_loop_error(model, data, unnorm_key),
        start_response(model, data, unnorm_key),
    )


def write_usage(run: Path, diagnostics: Diagnostics) -> Path:
    """``run/condition_usage.json``, which the built-in model's card reports."""
    path = run / USAGE_FILE
    report = {
        **diagnostics.usage.to_json(),
        "open_loop": diagnostics.open_loop.to_json(),
        "start": diagnostics.start.to_json(),
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def describe(diagnostics: Diagnostics) -> str:
    """The three measures in one line, for consoles and logs."""
    usage, open_loop, sideways = diagnostics.usage, diagnostics.open_loop, diagnostics.start.axes["y"]
    correlation = "n/a" if sideways.correlation is None else f"{sideways.correlation:.2f}"
    return (
        f"action loss with its own condition {usage.own:.4f}, shuffled {usage.shuffled:.4f}, "
        f"none {usage.uncondition:.4f} (gain {usage.gain:.1%}, {usage.samples} samples); open loop "
        f"{open_loop.model_m * 1e3:.1f} mm vs {open_loop.mean_action_m * 1e3:.1f} mm for the mean action "
        f"({open_loop.frames} frames); first sideways move spread {sideways.model_std_m * 100:.1f} cm across "
        f"scenes ({sideways.seed_std_m * 100:.1f} cm across seeds) vs {sideways.recorded_std_m * 100:.1f} cm "
        f"recorded (correlation {correlation}, condition spread {diagnostics.start.condition_spread:.3f}, "
        f"{diagnostics.start.episodes} episodes x {diagnostics.start.seeds} seeds)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m internvla_policy.training.diagnostics", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run", type=Path, help="run folder (released layout, trained by this package)")
    parser.add_argument("--dataset", type=Path, help="LeRobot dataset (default: the run's training data)")
    parser.add_argument(
        "--episodes", type=int, nargs="*", help="episode indices (default: the run's first 16)"
    )
    parser.add_argument("--batches", type=int, default=8, help="batches of 16 samples to score")
    args = parser.parse_args(argv)
    try:
        diagnostics = run_diagnostics(args.run, args.dataset, args.episodes, args.batches)
    except (DatasetError, CheckpointError, FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_usage(args.run, diagnostics)
    print(describe(diagnostics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
