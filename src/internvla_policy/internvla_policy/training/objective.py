"""The training losses: action diffusion on the Q-Former condition, and the VLM's grounding answers.

Action loss (upstream's, from CogACT): the noise-prediction (epsilon) MSE of the DiT at timesteps drawn
uniformly from the 100-step ``squaredcos_cap_v2`` schedule. Each sample's condition is reused for
``repeats`` noise draws (upstream's ``repeated_diffusion_steps``): the VLM forward is the expensive part,
so several diffusion samples per forward are nearly free. For classifier-free guidance, each
diffusion sample's condition is replaced by the learned ``z_embedder.uncondition`` with probability
``cfg_dropout``, which is what lets inference mix conditional and unconditional predictions.

Grounding loss: next-token cross-entropy of Qwen's language-model head on the answer tokens only, with
the prompt built exactly as :meth:`InternVLAM1.generate` builds it at inference (chat template, image
fitted by the processor), so what is trained is what the grounding node asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torch.nn import functional

from internvla_policy.model import InternVLAM1
from internvla_policy.model.diffusion import squaredcos_cap_v2_betas
from internvla_policy.model.dit import DiT

ANSWER_END = "<|im_end|>"
"""The assistant turn's end token: trained after every answer, so generation stops there."""


@lru_cache(maxsize=4)
def alphas_cumprod(num_steps: int) -> torch.Tensor:
    """Cumulative products of (1 - beta) of the cosine schedule, as float32 (computed in float64)."""
    return torch.from_numpy(np.cumprod(1.0 - squaredcos_cap_v2_betas(num_steps))).float()


def action_condition(
    model: InternVLAM1, views: list[list[Image.Image]], instructions: Sequence[str]
) -> torch.Tensor:
    """The condition tokens [B, Q, W] for a batch, through the same steps as ``predict_action``."""
    views = model.model_views(views)
    hidden = model.qwen_vl_interface.hidden_states(
        model.qwen_inputs(views, [model.prompt_text(text) for text in instructions])
    )
    return model.condition_tokens(hidden, model.dino_pro(model.dino_features(views)))


def diffusion_loss(
    net: DiT,
    actions: torch.Tensor,
    condition: torch.Tensor,
    *,
    num_steps: int,
    repeats: int,
    cfg_dropout: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Epsilon-prediction MSE for normalised chunks [B, H, A] under condition tokens [B, Q, W].

    Random draws (timesteps, noise, condition drops) come from ``generator`` on the CPU, so a seed fixes
    them on any device.
    """
    actions = actions.to(condition.device, condition.dtype).repeat(repeats, 1, 1)
    condition = condition.repeat(repeats, 1, 1)
    batch = actions.shape[0]
    timesteps = torch.randint(0, num_steps, (batch,), generator=generator)
    noise = torch.randn(actions.shape, generator=generator)
    dropped = torch.rand(batch, generator=generator) < cfg_dropout
    alpha_bar = alphas_cumprod(num_steps)[timesteps][:, None, None]
    device = condition.device
    noise, alpha_bar, timesteps = noise.to(device), alpha_bar.to(device), timesteps.to(device)
    noisy = alpha_bar.sqrt() * actions + (1 - alpha_bar).sqrt() * noise
    uncondition = net.z_embedder.uncondition.unsqueeze(0).expand_as(condition)
    condition = torch.where(dropped.to(device)[:, None, None], uncondition, condition)
    return functional.mse_loss(net(noisy, timesteps, condition).float(), noise.float())


def grounding_loss(
    model: InternVLAM1, images: list[Image.Image], prompts: Sequence[str], answers: Sequence[str]
) -> torch.Tensor:
    """Mean next-token cross-entropy over the answer tokens (and the closing ``<|im_end|>``)."""
    suffixes = [answer + ANSWER_END for answer in answers]
    inputs = model.qwen_inputs([[image] for image in images], prompts, suffixes)
    hidden = model.qwen_vl_interface.hidden_states(inputs)[-1]
    ids = inputs["input_ids"]
    length = ids.shape[1]
    tokenizer = model.processor.tokenizer
    rows, columns = [], []
    for row, suffix in enumerate(suffixes):
        count = len(tokenizer(suffix, add_special_tokens=False)["input_ids"])
        rows += [row] * count
        columns += range(length - count, length)
    rows_t = torch.tensor(rows, device=ids.device)
    columns_t = torch.tensor(columns, device=ids.device)
    logits = model.qwen_vl_interface.model.lm_head(hidden[rows_t, columns_t - 1])
    return functional.cross_entropy(logits.float(), ids[rows_t, columns_t])
