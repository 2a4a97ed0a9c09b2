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
- float32 weights converted to bfloat16 by autocast on every call -> matrix weights stored in
  bfloat16, run under the same autocast with float32 activations (``precision.py``), on a GPU.

Shapes are static per plan: a plan is made for the frame sizes (and batch layout) of a call, and
within it a prompt stage per instruction; both are cached, so the first call with new frame sizes or
a new instruction pays for building (and capturing) them. ``warmup`` builds the shared parts ahead.
On the CPU the same stages run eagerly, in float32 by default, and agree with the reference path to
float32 rounding.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
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
from .precision import float32_outside_matrix_products
from .stages import Stage, StageClock
from .vision import StaticVisionTower

MAX_PLANS = 4  # frame-size layouts kept (each holds its stages and, on a GPU, their graphs)
MAX_PROMPTS = 8  # instructions kept per layout
DECODER_CAPACITY = 1024  # cache positions for answers on a GPU, where one decoding graph serves all prompts
CAPACITY_STEP = 256
WARMUP_INSTRUCTION = "pick up the object."


def _recent(cache: OrderedDict, key: Any, make: Callable[[], Any], limit: int) -> Any:
    """``cache[key]``, made on first use; the least recently used entries beyond ``limit`` are dropped."""
    if key not in cache:
        cache[key] = make()
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)
    return cache[key]


@dataclass(frozen=True)
class PromptInputs:
    """A batch of prompts tokenised as the reference path would for images of the plan's sizes, and what
    follows from the tokens alone: embeddings, multimodal rotary positions, padding bias."""

    token_ids: torch.Tensor
    """[B, T] prompt token ids (left-padded)."""
    embeds: torch.Tensor
    """[B, T, D] token embeddings; the image positions still hold the image-pad embedding."""
    image_positions: torch.Tensor
    """Flat (b * T + t) indices of the image tokens, in the order the vision encoder emits features."""
    position_ids: torch.Tensor
    """(3, B, T) multimodal rotary positions."""
    rope_delta: torch.Tensor
    """[B] offset of text positions after the prompt (decoding continues from it)."""
    attention_bias: torch.Tensor | None
    """The reference path's additive causal + padding bias for a left-padded batch, else None."""

    @classmethod
    def build(
        cls, model: InternVLAM1, fitted: list[list[Size]], texts: Sequence[str], dtype: torch.dtype
    ) -> PromptInputs:
        """``dtype``: the activations' (embeddings, padding bias)."""
        images = [[Image.new("RGB", size) for size in sample] for sample in fitted]
        encoded = model.processor.encode(images, texts)
        ids, mask = encoded["input_ids"].to(model.device), encoded["attention_mask"].to(model.device)
        backbone = model.qwen_vl_interface.model.model
        positions, deltas = backbone.get_rope_index(
            ids,
            encoded["mm_token_type_ids"].to(model.device),
            encoded["image_grid_thw"].to(model.device),
            attention_mask=mask,
        )
        return cls(
            token_ids=ids,
            embeds=backbone.language_model.embed_tokens(ids).to(dtype),
            image_positions=(ids.reshape(-1) == model.processor.image_token_id).nonzero().squeeze(1),
            position_ids=positions,
            rope_delta=deltas.reshape(-1).to(model.device),
            attention_bias=padded_causal_bias(mask, dtype) if bool((mask == 0).any()) else None,
        )

    @property
    def length(self) -> int:
        return self.token_ids.shape[1]

    def with_image_features(self, features: torch.Tensor) -> torch.Tensor:
        """The prompt embeddings with the image features at the image tokens' positions."""
        flat = self.embeds.reshape(-1, self.embeds.shape[-1])
        return flat.index_copy(0, self.image_positions, features.to(flat.dtype)).view(self.embeds.shape)


class FrameInputs:
    """Static device buffers for a plan's raw frames, filled through pinned host buffers on a GPU."""

    def __init__(self, sizes: list[Size], device: torch.device) -> None:
        self.device_frames = [torch.zeros((h, w, 3), dtype=torch.uint8, device=device) for w, h in sizes]
        pinned = device.type == "cuda"
        self.host_frames = (
            [torch.zeros((h, w, 3), dtype=torch.uint8).pin_memory() for w, h in sizes] if pinned else []
        )

    def load(self, frames: Sequence[np.ndarray]) -> None:
        """Copy the frames in; on a GPU asynchronously (each call ends in a synchronisation, so the host
        buffers are free again by the next one)."""
        staging = self.host_frames or self.device_frames
        for buffer, frame in zip(staging, frames, strict=True):
            buffer.numpy()[...] = frame
        if self.host_frames:
            for device, host in zip(self.device_frames, self.host_frames, strict=True):
                device.copy_(host, non_blocking=True)


class ActionPlan:
    """Everything to predict actions from frames of fixed sizes: the stages every instruction shares
    (preprocess, DINO, a DDIM loop per guidance and step count) and the VLM and Q-Former stages of
    each instruction batch."""

    def __init__(self, owner: FastInference, sizes: list[list[Size]]) -> None:
        model = owner.model
        config = model.config
        self.owner = owner
        self.batch = len(sizes)
        self.frames = FrameInputs([size for sample in sizes for size in sample], model.device)
        self.pipeline = FramePipeline(
            sizes,
            config.image_size,
            model.processor,
            dino_short_side=config.dino_short_side,
            device=model.device,
            dtype=owner.activation_dtype,
        )
        self.tower = StaticVisionTower(model.qwen_vl_interface.model.model.visual, self.pipeline.grid_thw)
        shape = (self.batch, config.horizon, config.action_dim)
        self.noise = torch.zeros(shape, dtype=torch.float32, device=model.device)
        cuda = model.device.type == "cuda"
        self.noise_host = torch.zeros(shape).pin_memory() if cuda else None
        self.actions_host = torch.zeros(shape).pin_memory() if cuda else None
        self.condition = torch.zeros(
            (self.batch, config.num_query_tokens, config.qformer_output_dim),
            dtype=owner.activation_dtype,
            device=model.device,
        )
        self.preprocess = owner.new_stage("preprocess", lambda: self.pipeline(self.frames.device_frames))
        self.dino = owner.new_stage("dino", self._dino)
        self.prompts: OrderedDict[tuple[str, ...], tuple[Stage, Stage]] = OrderedDict()
        self.samplers: dict[tuple[float, int], Stage] = {}

    def _dino(self) -> torch.Tensor:
        model = self.owner.model
        tokens = model.dino_encoder(self.preprocess.output[1])
        return model.dino_pro(tokens.reshape(self.batch, -1, tokens.shape[-1]))

    def prompt_stages(self, texts: tuple[str, ...]) -> tuple[Stage, Stage]:
        """The VLM and Q-Former stages of one batch of prompts."""
        return _recent(self.prompts, texts, lambda: self._make_prompt_stages(texts), MAX_PROMPTS)

    def _make_prompt_stages(self, texts: tuple[str, ...]) -> tuple[Stage, Stage]:
        model = self.owner.model
        inputs = PromptInputs.build(model, self.pipeline.fitted_sizes, texts, self.owner.activation_dtype)
        text_model = model.qwen_vl_interface.model.model.language_model
        # The mask per layer kind, ready-made: transformers then builds none per call. None (no padding)
        # lets SDPA apply causality itself, as it does on the reference path.
        masks = dict.fromkeys(text_model.config.layer_types, inputs.attention_bias)

        def vlm() -> tuple[torch.Tensor, ...]:
            return text_model(
                inputs_embeds=inputs.with_image_features(self.tower(self.preprocess.output[0])),
                position_ids=inputs.position_ids,
                attention_mask=masks,
                use_cache=False,
                output_hidden_states=True,
            ).hidden_states

        vlm_stage = self.owner.new_stage("vlm", vlm)

        def qformer() -> torch.Tensor:
            return self.condition.copy_(model.condition_tokens(vlm_stage.output, self.dino.output))

        return vlm_stage, self.owner.new_stage("qformer", qformer)

    def sampler(self, cfg_scale: float, ddim_steps: int) -> Stage:
        """The DDIM loop from ``noise`` under ``condition``."""
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

    def fetch(self, actions: torch.Tensor) -> np.ndarray:
        """The sampled actions on the host: the call's one synchronisation with the device."""
        if self.actions_host is None:
            return actions.numpy().copy()
        self.actions_host.copy_(actions, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return self.actions_host.numpy().copy()


class AnswerPlan:
    """Answers about frames of one size: their preprocessing, and per prompt its tokens and prefill stage."""

    def __init__(self, owner: FastInference, size: Size) -> None:
        model = owner.model
        self.owner = owner
        self.frames = FrameInputs([size], model.device)
        self.pipeline = FramePipeline(
            [[size]],
            None,
            model.processor,
            dino_short_side=None,
            device=model.device,
            dtype=owner.activation_dtype,
        )
        self.tower = StaticVisionTower(model.qwen_vl_interface.model.model.visual, self.pipeline.grid_thw)
        self.preprocess = owner.new_stage("preprocess", lambda: self.pipeline(self.frames.device_frames)[0])
        self.inputs: OrderedDict[str, PromptInputs] = OrderedDict()
        self.prefills: dict[str, Stage] = {}

    @property
    def fitted(self) -> Size:
        return self.pipeline.fitted_sizes[0][0]

    def prompt_inputs(self, prompt: str) -> PromptInputs:
        inputs = _recent(
            self.inputs,
            prompt,
            lambda: PromptInputs.build(
                self.owner.model, [[self.fitted]], [prompt], self.owner.activation_dtype
            ),
            MAX_PROMPTS,
        )
        self.prefills = {kept: stage for kept, stage in self.prefills.items() if kept in self.inputs}
        return inputs

    def prefill(self, prompt: str, decoder: GreedyDecoder) -> Stage:
        """The prompt's prefill stage on ``decoder`` (after :meth:`prompt_inputs` for the prompt)."""
        if prompt not in self.prefills:
            inputs = self.inputs[prompt]
            cache_positions = torch.arange(inputs.length, device=inputs.token_ids.device)

            def prefill() -> None:
                embeds = inputs.with_image_features(self.tower(self.preprocess.output))
                decoder.prefill(
                    embeds, inputs.position_ids, inputs.rope_delta, inputs.token_ids[0], cache_positions
                )

            self.prefills[prompt] = self.owner.new_stage("prefill", prefill)
        return self.prefills[prompt]


class FastInference:
    """Fast action and answer inference around a loaded :class:`InternVLAM1`: same results, less time.

    ``dtype`` is the weights' dtype: bfloat16 on a GPU and float32 on the CPU by default. With a low
    ``dtype`` and ``mixed_precision`` (the default) only matrix-product weights are stored in it and
    the stages run under autocast with float32 activations, as the reference does (``precision.py``);
    without, everything is in ``dtype``. A model whose weights are not already so is copied; tensors
    already in ``dtype`` are shared with it, not copied (so load in bfloat16 to hold the weights once).
    ``cuda_graphs`` defaults to on for CUDA devices. ``compile_dit`` (CUDA only) also runs the DiT
    through ``torch.compile`` before capture. One call runs at a time: the stages share static buffers.
    """

    def __init__(
        self,
        model: InternVLAM1,
        *,
        dtype: torch.dtype | None = None,
        mixed_precision: bool = True,
        cuda_graphs: bool | None = None,
        compile_dit: bool = False,
    ) -> None:
        cuda = model.device.type == "cuda"
        dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
        self.mixed_precision = mixed_precision and dtype != torch.float32
        self.activation_dtype = torch.float32 if self.mixed_precision else dtype
        self.model = model if model.dtype == dtype and not self.mixed_precision else model.converted(dtype)
        if self.mixed_precision:
            float32_outside_matrix_products(self.model, model)
        self.cuda_graphs = cuda if cuda_graphs is None else bool(cuda_graphs) and cuda
        self.compiled = compile_dit and cuda
        net = self.model.action_model.net
        self.dit = torch.compile(net, dynamic=False) if self.compiled else net
        self.warmup_s: float | None = None
        self._plans: OrderedDict[tuple, ActionPlan] = OrderedDict()
        self._answer_plans: OrderedDict[Size, AnswerPlan] = OrderedDict()
        self._decoder: GreedyDecoder | None = None
        self._decode_stage: Stage | None = None
        self._stages: weakref.WeakSet[Stage] = weakref.WeakSet()
        self._lock = threading.RLock()

    # What the nodes read from a model, so that this can stand in for InternVLAM1.
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

    @property
    def precision(self) -> str:
        """'mixed' (low-precision matrix products, float32 activations) or the one dtype of everything."""
        return "mixed" if self.mixed_precision else str(self.dtype).removeprefix("torch.")

    def new_stage(self, name: str, fn: Callable[[], Any]) -> Stage:
        """A stage of this engine: under autocast with mixed precision, captured when graphs are on."""
        if self.mixed_precision:
            plain, dtype, device_type = fn, self.dtype, self.device.type

            def fn() -> Any:
                with torch.autocast(device_type, dtype=dtype):
                    return plain()

        stage = Stage(name, fn, graphs=self.cuda_graphs)
        self._stages.add(stage)
        return stage

    def stage_modes(self) -> dict[str, str]:
        """How each kind of stage runs ('cuda graph', 'eager', or why capture failed), for reports."""
        modes: dict[str, set[str]] = {}
        for stage in list(self._stages):
            modes.setdefault(stage.name, set()).add(stage.note)
        return {name: "; ".join(sorted(notes)) for name, notes in sorted(modes.items())}

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
        """:meth:`InternVLAM1.predict_action`: same arguments, same result. ``timings`` holds seconds for
        setup (building a plan or a prompt's stages, first calls only), preprocess, vlm, dino, qformer,
        dit and postprocess, and ``total``, the call's wall time.

        Raises ValueError when views reach DINO at different sizes (upstream's own limit; the
        reference path accepts them).
        """
        started = time.perf_counter()
        key = resolve_unnorm_key(self.norm_stats, unnorm_key)
        ddim_schedule(self.config.diffusion_steps, ddim_steps)  # refuse a bad count before any work
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        frames = as_image_batch(batch_images, instructions, convert=as_rgb_array)
        sizes = [[(frame.shape[1], frame.shape[0]) for frame in sample] for sample in frames]
        texts = tuple(self.model.prompt_text(text, prompt_template) for text in instructions)
        with self._lock:
            clock = StageClock(self.device)
            layout = tuple(tuple(sample) for sample in sizes)
            plan = _recent(self._plans, layout, lambda: ActionPlan(self, sizes), MAX_PLANS)
            vlm, qformer = plan.prompt_stages(texts)
            dit = plan.sampler(cfg_scale, ddim_steps)
            clock.mark("setup")
            plan.frames.load([frame for sample in frames for frame in sample])
            plan.load_noise(initial_noise(tuple(plan.noise.shape), generator, noise))
            plan.preprocess()
            clock.mark("preprocess")
            for stage in (vlm, plan.dino, qformer, dit):
                stage()
                clock.mark(stage.name)
            normalized = plan.fetch(dit.output)
            clock.mark("postprocess")
            fetched = time.perf_counter()
            actions = unnormalize_actions(normalized, self.norm_stats[key]["action"])
            timings = clock.seconds()
        timings["postprocess"] += time.perf_counter() - fetched
        timings["total"] = time.perf_counter() - started
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
        """:meth:`InternVLAM1.generate`: same arguments (greedy; ``repetition_penalty`` None keeps the base
        VLM's), same result."""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt: expected a string, got {type(prompt).__name__}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        frame = as_rgb_array(image, "image")
        size = (frame.shape[1], frame.shape[0])
        settings = self.model.processor.generation_config(max_new_tokens, repetition_penalty)
        stops = settings.eos_token_id if isinstance(settings.eos_token_id, list) else [settings.eos_token_id]
        with self._lock:
            plan = _recent(self._answer_plans, size, lambda: AnswerPlan(self, size), MAX_PLANS)
            inputs = plan.prompt_inputs(prompt)
            steps = DECODE_CHUNK * -(-(max_new_tokens - 1) // DECODE_CHUNK)
            decoder = self._decoder_for(inputs.length + steps)
            prefill = plan.prefill(prompt, decoder)
            plan.frames.load([frame])
            decoder.penalty.fill_(float(settings.repetition_penalty or 1.0))
            plan.preprocess()
            prefill()
            new_ids = self._decode(max_new_tokens, {int(token) for token in stops if token is not None})
        prompt_ids = inputs.token_ids[0].tolist()
        return Answer(self.model.processor.decode(new_ids), new_ids, prompt_ids, plan.fitted)

    def answer(self, image: ImageLike, prompt: str, *, max_new_tokens: int = 64) -> str:
        """The text of :meth:`generate`."""
        return self.generate(image, prompt, max_new_tokens=max_new_tokens).text

    def warmup(
        self,
        views: Sequence[Size] = ((640, 480),),
        *,
        actions: bool = True,
        cfg_scale: float = 1.5,
        ddim_steps: int = 10,
        answer_tokens: int = 0,
    ) -> float:
        """Build and capture what calls with camera frames of ``views`` sizes (w, h) need, so that the
        first real command is not the slow one; return the seconds it took (also kept in ``warmup_s``).

        ``actions`` warms the action path (one sample with these views, ``cfg_scale``, ``ddim_steps``):
        its instruction-specific stages (VLM, Q-Former) are built for a stand-in instruction, so a new
        instruction's first call still costs about one extra call. ``answer_tokens`` > 0 warms the
        answer path for frames of the first view's size (the grounding node: ``actions=False``).
        """
        started = time.perf_counter()
        blanks = [np.zeros((height, width, 3), dtype=np.uint8) for width, height in views]
        if actions:
            self.predict_action(
                [blanks], [WARMUP_INSTRUCTION], cfg_scale=cfg_scale, ddim_steps=ddim_steps, seed=0
            )
        if answer_tokens > 0:
            self.generate(blanks[0], WARMUP_INSTRUCTION, max_new_tokens=answer_tokens)
        self.warmup_s = time.perf_counter() - started
        return self.warmup_s

    def _decoder_for(self, positions: int) -> GreedyDecoder:
        """The shared decoder; rebuilt larger (with every prefill stage) when ``positions`` exceed it."""
        if self._decoder is None or self._decoder.capacity < positions:
            # Without graphs nothing is shared, and attention over unused positions is only cost.
            minimum = DECODER_CAPACITY if self.cuda_graphs else 0
            capacity = max(minimum, CAPACITY_STEP * -(-positions // CAPACITY_STEP))
            self._decoder = self._decode_stage = None
            for plan in self._answer_plans.values():
                plan.prefills.clear()
            self._decoder = GreedyDecoder(self.model.qwen_vl_interface.model, capacity, self.activation_dtype)
            self._decode_stage = self.new_stage("decode", self._decoder.decode_chunk)
            if self.cuda_graphs:
                self._decode_stage.prepare()  # before any prefill: capturing runs the steps a few times
        return self._decoder

    def _decode(self, max_new_tokens: int, stops: set[int]) -> list[int]:
        """Decode chunks until a stop token or ``max_new_tokens``; the new ids, the stop included."""
        produced = 1  # the prefill chose the first token
        while True:
            ids = self._decoder.generated[: min(produced, max_new_tokens)].tolist()
            ended = next((i for i, token in enumerate(ids) if token in stops), None)
            if ended is not None:
                return ids[: ended + 1]
            if produced >= max_new_tokens:
                return ids
            self._decode_stage()
            produced += DECODE_CHUNK
