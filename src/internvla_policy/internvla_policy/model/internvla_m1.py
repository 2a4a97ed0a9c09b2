"""InternVLA-M1: Qwen2.5-VL + DINOv2 + layer-wise Q-Former + DiT action head, for inference.

Submodule names match upstream's ``InternVLA_M1`` so its ``state_dict`` loads unchanged. What it
fixes relative to the released inference code (all documented in DESIGN.md §2): the DDIM step count
is honoured on every call, the model is in eval mode after loading, DINO views whose size is not a
multiple of 14 px are cropped instead of crashing, the initial noise can come from a private
generator, and one model can serve several threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig

from .checkpoint import RunFiles, load_weights, locate_run, read_state_dict
from .config import QFORMER_HEADS, M1Config
from .diffusion import DdimSchedule, EpsFn, ddim_sample, ddim_schedule, guided_eps_fn
from .dinov2 import DinoEncoder
from .dit import ActionModel
from .normalization import read_norm_stats, resolve_unnorm_key, unnormalize_actions
from .preprocessing import ImageLike, as_image_batch, as_rgb_image, dino_resize, dino_tensor, resize_to
from .qformer import LayerwiseQFormer
from .qwen import QwenProcessor, QwenVLInterface, load_qwen_config

TIED_LM_HEAD = "qwen_vl_interface.model.lm_head.weight"


@dataclass(frozen=True)
class ActionPrediction:
    """One action chunk per sample.

    ``normalized`` is what the network samples ([B, horizon, A] float32); ``actions`` is that mapped
    to robot units with the ``unnorm_key`` statistics ([B, horizon, A] float64, gripper 0/1);
    ``timings`` holds seconds per stage.
    """

    normalized: np.ndarray
    actions: np.ndarray
    unnorm_key: str
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """A generated text answer, its token ids, and the size (w, h) Qwen saw the image at."""

    text: str
    token_ids: list[int]
    prompt_token_ids: list[int]
    image_size: tuple[int, int]


class InternVLAM1(nn.Module):
    """The network plus what inference needs around it (processor, statistics, config)."""

    def __init__(
        self,
        config: M1Config,
        qwen_config: Qwen2_5_VLConfig,
        processor: QwenProcessor,
        norm_stats: dict[str, Any],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.config = config
        self.processor = processor
        self.norm_stats = norm_stats
        self.qwen_vl_interface = QwenVLInterface(qwen_config, dtype)
        self.layer_qformer = LayerwiseQFormer(
            input_dim=config.qformer_input_dim,
            width=config.qformer_output_dim,
            num_queries=config.num_query_tokens,
            num_layers=config.num_qformer_layers,
            heads=QFORMER_HEADS,
        )
        self.action_model = ActionModel(
            config.dit_size, config.action_dim, config.horizon, config.num_query_tokens
        )
        self.dino_encoder = DinoEncoder(config.dino_size, config.dino_depth)
        self.dino_pro = nn.Linear(self.dino_encoder.num_channels, qwen_config.text_config.hidden_size)
        self._lock = threading.RLock()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        base_vlm: str | Path | None = None,
        step: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
    ) -> InternVLAM1:
        """Load a released run (folder, ``.pt`` or ``.safetensors``) in eval mode.

        ``base_vlm`` overrides the config's ``framework.qwenvl.base_vlm`` (released configs hold
        their authors' paths). Weights end up in ``dtype`` on ``device`` whatever the file stores.
        """
        device, dtype = resolve_device(device), resolve_dtype(dtype)
        files = locate_run(path, step)
        model = cls.skeleton(files, base_vlm=base_vlm, dtype=dtype)
        return model._take_weights(read_state_dict(files.checkpoint), device, dtype, files.checkpoint)

    def converted(self, dtype: torch.dtype) -> InternVLAM1:
        """A copy of this model with its weights in ``dtype`` on the same device; this one is untouched
        (several users may share it). Peak memory: this model plus the copy."""
        with torch.device("meta"):
            clone = type(self)(
                self.config, self.qwen_vl_interface.model.config, self.processor, self.norm_stats, dtype
            )
        return clone._take_weights(dict(self.state_dict()), self.device, dtype, Path("<model in memory>"))

    def _take_weights(
        self, state: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype, source: Path
    ) -> InternVLAM1:
        """Strictly load ``state`` into this meta-device skeleton, tie the LM head, switch to inference."""
        load_weights(self, state, device=device, dtype=dtype, source=source, derived=self.tied_keys())
        if self.tied_keys():
            self.qwen_vl_interface.model.tie_weights()
        return self.requires_grad_(False).eval()

    @classmethod
    def skeleton(
        cls, files: RunFiles, *, base_vlm: str | Path | None = None, dtype: torch.dtype = torch.float32
    ) -> InternVLAM1:
        """The model a run describes, on the meta device: its shapes and processor, no weights."""
        config = M1Config.from_yaml(files.config)
        norm_stats = read_norm_stats(files.statistics)
        base_dir = resolve_base_vlm(config.base_vlm, files.run_dir, base_vlm)
        processor = QwenProcessor.from_dir(base_dir)
        qwen_config = load_qwen_config(base_dir)
        with torch.device("meta"):
            return cls(config, qwen_config, processor, norm_stats, dtype)

    @property
    def unnorm_keys(self) -> list[str]:
        return sorted(self.norm_stats)

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def device(self) -> torch.device:
        return self.dino_pro.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.dino_pro.weight.dtype

    def tied_keys(self) -> list[str]:
        """State-dict keys that share another key's tensor (Qwen's LM head, when embeddings are tied)."""
        return [TIED_LM_HEAD] if self.qwen_vl_interface.model.config.tie_word_embeddings else []

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per top-level module, tied weights counted once."""
        return {name: sum(p.numel() for p in module.parameters()) for name, module in self.named_children()}

    def processor_image_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) Qwen's processor resizes a (width, height) source image to; grounding answers are in it."""
        return self.processor.target_size(width, height)

    @torch.inference_mode()
    def predict_action(
        self,
        batch_images: Sequence[Sequence[ImageLike]],
        instructions: Sequence[str],
        *,
        cfg_scale: float = 1.5,
        ddim_steps: int = 10,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        unnorm_key: str | None = None,
        prompt_template: bool = True,
        noise: torch.Tensor | None = None,
    ) -> ActionPrediction:
        """Sample one action chunk per sample (each a list of camera views) with DDIM.

        ``prompt_template=False`` feeds the lower-cased instruction without the config's CoT
        template: the policy's ``off`` spatial-prompt mode, which asks for no grounding at all.

        The initial noise [B, horizon, A] is drawn on the CPU from ``generator``, else from a fresh
        generator seeded with ``seed``, else from torch's global RNG, so a seed gives the same noise
        on every device. ``noise`` gives it outright instead: the inference server merges requests
        into one forward and draws each request's share from that request's own seed. Guidance runs
        when ``cfg_scale > 1``.
        """
        key = resolve_unnorm_key(self.norm_stats, unnorm_key)
        schedule = ddim_schedule(self.config.diffusion_steps, ddim_steps)  # refuse a bad count before work
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        images = as_image_batch(batch_images, instructions)
        timings: dict[str, float] = {}
        with self._lock:
            with self._timed(timings, "preprocess"):
                images = self.model_views(images)
                texts = [self.prompt_text(text, prompt_template) for text in instructions]
                qwen_inputs = self.qwen_inputs(images, texts)
            with self._timed(timings, "vlm"):
                hidden = self.qwen_vl_interface.hidden_states(qwen_inputs)
            with self._timed(timings, "dino"):
                dino_tokens = self.dino_pro(self.dino_features(images))
            with self._timed(timings, "qformer"):
                condition = self.condition_tokens(hidden, dino_tokens)
            with self._timed(timings, "dit"):
                normalized = self._sample(condition, cfg_scale, schedule, generator, noise).cpu().numpy()
        timings["total"] = sum(timings.values())
        actions = unnormalize_actions(normalized, self.norm_stats[key]["action"])
        return ActionPrediction(normalized=normalized, actions=actions, unnorm_key=key, timings=timings)

    @torch.inference_mode()
    def generate(
        self,
        image: ImageLike,
        prompt: str,
        *,
        max_new_tokens: int = 64,
        repetition_penalty: float | None = None,
    ) -> Answer:
        """Greedy text answer for one image, as upstream's ``chat_with_M1``: the prompt is used verbatim
        (no lower-casing, no CoT template) and the image only gets Qwen's own resize.

        ``repetition_penalty`` None keeps the base VLM's generation config value.
        """
        if not isinstance(prompt, str):
            raise ValueError(f"prompt: expected a string, got {type(prompt).__name__}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        view = self.processor.fit(as_rgb_image(image, "image"))
        with self._lock:
            inputs = self._to_device(self.processor.encode([[view]], [prompt]))
            config = self.processor.generation_config(max_new_tokens, repetition_penalty)
            output = self.qwen_vl_interface.model.generate(**inputs, generation_config=config)
        prompt_ids = inputs["input_ids"][0].tolist()
        new_ids = output[0, len(prompt_ids) :].tolist()
        return Answer(self.processor.decode(new_ids), new_ids, prompt_ids, view.size)

    def answer(self, image: ImageLike, prompt: str, *, max_new_tokens: int = 64) -> str:
        """The text of :meth:`generate`."""
        return self.generate(image, prompt, max_new_tokens=max_new_tokens).text

    def model_views(self, images: list[list[Image.Image]]) -> list[list[Image.Image]]:
        """Every view resized to the config's ``image_size`` (upstream's ``img.resize``) when it sets one."""
        if not self.config.image_size:
            return images
        return [[resize_to(view, self.config.image_size) for view in views] for views in images]

    def qwen_inputs(
        self, images: list[list[Image.Image]], texts: Sequence[str], suffixes: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Qwen inputs on the model's device: per sample its views (fitted by the processor) and user text.

        ``suffixes`` follow the generation prompt (answers, for training the language-model head).
        """
        views = [[self.processor.fit(view) for view in sample] for sample in images]
        return self._to_device(self.processor.encode(views, texts, suffixes))

    def condition_tokens(self, hidden: Sequence[torch.Tensor], dino_tokens: torch.Tensor) -> torch.Tensor:
        """The Q-Former's action condition [B, Q, W] from Qwen's hidden states and the DINO tokens."""
        layers = hidden[self.config.qformer_start_layer : self.config.qformer_end_layer]
        return self.layer_qformer([torch.cat([layer, dino_tokens], dim=1) for layer in layers])

    def prompt_text(self, instruction: str, use_template: bool = True) -> str:
        """Upstream lower-cases the instruction, then fills the CoT template when the config has one
        (and ``use_template``: see ``predict_action``'s ``prompt_template``)."""
        instruction = instruction.lower()
        template = self.config.cot_prompt if use_template else None
        return instruction if template is None else template.replace("{instruction}", instruction)

    def dino_features(self, images: list[list[Image.Image]]) -> torch.Tensor:
        """DINO patch tokens of every view, concatenated per sample in view order: [B, V*N, width].

        Views of equal size run as one batch; upstream stacks all views and so needs them equal.
        """
        views = [dino_resize(view, self.config.dino_short_side) for sample in images for view in sample]
        features: list[torch.Tensor | None] = [None] * len(views)
        for size in dict.fromkeys(view.size for view in views):
            index = [i for i, view in enumerate(views) if view.size == size]
            pixels = dino_tensor([views[i] for i in index]).to(self.device, self.dtype)
            for i, tokens in zip(index, self.dino_encoder(pixels), strict=True):
                features[i] = tokens
        per_sample, start = [], 0
        for sample in images:
            per_sample.append(torch.cat(features[start : start + len(sample)], dim=0))
            start += len(sample)
        lengths = {tokens.shape[0] for tokens in per_sample}
        if len(lengths) > 1:
            raise ValueError(
                f"samples give different numbers of DINO tokens {sorted(lengths)}: give every sample the "
                "same number of views and view sizes (or use a config with datasets.vla_data.image_size)"
            )
        return torch.stack(per_sample)

    def _sample(
        self,
        condition: torch.Tensor,
        cfg_scale: float,
        schedule: DdimSchedule,
        generator: torch.Generator | None,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        shape = (condition.shape[0], self.config.horizon, self.config.action_dim)
        start = initial_noise(shape, generator, noise).to(self.device)
        return ddim_sample(self.noise_predictor(condition, cfg_scale), start, schedule)

    def noise_predictor(
        self, condition: torch.Tensor, cfg_scale: float, net: nn.Module | None = None
    ) -> EpsFn:
        """The DiT's noise prediction for ``condition``, guided when ``cfg_scale > 1`` (upstream's rule).

        ``net`` stands in for the DiT (the fast path passes a compiled one); its weights are the same.
        """
        dit = self.action_model.net
        uncondition = None
        if cfg_scale > 1.0:
            uncondition = dit.z_embedder.uncondition.unsqueeze(0).expand_as(condition)
        return guided_eps_fn(net or dit, condition, uncondition, cfg_scale)

    def _to_device(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            key: value.to(self.device, self.dtype) if value.is_floating_point() else value.to(self.device)
            for key, value in inputs.items()
        }

    @contextmanager
    def _timed(self, timings: dict[str, float], stage: str) -> Iterator[None]:
        """Wall time of a stage; on CUDA the queue is drained first so the time is the stage's own."""
        self._synchronize()
        start = time.perf_counter()
        yield
        self._synchronize()
        timings[stage] = time.perf_counter() - start

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def initial_noise(
    shape: tuple[int, ...], generator: torch.Generator | None, given: torch.Tensor | None = None
) -> torch.Tensor:
    """The sampler's starting noise, float32, drawn where ``generator`` lives (torch's global CPU RNG
    without one), so that a seed gives the same noise whatever device the model runs on; ``given``
    (a caller's own draw) is checked against ``shape`` and used instead."""
    if given is not None:
        if tuple(given.shape) != tuple(shape):
            raise ValueError(f"noise of shape {list(given.shape)} given, the batch needs {list(shape)}")
        return given.to(torch.float32)
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device, refusing CUDA up front when this machine has none (instead of failing mid-load)."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"not a torch device: {device!r}") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    return resolved


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """Accept a torch dtype or its name ("float32", "bfloat16", "float16")."""
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype such as float32 or bfloat16, got {dtype!r}")
    return resolved


def resolve_base_vlm(configured: str, run_dir: Path, override: str | Path | None) -> Path:
    """Where the base VLM folder is: the override (an empty string, as a ROS parameter gives, means none),
    else the config's path taken as absolute or relative to the run folder, its parent (the layout the
    reference fixtures use) or the working directory."""
    if override:
        return Path(override).expanduser()
    configured_path = Path(configured).expanduser()
    if configured_path.is_absolute():
        return configured_path
    candidates = [run_dir / configured_path, run_dir.parent / configured_path, Path.cwd() / configured_path]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"base VLM folder {configured!r} (framework.qwenvl.base_vlm) not found; tried {tried}. "
        "Pass base_vlm= (CLI: --base-vlm) to point at a Qwen2.5-VL folder."
    )
