"""Standardisation of the DiT's condition tokens while training, folded into the released weights
whenever a checkpoint is written.

Why: in a model trained from scratch, the Q-Former output hardly varies across samples (DESIGN.md §6).
Per feature, about 99% of its variance over a batch's tokens is between its query tokens, the same for
every scene, and 1% across samples (0.7% in the built-in recipe's model at initialisation, 1.2% in the
published one, on the first frames of 8 recorded scenes). The DiT then fits the chunks from the noisy
actions alone and its sample follows the noise seed, not the scene. So each token's condition has its
mean over the samples removed, and each feature is divided by its spread across samples (pooled over
the tokens): the DiT gets the part that differs across scenes, at unit scale. (Standardising each
feature over samples and tokens alike, a BatchNorm over the batch's tokens, only rescales that 1%:
the tests' small model told its scenes apart with 2 of 3 seeds after 300 steps that way, with 3 of 3
after 200 steps this way.)

Training standardises with the batch's own statistics, before guidance dropout substitutes the
"no condition" tokens, so ``uncondition`` is learnt in the standardised space. A checkpoint needs the
population statistics of the weights it holds: running averages lag behind weights that move (they
were measured stale), so they are measured afresh over training samples with the weights being
written, and folded into the layers that read the condition. With m [Q, W] the per-token mean, s [W]
the per-feature spread (sqrt(var + eps)) and W, b the condition embedder's linear layer::

    linear((c_q - m_q) / s) + pos_q = (W / s) c_q + b + (pos_q - (W / s) m_q)

so the linear weight becomes W / s and the per-token term joins the DiT's position table ``pos``
(added to every condition token after the embedder; the bias is untouched). The learned
``uncondition`` u stands in for a standardised condition, so the folded one is u s + m. The folded
model has exactly the released keys and runs in the released architecture and upstream's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from internvla_policy.model import InternVLAM1
from internvla_policy.model.dit import DiT

from .objective import action_condition
from .samples import TrainingData

EPS = 1e-5
"""Added to the variance, as BatchNorm does: a feature that hardly varies is not blown up into noise."""
FOLDED_KEYS = tuple(
    "action_model.net." + name
    for name in ("z_embedder.linear.weight", "z_embedder.uncondition", "positional_embedding")
)
"""The tensors folding changes, as named in the model's ``state_dict``."""


@dataclass(frozen=True)
class ConditionStatistics:
    """Per-token mean [Q, W] and per-feature variance [W] across samples (biased, pooled over the tokens)
    of the condition tokens, and the number of samples measured."""

    mean: torch.Tensor
    var: torch.Tensor
    samples: int

    @property
    def scale(self) -> torch.Tensor:
        """The spread the standardisation divides by."""
        return (self.var + EPS).sqrt()

    @property
    def relative_spread(self) -> float:
        """The mean per-feature spread across samples over the condition's RMS: how much of the
        condition tells the samples apart."""
        return float(self.var.sqrt().mean() / self.mean.square().mean().sqrt())


def standardize(condition: torch.Tensor, statistics: ConditionStatistics | None = None) -> torch.Tensor:
    """Condition tokens [B, Q, W] standardised across samples: with the batch's own statistics when no
    ``statistics`` are given (training; the gradient flows through them, as in BatchNorm), else with them."""
    if statistics is None:
        mean = condition.mean(0)
        var = (condition - mean).square().mean((0, 1))
        statistics = ConditionStatistics(mean, var, condition.shape[0])
    return (condition - statistics.mean.to(condition)) / statistics.scale.to(condition)


@torch.no_grad()
def measure_statistics(
    model: InternVLAM1,
    data: TrainingData,
    rng: np.random.Generator,
    *,
    samples: int,
    batch_size: int,
    overlay_probability: float,
) -> ConditionStatistics:
    """Statistics of the condition tokens of ``samples`` training samples, drawn as training draws
    them, with the model's current weights in eval mode (accumulated in float64, then float32)."""
    embedder = model.action_model.net.z_embedder
    total = torch.zeros(embedder.uncondition.shape, dtype=torch.float64, device=model.device)
    squares = torch.zeros_like(total)
    was_training = model.training
    model.eval()
    for start in range(0, samples, batch_size):
        batch = data.action_batch(rng, min(batch_size, samples - start), overlay_probability)
        condition = action_condition(model, batch.views, batch.instructions).double()
        total += condition.sum(0)
        squares += condition.square().sum(0)
    model.train(was_training)
    mean = total / samples
    var = (squares / samples - mean.square()).mean(0).clamp_min(0.0)
    return ConditionStatistics(mean.float().cpu(), var.float().cpu(), samples)


@torch.no_grad()
def folded_weights(net: DiT, statistics: ConditionStatistics) -> dict[str, torch.Tensor]:
    """The tensors of ``FOLDED_KEYS`` with the standardisation folded in (computed in float64, returned
    in the DiT's dtype and on its device)."""
    embedder = net.z_embedder
    weight = embedder.linear.weight
    mean = statistics.mean.to(weight.device, torch.float64)
    scale = statistics.scale.to(weight.device, torch.float64)
    folded_weight = weight.double() / scale
    position = net.positional_embedding.double().clone()
    position[: len(mean)] -= mean @ folded_weight.T
    folded = (folded_weight, embedder.uncondition.double() * scale + mean, position)
    return {key: value.to(weight.dtype) for key, value in zip(FOLDED_KEYS, folded, strict=True)}


def trained_weights(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copies of the tensors of ``FOLDED_KEYS`` in a model's ``state_dict`` as trained (standardisation
    not folded in): what a resumed run continues from."""
    return {key: state[key].detach().clone() for key in FOLDED_KEYS}
