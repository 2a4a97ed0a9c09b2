"""``FastInference``: the same predictions as ``InternVLAM1``, laid out for speed on a GPU.

What the reference path (``InternVLAM1.predict_action``, like upstream) does on every call, and what
this does instead:

- PIL resizes and the Qwen processor on the CPU, tokenizer and chat template per call -> the raw
  uint8 frames are copied (from pinned memory) to the device and preprocessed there
  (``pixels.py``), and the prompt tokens, their embeddings and multimodal rotary positions are
  computed once per instruction and kept.
- Qwen's vision encoder recomputing its window layout with host round trips -> a static encoder per
  image grid (``vision.py``).
- Thousands of separately launched kernels -> each stage (preprocess, VLM prefill, DINO, Q-Former,
  the whole DDIM loop) is captured once as a CUDA graph and replayed; nothing in a call waits for
  the device until the actions are copied back.
- float32 weights under autocast -> weights stored in bfloat16 (on a GPU).

Shapes are static per plan: a plan is made for the frame sizes (and batch layout) of a call, and
within it a prompt stage per instruction; both are cached, so the first call with new frame sizes or
a new instruction pays for building (and capturing) them. ``warmup`` builds the shared parts ahead.
On the CPU the same stages run eagerly, in float32 by default, and agree with the reference path to
float32 rounding.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..diffusion import ddim_coefficients, ddim_sample, ddim_schedule
from ..internvla_m1 import ActionPrediction, Answer, InternVLAM1, initial_noise
from ..normalization import resolve_unnorm_key, unnormalize_actions
from ..preprocessing import ImageLike, as_image_batch, as_rgb_array
from ..qwen import padded_causal_bias
from .decode import DECODE_CHUNK, GreedyDecoder
from .pixels import FramePipeline, Size
from .stages import Stage, StageClock
from .vision import StaticVisionTower

MAX_PLANS = 4  # frame-size layouts kept (each holds its stages and, on a GPU, their graphs)
MAX_PROMPTS = 8  # instructions kept per layout
DECODER_CAPACITY = 1024  # cache positions for answers: prompt (with image tokens) plus new tokens
WARMUP_INSTRUCTION = "pick up the object."


def _evict(cache: OrderedDict, key: Any, limit: int) -> None:
    """Mark ``key`` as just used and drop the least recently used entries beyond ``limit``."""
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


@dataclass(frozen=True)
class PromptInputs:
    """One batch of prompts, tokenised as the reference path would for images of the plan's sizes."""

    embeds: torch.Tensor
    """[B, T, D] token embeddings with the image positions still holding the image-pad embedding."""
    image_positions: torch.Tensor
    """Flat (b * T + t) indices of the image tokens, in the order the vision encoder emits features."""
    position_ids: torch.Tensor
    """(3, B, T) multimodal rotary positions."""
    rope_delta: torch.Tensor
    """[B] offset of text positions after the prompt (used when decoding)."""
    attention_bias: torch.Tensor | None
    """Additive causal + padding bias for a left-padded batch, None when nothing is padded."""
    token_ids: torch.Tensor
    """[B, T] prompt token ids."""

    @classmethod
    def build(cls, model: InternVLAM1, fitted: list[list[Size]], texts: Sequence[str]) -> PromptInputs:
        processor = model.processor
        images = [[Image.new("RGB", size) for size in sample] for sample in fitted]
        encoded = model._to_device(processor.encode(images, texts))
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        backbone = model.qwen_vl_interface.model.model
        positions, deltas = backbone.get_rope_index(
            ids, encoded["mm_token_type_ids"], encoded["image_grid_thw"], attention_mask=mask
        )
        padded = bool((mask == 0).any())
        return cls(
            embeds=backbone.language_model.embed_tokens(ids),
            image_positions=(ids.reshape(-1) == processor.image_token_id).nonzero().squeeze(1),
            position_ids=positions,
            rope_delta=deltas.reshape(-1).to(ids.device),
            attention_bias=padded_causal_bias(mask, model.dtype) if padded else None,
            token_ids=ids,
        )

    def with_image_features(self, features: torch.Tensor) -> torch.Tensor:
        """The prompt embeddings with the image features put at the image tokens' positions."""
        flat = self.embeds.reshape(-1, self.embeds.shape[-1])
        return flat.index_copy(0, self.image_positions, features.to(flat.dtype)).view(self.embeds.shape)


class FrameInputs:
    """Static device buffers for the raw frames of a plan, filled through pinned host memory."""

    def __init__(self, sizes: list[Size], device: torch.device) -> None:
        cuda = device.type == "cuda"
        self.device_frames = [torch.zeros((h, w, 3), dtype=torch.uint8, device=device) for w, h in sizes]
        self.host_frames = [
            torch.zeros((h, w, 3), dtype=torch.uint8, pin_memory=cuda) if cuda else None for w, h in sizes
        ]

    def load(self, frames: Sequence[np.ndarray]) -> None:
        """Copy the frames in; on a GPU asynchronously (the host buffer is reused only after the call)."""
        for host, device, frame in zip(self.host_frames, self.device_frames, frames, strict=True):
            source = torch.from_numpy(np.ascontiguousarray(frame))
            if host is None:
                device.copy_(source)
            else:
                host.copy_(source)
                device.copy_(host, non_blocking=True)


class ActionPlan:
    """Everything for predicting actions from frames of fixed sizes: shared stages, one VLM and
    Q-Former stage per instruction batch, one DiT stage per (guidance, steps)."""

    def __init__(self, owner: FastInference, sizes: list[list[Size]]) -> None:
        model = owner.model
        self.owner = owner
        self.batch = len(sizes)
        self.frames = FrameInputs([size for sample in sizes for size in sample], model.device)
        self.pipeline = FramePipeline(
            sizes,
            model.config.image_size,
            model.processor,
            dino_short_side=model.config.dino_short_side,
            device=model.device,
            dtype=model.dtype,
        )
        self.tower = StaticVisionTower(model.qwen_vl_interface.model.model.visual, self.pipeline.grid_thw)
        self.noise = torch.zeros(
            (self.batch, model.config.horizon, model.config.action_dim), dtype=torch.float32, device=model.device
        )
        self.noise_host = torch.zeros(self.noise.shape, pin_memory=True) if model.device.type == "cuda" else None
        self.condition = torch.zeros(
            (self.batch, model.config.num_query_tokens, model.config.qformer_output_dim),
            dtype=model.dtype,
            device=model.device,
        )
        self.preprocess = owner.new_stage("preprocess", lambda: self.pipeline(self.frames.device_frames))
        self.dino = owner.new_stage("dino", self._dino)
        self.prompts: OrderedDict[tuple[str, ...], tuple[Stage, Stage]] = OrderedDict()
        self.samplers: dict[tuple[float, int], Stage] = {}

    def _dino(self) -> torch.Tensor:
        model = self.owner.model
        tokens = model.dino_encoder(self.preprocess.output_or_run()[1])
        return model.dino_pro(tokens.reshape(self.batch, -1, tokens.shape[-1]))

    def prompt_stages(self, texts: tuple[str, ...]) -> tuple[Stage, Stage]:
        """The VLM and Q-Former stages of one batch of prompts (built and captured on first use)."""
        if texts not in self.prompts:
            model = self.owner.model
            inputs = PromptInputs.build(model, self.pipeline.fitted_sizes, texts)
            text_model = model.qwen_vl_interface.model.model.language_model

            def vlm() -> tuple[torch.Tensor, ...]:
                pixels = self.preprocess.output_or_run()[0]
                return text_model(
                    inputs_embeds=inputs.with_image_features(self.tower(pixels)),
                    position_ids=inputs.position_ids,
                    attention_mask=inputs.attention_bias,
                    use_cache=False,
                    output_hidden_states=True,
                ).hidden_states

            vlm_stage = self.owner.new_stage("vlm", vlm)

            def qformer() -> torch.Tensor:
                condition = model.condition_tokens(vlm_stage.output_or_run(), self.dino.output_or_run())
                return self.condition.copy_(condition)

            self.prompts[texts] = (vlm_stage, self.owner.new_stage("qformer", qformer))
        _evict(self.prompts, texts, MAX_PROMPTS)
        return self.prompts[texts]

    def sampler(self, cfg_scale: float, ddim_steps: int) -> Stage:
        """The DDIM loop from ``self.noise`` and ``self.condition`` (built and captured on first use)."""
        key = (float(cfg_scale), int(ddim_steps))
        if key not in self.samplers:
            model = self.owner.model
            schedule = ddim_schedule(model.config.diffusion_steps, ddim_steps)
            coefficients = ddim_coefficients(schedule, model.device)
            eps_fn = model.noise_predictor(self.condition, cfg_scale, self.owner.dit)
            self.samplers[key] = self.owner.new_stage(
                "dit", lambda: ddim_sample(eps_fn, self.noise, schedule, coefficients)
            )
        return self.samplers[key]

    def load_noise(self, noise: torch.Tensor) -> None:
        if self.noise_host is None:
            self.noise.copy_(noise)
        else:
            self.noise_host.copy_(noise)
            self.noise.copy_(self.noise_host, non_blocking=True)


class AnswerPlan:
    """Preprocessing of one frame size for answers, and a prefill stage per prompt."""

    def __init__(self, owner: FastInference, size: Size) -> None:
        model = owner.model
        self.owner = owner
        self.frames = FrameInputs([size], model.device)
        self.pipeline = FramePipeline(
            [[size]], None, model.processor, dino_short_side=None, device=model.device, dtype=model.dtype
        )
        self.tower = StaticVisionTower(model.qwen_vl_interface.model.model.visual, self.pipeline.grid_thw)
        self.preprocess = owner.new_stage("preprocess", lambda: self.pipeline(self.frames.device_frames)[0])
        self.prompts: OrderedDict[str, tuple[Stage, int]] = OrderedDict()

    def prefill(self, prompt: str, decoder: GreedyDecoder) -> tuple[Stage, int]:
        """The prompt's prefill stage on ``decoder`` and the prompt length (built on first use)."""
        if prompt not in self.prompts:
            inputs = PromptInputs.build(self.owner.model, self.pipeline.fitted_sizes, [prompt])
            cache_positions = torch.arange(inputs.embeds.shape[1], device=inputs.embeds.device)

            def prefill() -> None:
                embeds = inputs.with_image_features(self.tower(self.preprocess.output_or_run()))
                decoder.prefill(
                    embeds, inputs.position_ids, inputs.rope_delta, inputs.token_ids[0], cache_positions
                )

            self.prompts[prompt] = (self.owner.new_stage("prefill", prefill), inputs.embeds.shape[1])
        _evict(self.prompts, prompt, MAX_PROMPTS)
        return self.prompts[prompt]


class FastInference:
    """Fast action and answer inference around a loaded :class:`InternVLAM1` (same results, less time).

    ``dtype`` defaults to bfloat16 on a GPU and float32 on the CPU; a model in another dtype is copied
    (load it in the target dtype to avoid holding both). ``cuda_graphs`` defaults to on for CUDA
    devices. ``compile_dit`` additionally runs the DiT through ``torch.compile`` before capture.
    One call runs at a time (the stages share static buffers).
    """

    def __init__(
        self,
        model: InternVLAM1,
        *,
        dtype: torch.dtype | None = None,
        cuda_graphs: bool | None = None,
        compile_dit: bool = False,
    ) -> None:
        cuda = model.device.type == "cuda"
        dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
        self.model = model if model.dtype == dtype else model.converted(dtype)
        self.cuda_graphs = cuda if cuda_graphs is None else cuda_graphs and cuda
        net = self.model.action_model.net
        self.dit = torch.compile(net, dynamic=False) if compile_dit else net
        self.compiled = compile_dit
        self.warmup_s: float | None = None
        self._plans: OrderedDict[tuple, ActionPlan] = OrderedDict()
        self._answer_plans: OrderedDict[Size, AnswerPlan] = OrderedDict()
        self._decoder: GreedyDecoder | None = None
        self._lock = threading.RLock()
        self._stages: list[Stage] = []

    # The attributes the nodes read from a model, so this can stand in for InternVLAM1.
    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def norm_stats(self) -> dict[str, Any]:
        return self.model.norm_stats

    @property
    def action_dim(self) -> int:
        return self.model.action_dim

    @property
    def horizon(self) -> int:
        return self.model.horizon

    @property
    def unnorm_keys(self) -> list[str]:
        return self.model.unnorm_keys

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def processor_image_size(self, width: int, height: int) -> tuple[int, int]:
        return self.model.processor_image_size(width, height)

    def new_stage(self, name: str, fn: Any) -> Stage:
        """A stage of this engine: captured as a CUDA graph when graphs are on, after one eager run."""
        stage = GraphedStage(name, fn, self.cuda_graphs)
        self._stages.append(stage)
        return stage

    def stage_modes(self) -> dict[str, str]:
        """How each kind of stage runs ('cuda graph', 'eager' or why capture failed), for reports."""
        return {stage.name: stage.note for stage in self._stages}

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
    ) -> ActionPrediction:
        """:meth:`InternVLAM1.predict_action`, same arguments and result (timings: seconds per stage
        plus ``total``, the call's wall time).

        Raises ValueError for views that reach DINO at different sizes (upstream's own limit; the
        reference path accepts them).
        """
        started = time.perf_counter()
        key = resolve_unnorm_key(self.norm_stats, unnorm_key)
        ddim_schedule(self.config.diffusion_steps, ddim_steps)  # refuse a bad count before any work
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        frames = as_image_batch(batch_images, instructions, convert=as_rgb_array)
        sizes = [[(frame.shape[1], frame.shape[0]) for frame in sample] for sample in frames]
        texts = tuple(self.model.prompt_text(text) for text in instructions)
        with self._lock:
            plan = self._action_plan(sizes)
            vlm, qformer = plan.prompt_stages(texts)
            dit = plan.sampler(cfg_scale, ddim_steps)
            clock = StageClock(self.device)
            plan.frames.load([frame for sample in frames for frame in sample])
            plan.load_noise(initial_noise(tuple(plan.noise.shape), generator))
            plan.preprocess()
            clock.mark("preprocess")
            for stage in (vlm, plan.dino, qformer, dit):
                stage()
                clock.mark(stage.name)
            normalized = self._to_host(dit.output_or_run())
            clock.mark("postprocess")
        actions = unnormalize_actions(normalized, self.norm_stats[key]["action"])
        timings = clock.seconds()
        timings["total"] = time.perf_counter() - started
        timings["postprocess"] += timings["total"] - sum(v for k, v in timings.items() if k != "total")
        return ActionPrediction(normalized=normalized, actions=actions, unnorm_key=key, timings=timings)

    @torch.inference_mode()
    def generate(self, image: ImageLike, prompt: str, *, max_new_tokens: int = 64) -> Answer:
        """:meth:`InternVLAM1.generate` (greedy, the base VLM's repetition penalty), same result."""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt: expected a string, got {type(prompt).__name__}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        frame = as_rgb_array(image, "image")
        size = (frame.shape[1], frame.shape[0])
        config = self.model.processor.generation_config(max_new_tokens, None)
        stops = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
        with self._lock:
            plan = self._answer_plan(size)
            fitted = plan.pipeline.fitted_sizes[0][0]
            tokens_needed = self._prompt_length(plan, prompt) + DECODE_CHUNK * -(-(max_new_tokens - 1) // DECODE_CHUNK)
            decoder = self._decoder_for(tokens_needed)
            prefill, _ = plan.prefill(prompt, decoder)
            plan.frames.load([frame])
            decoder.penalty.fill_(float(config.repetition_penalty or 1.0))
            plan.preprocess()
            prefill()
            new_ids = self._decode(decoder, max_new_tokens, {int(token) for token in stops if token is not None})
            prompt_ids = plan.prompts[prompt][0] and self._prompt_ids(plan, prompt)
        return Answer(self.model.processor.decode(new_ids), new_ids, prompt_ids, fitted)

    def answer(self, image: ImageLike, prompt: str, *, max_new_tokens: int = 64) -> str:
        """The text of :meth:`generate`."""
        return self.generate(image, prompt, max_new_tokens=max_new_tokens).text

    def warmup(
        self,
        views: Sequence[Size] = ((640, 480),),
        *,
        cfg_scale: float = 1.5,
        ddim_steps: int = 10,
        answer_tokens: int = 0,
    ) -> float:
        """Build and capture what a first call with camera frames of ``views`` sizes (w, h) needs, so
        that the first real command is not the slow one; return the seconds it took.

        The instruction-specific stages (VLM prefill, Q-Former) are made for a stand-in instruction;
        a new instruction later builds its own (one call's worth of extra time). ``answer_tokens`` > 0
        also warms the answer path (grounding) for the first view's size.
        """
        started = time.perf_counter()
        blanks = [np.zeros((height, width, 3), dtype=np.uint8) for width, height in views]
        self.predict_action([blanks], [WARMUP_INSTRUCTION], cfg_scale=cfg_scale, ddim_steps=ddim_steps, seed=0)
        if answer_tokens > 0:
            self.generate(blanks[0], WARMUP_INSTRUCTION, max_new_tokens=answer_tokens)
        self.warmup_s = time.perf_counter() - started
        return self.warmup_s
