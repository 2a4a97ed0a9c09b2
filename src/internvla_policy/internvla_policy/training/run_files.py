"""Writing a training run in the released layout, and the trainer state that lets it resume.

The run folder is what ``InternVLAM1.from_pretrained`` reads (config.yaml, dataset_statistics.json,
checkpoints/steps_<N>_pytorch_model.pt: a plain float32 ``state_dict``, so a reload is bit-for-bit),
plus the base VLM folder when the model brought its own. What only training needs (optimizer moments,
step, elapsed time, random states) goes to a separate file per step, by default under
``<run>/trainer_state/``: the weights file stays exactly what the loader expects, and a shipped model
can leave the trainer state behind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from internvla_policy.data import DatasetStatistics, write_statistics

STATE_NAME = re.compile(r"^steps_(\d+)_trainer_state\.pt$")
LOG_FILE = "train_log.jsonl"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"steps_{step}_pytorch_model.pt"


def state_path(state_dir: Path, step: int) -> Path:
    return state_dir / f"steps_{step}_trainer_state.pt"


def write_run_metadata(run_dir: Path, tree: dict[str, Any], statistics: dict[str, DatasetStatistics]) -> None:
    """config.yaml (the model's tree plus the training settings) and dataset_statistics.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    write_statistics(run_dir / "dataset_statistics.json", statistics)


def save_weights(run_dir: Path, weights: Mapping[str, torch.Tensor], step: int) -> Path:
    """A whole model's ``state_dict`` (tied keys included, as upstream saves it) as float32."""
    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to("cpu", torch.float32).clone() for key, value in weights.items()}
    torch.save(state, path)
    return path


@dataclass
class TrainerState:
    """Everything besides the weights that a resumed run needs to continue as if never stopped."""

    step: int
    elapsed_s: float
    optimizer: dict[str, Any]
    torch_generator: torch.Tensor
    numpy_generator: dict[str, Any]
    history: list[dict[str, Any]]
    unfolded: dict[str, torch.Tensor] = field(default_factory=dict)
    """The weights as trained where the checkpoint holds them with the condition's standardisation
    folded in (``standardization``); empty without it."""

    def save(self, state_dir: Path) -> Path:
        path = state_path(state_dir, self.step)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.__dict__, path)
        return path

    @classmethod
    def load(cls, path: Path) -> TrainerState:
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


def latest_state(state_dir: Path) -> Path | None:
    """The trainer state of the highest step in ``state_dir``, or None when there is none."""
    found = {
        int(match.group(1)): path
        for path in (state_dir.iterdir() if state_dir.is_dir() else [])
        if (match := STATE_NAME.match(path.name))
    }
    return found[max(found)] if found else None


def clear_run_outputs(run_dir: Path, state_dir: Path) -> None:
    """Remove the checkpoints, log and trainer states of an earlier run in the same folders, so that a new
    run is never mixed with (or, by a higher step number, shadowed by) an old one."""
    for folder, pattern in ((run_dir / "checkpoints", "steps_*"), (state_dir, "steps_*_trainer_state.pt")):
        for path in folder.glob(pattern) if folder.is_dir() else []:
            path.unlink()
    (run_dir / LOG_FILE).unlink(missing_ok=True)
