"""The training loop: AdamW on the action loss (plus the grounding loss when co-training), a warmed-up
cosine learning rate, checkpoints in the released layout, resume, a progress bar and a JSONL log.

A run can be bounded by steps or by wall-clock time (``time_limit_s``): the learning-rate schedule
follows whichever budget is used up faster, so a run on a slower or busier machine still anneals and
ends on time, and a run without a time limit is exactly reproducible from its seed.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from internvla_policy.model import InternVLAM1
from internvla_policy.model.checkpoint import read_state_dict

from .objective import action_condition, diffusion_loss, grounding_loss
from .run_files import LOG_FILE, TrainerState, checkpoint_path, latest_state, save_weights
from .samples import TrainingData
from .standardization import folded_weights, measure_statistics, standardize, trained_weights

PRINT_EVERY_RECORDS = 10
"""Every tenth logged record is also printed, so the console log shows the loss curve."""
VLM_MODULE = "qwen_vl_interface"
VISION_MERGER = "qwen_vl_interface.model.model.visual.merger."


def clip_groups(model: InternVLAM1) -> dict[str, list[torch.nn.Parameter]]:
    """The trainable parameters split into the VLM and the action path (DINO, Q-Former, DiT).

    Each group's gradient is clipped on its own. Under one global clip, a from-scratch Qwen's lower
    layers (whose gradients from the action loss reached norms of 10^3 while the DiT's were 10^-1)
    set the scale for everything: the action path's gradients were shrunk to the size of Adam's
    epsilon, and the built-in model trained that way learnt the unconditional action distribution
    (its loss was the same with its condition tokens shuffled across the batch).
    """
    groups: dict[str, list[torch.nn.Parameter]] = {"vlm": [], "action": []}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups["vlm" if name.startswith(VLM_MODULE + ".") else "action"].append(parameter)
    return groups


def optimizer_groups(model: InternVLAM1, merger_lr_scale: float) -> list[dict[str, Any]]:
    """The trainable parameters as AdamW groups: Qwen's vision merger with its learning rate scaled by
    ``merger_lr_scale`` (each group's ``lr_scale``), everything else at the schedule's rate.

    Why: the merger's output enters Qwen's decoder as the image tokens, with nothing after it to hold
    their scale, and Adam moves its weights by about the learning rate per step in directions that
    compound. From the text embeddings' RMS at the start (``build.match_image_token_scale``), the
    built-in recipe took the image tokens to 0.85 against 0.031 for text in 150 steps (12 against 0.05
    in the published model after 4,249), so that the decoder layers no longer changed them. With the
    merger at a tenth of the rate: 0.075 against 0.033 after 150 steps, with the same losses.
    """
    merger, rest = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (merger if name.startswith(VISION_MERGER) else rest).append(parameter)
    return [{"params": rest, "lr_scale": 1.0}, {"params": merger, "lr_scale": merger_lr_scale}]


def clip_gradients(groups: dict[str, list[torch.nn.Parameter]], limit: float) -> dict[str, float]:
    """Clip each group's gradient to norm ``limit``; returns ``{group}_grad_norm`` before clipping."""
    return {
        f"{name}_grad_norm": torch.nn.utils.clip_grad_norm_(parameters, limit).item()
        for name, parameters in groups.items()
    }


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; they are written into the run's config.yaml under ``trainer``."""

    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    repeated_diffusion_steps: int = 4
    cfg_dropout: float = 0.1
    overlay_probability: float = 0.0
    """Share of action samples whose labelled camera view shows the target boxes (spatial guidance)."""
    grounding_batch_size: int = 0
    """Grounding questions per step (0: no grounding loss)."""
    grounding_weight: float = 0.5
    grad_clip: float = 1.0
    """Gradient-norm limit, applied to each of ``clip_groups`` separately."""
    merger_lr_scale: float = 1.0
    """Learning-rate factor of Qwen's vision merger (``optimizer_groups``)."""
    standardize_condition: bool = False
    """Standardise the condition tokens across samples before the DiT (``standardization``), folded into
    its weights in every checkpoint. For models trained from scratch, whose condition differs across
    samples by about 1% of its variance; a pretrained DiT expects its condition as it was."""
    standardize_samples: int = 1024
    """Training samples the standardisation's statistics are measured on for each checkpoint."""
    seed: int = 0
    time_limit_s: float = 0.0
    """Stop (and finish the schedule) after this much training time; 0 means steps alone decide."""
    save_every: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "learning_rate": self.learning_rate}
        positive |= {"repeated_diffusion_steps": self.repeated_diffusion_steps, "log_every": self.log_every}
        positive["standardize_samples"] = self.standardize_samples
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.standardize_condition and self.batch_size < 2:
            raise ValueError("standardize_condition compares the samples of a batch: batch_size must be >= 2")
        for name in ("cfg_dropout", "overlay_probability", "min_lr_ratio", "merger_lr_scale"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """Where training ended: the step, the training time, the logged losses and the last checkpoint."""

    step: int
    elapsed_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None


class Trainer:
    """Trains ``model`` on ``data`` into ``run_dir``, whose config.yaml and statistics are written already."""

    def __init__(
        self,
        model: InternVLAM1,
        data: TrainingData,
        settings: TrainSettings,
        run_dir: Path,
        *,
        state_dir: Path | None = None,
        grounding_prompt: Callable[[str], str] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        if settings.grounding_batch_size and (grounding_prompt is None or not data.has_grounding):
            raise ValueError(
                "the grounding loss needs grounding labels in the dataset and a grounding prompt"
            )
        self.model = model.requires_grad_(True).train()
        self.data = data
        self.settings = settings
        self.run_dir = run_dir
        self.state_dir = state_dir or run_dir / "trainer_state"
        self.grounding_prompt = grounding_prompt
        self.log = log
        self.optimizer = torch.optim.AdamW(
            optimizer_groups(model, settings.merger_lr_scale),
            lr=settings.learning_rate,
            weight_decay=settings.weight_decay,
        )
        self.clip_groups = clip_groups(model)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.rng = np.random.default_rng(settings.seed)
        self.step = 0
        self.elapsed_s = 0.0
        self.history: list[dict[str, Any]] = []

    def resume(self) -> bool:
        """Continue from the newest trainer state in ``state_dir`` (and the weights of that step)."""
        path = latest_state(self.state_dir)
        if path is None:
            return False
        state = TrainerState.load(path)
        if bool(state.unfolded) != self.settings.standardize_condition:
            raise ValueError(
                f"{path} was saved with standardize_condition={bool(state.unfolded)}; "
                "resume with the same setting"
            )
        weights = read_state_dict(checkpoint_path(self.run_dir, state.step))
        self.model.load_state_dict({**weights, **state.unfolded})
        self.optimizer.load_state_dict(state.optimizer)
        self.generator.set_state(state.torch_generator)
        self.rng.bit_generator.state = state.numpy_generator
        self.step, self.elapsed_s, self.history = state.step, state.elapsed_s, state.history
        (self.run_dir / LOG_FILE).write_text("".join(json.dumps(record) + "\n" for record in self.history))
        self.log(f"resumed at step {self.step} ({self.elapsed_s:.0f} s trained) from {path}")
        return True

    def progress(self) -> float:
        """Fraction of the budget used: steps, or time when that runs out first."""
        done = self.step / self.settings.steps
        if self.settings.time_limit_s > 0:
            done = max(done, self.elapsed_s / self.settings.time_limit_s)
        return min(done, 1.0)

    def learning_rate(self) -> float:
        s = self.settings
        if self.step < s.warmup_steps:
            return s.learning_rate * (self.step + 1) / s.warmup_steps
        cosine = 0.5 * (1 + math.cos(math.pi * self.progress()))
        return s.learning_rate * (s.min_lr_ratio + (1 - s.min_lr_ratio) * cosine)

    def train_step(self) -> dict[str, float]:
        """One optimiser step on a fresh batch; returns the losses and each clip group's gradient norm
        (before clipping)."""
        s, model = self.settings, self.model
        batch = self.data.action_batch(self.rng, s.batch_size, s.overlay_probability)
        condition = action_condition(model, batch.views, batch.instructions)
        if s.standardize_condition:
            condition = standardize(condition)
        action_loss = diffusion_loss(
            model.action_model.net,
            batch.actions,
            condition,
            num_steps=model.config.diffusion_steps,
            repeats=s.repeated_diffusion_steps,
            cfg_dropout=s.cfg_dropout,
            generator=self.generator,
        )
        loss, losses = action_loss, {"action_loss": action_loss.item()}
        if s.grounding_batch_size:
            questions = self.data.grounding_batch(
                self.rng, s.grounding_batch_size, self.grounding_prompt, model.processor_image_size
            )
            answer_loss = grounding_loss(model, questions.images, questions.prompts, questions.answers)
            loss = loss + s.grounding_weight * answer_loss
            losses["grounding_loss"] = answer_loss.item()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate() * group["lr_scale"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        losses |= clip_gradients(self.clip_groups, s.grad_clip)
        self.optimizer.step()
        return {"loss": loss.item(), **losses}

    def save(self) -> Path:
        """Weights in the released layout and the trainer state, both for the current step.

        With ``standardize_condition`` the checkpoint holds the standardisation folded into the DiT,
        with statistics measured on the weights being saved; the DiT's tensors as trained go into the
        trainer state. The model in training keeps its training form.
        """
        weights = self.model.state_dict()
        trained = {}
        if self.settings.standardize_condition:
            trained = trained_weights(weights)
            weights = {**weights, **self._folded_weights()}
        path = save_weights(self.run_dir, weights, self.step)
        TrainerState(
            self.step,
            self.elapsed_s,
            self.optimizer.state_dict(),
            self.generator.get_state(),
            self.rng.bit_generator.state,
            self.history,
            trained,
        ).save(self.state_dir)
        return path

    def _folded_weights(self) -> dict[str, torch.Tensor]:
        """The DiT's tensors with the standardisation folded in, on statistics of the current weights.

        The samples are drawn from their own generator, seeded by the run's seed and the step, so that
        measuring leaves the training's random streams (and so a resumed run) untouched.
        """
        s = self.settings
        statistics = measure_statistics(
            self.model,
            self.data,
            np.random.default_rng((s.seed, self.step)),
            samples=s.standardize_samples,
            batch_size=s.batch_size,
            overlay_probability=s.overlay_probability,
        )
        self.log(
            f"step {self.step}: the condition's spread across {statistics.samples} training samples is "
            f"{statistics.relative_spread:.4f} of its RMS; its standardisation is folded into the DiT"
        )
        return folded_weights(self.model.action_model.net, statistics)

    def run(self, until: int | None = None) -> TrainResult:
        """Train until the step or time budget is used up (or step ``until``, to continue later with
        :meth:`resume`); save at ``save_every`` and at the end."""
        s = self.settings
        window: list[dict[str, float]] = []
        checkpoint = None
        total = None if s.time_limit_s else s.steps  # a time-limited run shows its ETA in the postfix
        bar = tqdm(total=total, initial=self.step, desc="train", file=sys.stderr, dynamic_ncols=True)
        with bar:
            while self.progress() < 1.0 and (until is None or self.step < until):
                start = time.perf_counter()
                window.append(self.train_step())
                self.step += 1
                self.elapsed_s += time.perf_counter() - start
                bar.update(1)
                if self.step % s.log_every == 0 or self.progress() >= 1.0 or self.step == until:
                    record = self._record(window)
                    window = []
                    bar.set_postfix(loss=f"{record['loss']:.4f}", eta=f"{self._eta_s():.0f}s")
                if s.save_every and self.step % s.save_every == 0:
                    checkpoint = self.save()
        if checkpoint is None or not checkpoint.name.startswith(f"steps_{self.step}_"):
            checkpoint = self.save()
        self.log(f"trained {self.step} steps in {self.elapsed_s:.0f} s; weights: {checkpoint}")
        return TrainResult(self.step, self.elapsed_s, self.history, checkpoint)

    def _eta_s(self) -> float:
        done = self.progress()
        return self.elapsed_s * (1 - done) / done if done > 0 else float("nan")

    def _record(self, window: list[dict[str, float]]) -> dict[str, Any]:
        """Average the losses since the last record; append to the history and the JSONL log."""
        record: dict[str, Any] = {"step": self.step, "elapsed_s": round(self.elapsed_s, 1)}
        record |= {key: float(np.mean([w[key] for w in window])) for key in window[0]}
        record["lr"] = self.learning_rate()
        self.history.append(record)
        with open(self.run_dir / LOG_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if len(self.history) % PRINT_EVERY_RECORDS == 0:
            losses = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k.endswith("loss"))
            self.log(f"step {self.step} {losses} lr={record['lr']:.2e} ({self.elapsed_s:.0f} s)")
        return record
