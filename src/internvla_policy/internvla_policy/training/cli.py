"""Fine-tune (or train from scratch) on a LeRobot dataset from the command line.

Example, the shared Franka demonstrations, starting from the built-in model::

    python -m internvla_policy.training --dataset ../shared/data/sim_pick_place --out runs/pick_place \
        --init-from src/internvla_policy/models/default --camera-keys video.ego_view \
        --action-keys action.delta_eef_position action.delta_eef_rotation action.gripper_close \
        --unnorm-key franka --steps 300 --batch-size 8

The run folder is in the released layout, loadable by ``InternVLAM1.from_pretrained`` and the policy
node's ``checkpoint`` parameter. ``--resume`` continues an interrupted run where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

import torch

from internvla_policy.data import DatasetError
from internvla_policy.model import CheckpointError

from .build import DEFAULT_MODEL_DIMS
from .pipeline import DataSpec, ModelSource, train_run
from .trainer import TrainSettings

SCRATCH = "scratch"


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m internvla_policy.training", description=__doc__.split("\n")[0]
    )
    result.add_argument("--dataset", required=True, type=Path, help="LeRobot v2.x dataset folder")
    result.add_argument("--out", required=True, type=Path, help="run folder to write (released layout)")
    result.add_argument(
        "--init-from", default=SCRATCH, help=f"run folder or checkpoint to start from, or '{SCRATCH}'"
    )
    result.add_argument(
        "--camera-keys", nargs="+", required=True, help="video keys, in the model's view order"
    )
    result.add_argument(
        "--action-keys", nargs="+", required=True, help="action keys making up the 7-D action"
    )
    result.add_argument(
        "--unnorm-key", default="franka", help="key of the statistics in dataset_statistics.json"
    )
    result.add_argument(
        "--episodes", type=int, nargs="*", default=None, help="episode indices (default: all)"
    )
    result.add_argument("--resume", action="store_true", help="continue the newest trainer state of --out")
    result.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    defaults = TrainSettings()
    for field in fields(TrainSettings):
        option, default = f"--{field.name.replace('_', '-')}", getattr(defaults, field.name)
        if isinstance(default, bool):  # argparse's type=bool would read "False" as true
            result.add_argument(option, action=argparse.BooleanOptionalAction, default=None)
        else:
            result.add_argument(option, type=type(default), default=None)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {
        f.name: getattr(args, f.name) for f in fields(TrainSettings) if getattr(args, f.name) is not None
    }
    spec = DataSpec(
        args.dataset,
        tuple(args.camera_keys),
        tuple(args.action_keys),
        args.unnorm_key,
        tuple(args.episodes) if args.episodes is not None else None,
    )
    source = (
        ModelSource(dims=DEFAULT_MODEL_DIMS)
        if args.init_from == SCRATCH
        else ModelSource(run=Path(args.init_from).expanduser())
    )
    try:
        result = train_run(spec, args.out, TrainSettings(**overrides), source, resume=args.resume)
    except (DatasetError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    last = result.history[-1] if result.history else {}
    print(
        f"done: {result.step} steps, {result.elapsed_s:.0f} s, last loss {last.get('loss', float('nan')):.4f}"
    )
    print(f"weights: {result.checkpoint}")
    return 0
