"""A whole training run on a LeRobot dataset: statistics, model, run folder, training, resume.

Used by the fine-tuning command line (``python -m internvla_policy.training``) and by the command
that trains the built-in default model on simulator data (``internvla_bringup.default_model``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from internvla_policy.data import compute_statistics
from internvla_policy.model import InternVLAM1
from internvla_policy.model.tiny import ModelDims

from .build import new_model, pretrained_model, tokenizer_corpus
from .run_files import clear_run_outputs, latest_state, write_run_metadata
from .samples import GROUNDING_FILE, TrainingData, open_reader, read_grounding
from .trainer import Trainer, TrainResult, TrainSettings


@dataclass(frozen=True)
class DataSpec:
    """Which dataset, cameras (in the model's view order) and action keys, under which unnorm key."""

    root: Path
    camera_keys: tuple[str, ...]
    action_keys: tuple[str, ...]
    unnorm_key: str
    episodes: tuple[int, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """The spec as a run's config records it; a root under the home folder is written ``~/...`` so
        a published run names no one's home (readers expand it)."""
        root = self.root.expanduser().absolute()
        home = Path.home()
        shown = Path("~") / root.relative_to(home) if root.is_relative_to(home) else root
        return {**asdict(self), "root": str(shown)}


@dataclass(frozen=True)
class GroundingTask:
    """The grounding question asked at run time: ``prompt(instruction)``, and its template for the record."""

    template: str
    prompt: Callable[[str], str]


@dataclass(frozen=True)
class ModelSource:
    """Start from an existing run (``run``), or from scratch at ``dims`` with a tokenizer for ``texts``."""

    run: Path | None = None
    dims: ModelDims | None = None
    texts: Sequence[str] = ()
    max_coordinate: int = 224

    def describe(self) -> dict[str, Any]:
        if self.run is not None:
            return {"init_from": str(self.run)}
        return {"init_from": "scratch", "dims": asdict(self.dims)}


def train_run(
    spec: DataSpec,
    run_dir: Path,
    settings: TrainSettings,
    source: ModelSource,
    *,
    grounding: GroundingTask | None = None,
    state_dir: Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train into ``run_dir`` (released layout); with ``resume``, continue its newest trainer state."""
    run_dir = Path(run_dir)
    state_dir = state_dir or run_dir / "trainer_state"
    # the episodes that have every chosen camera: the statistics describe exactly the training data
    statistics = compute_statistics(
        open_reader(spec.root, spec.camera_keys, spec.action_keys, 1, spec.episodes)
    )
    norm_stats = {spec.unnorm_key: statistics.to_json()}
    continuing = resume and latest_state(state_dir) is not None
    if continuing:
        model = InternVLAM1.from_pretrained(run_dir)
        tree = dict(model.config.raw)
    elif source.run is not None:
        model, tree = pretrained_model(source.run, run_dir, norm_stats)
    elif source.dims is not None:
        corpus = tokenizer_corpus(source.texts, source.max_coordinate)
        model, tree = new_model(run_dir, source.dims, norm_stats, corpus, settings.seed)
    else:
        raise ValueError("a model source needs an existing run or dimensions for a new model")
    if not continuing:
        clear_run_outputs(run_dir, state_dir)
        tree["trainer"] = {
            "data": spec.to_json(),
            "model": source.describe(),
            "settings": settings.to_json(),
            "grounding_template": grounding.template if grounding and settings.grounding_batch_size else None,
        }
        write_run_metadata(run_dir, tree, {spec.unnorm_key: statistics})
    reader = open_reader(spec.root, spec.camera_keys, spec.action_keys, model.horizon, spec.episodes)
    labels = read_grounding(spec.root) if (spec.root / GROUNDING_FILE).is_file() else None
    log(f"{len(reader.episode_indices)} episodes, {len(reader)} frames from {spec.root}; decoding the videos")
    data = TrainingData(reader, statistics, labels, log)
    trainer = Trainer(
        model,
        data,
        settings,
        run_dir,
        state_dir=state_dir,
        grounding_prompt=grounding.prompt if grounding else None,
        log=log,
    )
    if continuing:
        trainer.resume()
    return trainer.run()
