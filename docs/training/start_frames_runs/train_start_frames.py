"""Experiment record (docs/training/README.md, "Fifth attempt"): the built-in model's recipe trained on
the first frames of each episode only, where the expert's first moves depend on where the block lies.

    python docs/training/start_frames_runs/train_start_frames.py OUT --minutes 8 [--no-grounding]
        [--lr 1e-3] [--colour red] [--threads 2] [--save-every 0]

then ``python -m internvla_policy.training.diagnostics OUT --episodes 0 1 ... 39`` for its start response.
Reads the data ``make train-default`` records (its cache folder). Not part of the package: it swaps the
sampler of ``internvla_policy.training`` for one that draws from the first ``--frames`` frames.
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import replace
from pathlib import Path

import torch

from internvla_bringup.checkpoints import cache_dir
from internvla_bringup.default_model import (
    ACTION_KEYS,
    CAMERA_KEYS,
    GROUNDING_TEMPLATE,
    IMAGE_SIZE,
    SETTINGS,
    UNNORM_KEY,
    tokenizer_texts,
)
from internvla_grounding.prompts import render
from internvla_policy.data import LeRobotDataset
from internvla_policy.training import DataSpec, GroundingTask, ModelSource, pipeline, train_run
from internvla_policy.training.build import DEFAULT_MODEL_DIMS
from internvla_policy.training.samples import TrainingData


def start_frames_data(frames: int) -> type[TrainingData]:
    class StartFrames(TrainingData):
        """Action samples drawn from each episode's first ``frames`` frames only."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.index = self.index[self.index[:, 1] < frames]

    return StartFrames


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--no-grounding", action="store_true")
    parser.add_argument("--lr", type=float, default=SETTINGS.learning_rate)
    parser.add_argument("--colour", help="only the episodes whose instruction names this colour")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-every", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = cache_dir() / "default_model" / "sim_expert"
    episodes = None
    if args.colour:
        reader = LeRobotDataset(root, camera_keys=CAMERA_KEYS, action_keys=ACTION_KEYS)
        episodes = tuple(e for e in reader.episode_indices if args.colour in reader.instruction(e))
    settings = replace(
        SETTINGS,
        learning_rate=args.lr,
        time_limit_s=args.minutes * 60,
        grounding_batch_size=0 if args.no_grounding else SETTINGS.grounding_batch_size,
        save_every=args.save_every,
    )
    pipeline.TrainingData = start_frames_data(args.frames)
    grounding = GroundingTask(GROUNDING_TEMPLATE, functools.partial(render, GROUNDING_TEMPLATE))
    result = train_run(
        DataSpec(root, CAMERA_KEYS, ACTION_KEYS, UNNORM_KEY, episodes),
        args.out,
        settings,
        ModelSource(dims=DEFAULT_MODEL_DIMS, texts=tokenizer_texts(root), max_coordinate=IMAGE_SIZE),
        grounding=None if args.no_grounding else grounding,
    )
    loss = result.history[-1]["action_loss"]
    print(f"{result.step} steps in {result.elapsed_s:.0f} s; last action loss {loss:.4f}")


if __name__ == "__main__":
    main()
