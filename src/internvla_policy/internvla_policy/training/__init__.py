"""Training InternVLA-M1 on LeRobot demonstrations (ROS-free): the fine-tuning pipeline and the
small built-in model's training.

- ``build``: a new small model with the released architecture, or an existing run to fine-tune.
- ``samples``: frames, normalised action chunks and grounding questions from a dataset, in batches.
- ``objective``: the action diffusion loss (repeated diffusion steps, guidance dropout) and the
  grounding answer loss.
- ``trainer``: AdamW, schedule, gradient clipping per component, progress bar, log, checkpoints in
  the released layout, resume.
- ``diagnostics``: whether a trained model acts on its inputs (its loss with shuffled conditions).
- ``pipeline`` and ``cli``: a whole run on a dataset (``python -m internvla_policy.training``).
"""

from .pipeline import DataSpec, GroundingTask, ModelSource, train_run
from .trainer import Trainer, TrainResult, TrainSettings

__all__ = ["DataSpec", "GroundingTask", "ModelSource", "TrainResult", "TrainSettings", "Trainer", "train_run"]
