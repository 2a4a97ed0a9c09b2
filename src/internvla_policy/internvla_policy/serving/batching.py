"""Merging inference requests from several clients into one forward, without changing anyone's answer.

One thread owns the model. When a request arrives it waits up to ``wait_s`` for more, then runs every
queued request that is *compatible* with the oldest one as a single batch; requests that arrive
while a forward runs are merged into the next. Each request keeps its own instructions, views, unnorm
key and noise: its noise is drawn from its own seed (``initial_noise``, as an in-process
``predict_action(seed=...)`` draws it) and the merged noise is handed to the model.

Compatible means the merge cannot change a request's result beyond float rounding:

- the same view sizes (the model stacks views, and the GPU fast path plans per frame layout), the
  same ``cfg_scale``, DDIM step count and prompt-template choice (one sampler per forward);
- prompts of one token count. The Q-Former has no key mask (DESIGN.md §2): in a left-padded batch
  it attends to the padding, so a request merged with a longer prompt would get other actions than
  alone. Requests whose own samples differ in length run alone, padded as in-process.

A merged forward that fails is retried one request at a time, so one bad request cannot fail others.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from internvla_policy.model import InternVLAM1
from internvla_policy.model.diffusion import ddim_schedule
from internvla_policy.model.fast import FastInference
from internvla_policy.model.internvla_m1 import initial_noise
from internvla_policy.model.normalization import resolve_unnorm_key, unnormalize_actions
from internvla_policy.serving.protocol import ErrorCode, InferRequest, RequestError

InferenceModel = InternVLAM1 | FastInference


@dataclass(frozen=True)
class ServedChunk:
    """One request's share of a forward: its chunks and how it was served."""

    normalized: np.ndarray
    """[B, horizon, A] float32, what the network sampled (upstream's ``normalized_actions``)."""
    actions: np.ndarray
    """[B, horizon, A] float64, unnormalised with the request's statistics."""
    unnorm_key: str
    queue_s: float
    forward_s: float
    forward_id: int
    forward_requests: int
    forward_samples: int

    def as_data(self) -> dict[str, Any]:
        """The ``data`` map of an inference reply."""
        return {
            "normalized_actions": self.normalized,
            "actions": self.actions,
            "unnorm_key": self.unnorm_key,
            "timing": {"queue_s": self.queue_s, "forward_s": self.forward_s},
            "batch": {
                "forward": self.forward_id,
                "requests": self.forward_requests,
                "samples": self.forward_samples,
            },
        }


@dataclass
class BatchStats:
    """Counters since start; ``forwards`` < ``requests`` means merging happened."""

    requests: int = 0
    samples: int = 0
    forwards: int = 0
    largest_forward_requests: int = 0
    cancelled: int = 0
    failed: int = 0


@dataclass(eq=False)  # identity: a job's fields hold arrays
class _Job:
    request: InferRequest
    key: Hashable
    future: Future = field(default_factory=Future)
    received: float = field(default_factory=time.perf_counter)


class BatchScheduler:
    """The model's one inference thread and its queue. ``submit`` is thread-safe and never blocks on
    the model, so a slow or vanished client costs the others nothing but its share of a forward."""

    def __init__(self, model: InferenceModel, *, max_samples: int = 16, wait_s: float = 0.005) -> None:
        if max_samples < 1 or wait_s < 0:
            raise ValueError("max_samples must be >= 1 and wait_s >= 0")
        self._model = model
        self.core: InternVLAM1 = model.model if isinstance(model, FastInference) else model
        """The model itself (the fast path wraps it): config, processor, statistics."""
        self._max_samples = max_samples
        self._wait_s = wait_s
        self._queue: list[_Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._stats = BatchStats()
        # Requests without a seed get noise from here: unpredictable across server runs, like fresh noise.
        self._rng = torch.Generator().manual_seed(secrets.randbits(63))
        self._thread = threading.Thread(target=self._run, name="internvla-serve-batches", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop after the running forward; queued requests fail with a shutting-down error."""
        with self._cond:
            self._closed = True
            pending, self._queue = self._queue, []
            self._cond.notify_all()
        for job in pending:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(
                    RequestError("the server is shutting down", code=ErrorCode.SHUTTING_DOWN)
                )
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @property
    def stats(self) -> BatchStats:
        with self._cond:
            return replace(self._stats)

    def check(self, request: InferRequest) -> InferRequest:
        """The request with its unnorm key resolved; RequestError when the model cannot serve it."""
        try:
            ddim_schedule(self.core.config.diffusion_steps, request.ddim_steps)
        except ValueError as err:
            raise RequestError(str(err), "num_ddim_steps") from None
        try:
            return replace(request, unnorm_key=resolve_unnorm_key(self.core.norm_stats, request.unnorm_key))
        except ValueError as err:
            raise RequestError(str(err), "unnorm_key") from None

    def submit(self, request: InferRequest) -> Future:
        """Queue a checked request; the future resolves to its ServedChunk (or a RequestError)."""
        job = _Job(request, self._merge_key(request))
        with self._cond:
            if self._closed:
                raise RequestError("the server is shutting down", code=ErrorCode.SHUTTING_DOWN)
            self._queue.append(job)
            self._cond.notify_all()
        return job.future

    def _merge_key(self, request: InferRequest) -> Hashable:
        lengths = {self._prompt_tokens(request, text) for text in request.instructions}
        settings = (request.view_sizes, request.cfg_scale, request.ddim_steps, request.prompt_template)
        # A request padded within itself merges with nothing: object() equals only itself.
        return (settings, lengths.pop()) if len(lengths) == 1 else object()

    def _prompt_tokens(self, request: InferRequest, instruction: str) -> int:
        """Token count of the prompt before image-token expansion (a constant per view layout)."""
        core = self.core
        text = core.prompt_text(instruction, request.prompt_template)
        rendered = core.processor.render_prompt(len(request.view_sizes), text)
        return len(core.processor.tokenizer(rendered)["input_ids"])

    def _run(self) -> None:
        while True:
            jobs = self._next_batch()
            if jobs is None:
                return
            if jobs:
                self._serve(jobs)

    def _next_batch(self) -> list[_Job] | None:
        """The oldest live request and every compatible one queued within its wait; None once closed."""
        with self._cond:
            while True:
                cancelled = [job for job in self._queue if job.future.cancelled()]
                self._stats.cancelled += len(cancelled)
                self._queue = [job for job in self._queue if not job.future.cancelled()]
                if self._closed:
                    return None
                if self._queue:
                    break
                self._cond.wait()
            first = self._queue[0]
            while True:
                batch, samples = [], 0
                for job in self._queue:
                    if job.key == first.key and samples + job.request.size <= self._max_samples:
                        batch.append(job)
                        samples += job.request.size
                remaining = first.received + self._wait_s - time.perf_counter()
                if samples >= self._max_samples or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            self._queue = [job for job in self._queue if job not in batch]
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            self._stats.cancelled += len(batch) - len(live)
        return live

    def _serve(self, jobs: list[_Job]) -> None:
        try:
            self._forward(jobs)
        except Exception as exc:
            if len(jobs) > 1:
                for job in jobs:
                    self._serve([job])
                return
            with self._cond:
                self._stats.failed += 1
            bad_input = isinstance(exc, ValueError) and not isinstance(exc, RequestError)
            error = RequestError(str(exc)) if bad_input else exc
            jobs[0].future.set_exception(error)

    def _forward(self, jobs: list[_Job]) -> None:
        requests = [job.request for job in jobs]
        first = requests[0]
        core = self.core
        noise = torch.cat(
            [
                initial_noise(
                    (r.size, core.horizon, core.action_dim),
                    torch.Generator().manual_seed(r.seed) if r.seed is not None else self._rng,
                )
                for r in requests
            ]
        )
        started = time.perf_counter()
        prediction = self._model.predict_action(
            [views for r in requests for views in r.images],
            [text for r in requests for text in r.instructions],
            cfg_scale=first.cfg_scale,
            ddim_steps=first.ddim_steps,
            unnorm_key=first.unnorm_key,
            prompt_template=first.prompt_template,
            noise=noise,
        )
        finished = time.perf_counter()
        with self._cond:
            self._stats.forwards += 1
            self._stats.requests += len(requests)
            self._stats.samples += len(noise)
            self._stats.largest_forward_requests = max(self._stats.largest_forward_requests, len(requests))
            forward_id = self._stats.forwards
        start = 0
        for job, request in zip(jobs, requests, strict=True):
            part = slice(start, start + request.size)
            start += request.size
            normalized = prediction.normalized[part]
            actions = (
                prediction.actions[part]
                if request.unnorm_key == prediction.unnorm_key
                else unnormalize_actions(normalized, core.norm_stats[request.unnorm_key]["action"])
            )
            job.future.set_result(
                ServedChunk(
                    normalized=normalized,
                    actions=actions,
                    unnorm_key=request.unnorm_key,
                    queue_s=started - job.received,
                    forward_s=finished - started,
                    forward_id=forward_id,
                    forward_requests=len(requests),
                    forward_samples=len(noise),
                )
            )
