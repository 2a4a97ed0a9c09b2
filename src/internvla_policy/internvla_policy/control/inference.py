"""Inference off the control thread: a worker that keeps computing the next action chunk.

The worker asks the controller for a request (the newest frames, the instruction, the spatial
prompt), runs the model, and hands the chunk back; meanwhile the control timer keeps executing
the current chunk. It only starts a request when there is something new to see (a newer camera
frame) and the controller wants commands, so an idle or disabled node costs no compute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from internvla_policy.control.observation import CameraFrame
from internvla_policy.control.spatial_prompt import SpatialPrompt, apply_spatial_prompt


@dataclass(frozen=True)
class ChunkPrediction:
    """One chunk from the model: unnormalised actions [H, D] (float64) and the normalised ones."""

    actions: np.ndarray
    normalized: np.ndarray


class ChunkPolicy(Protocol):
    """What the worker needs from a model: one chunk for one observation."""

    def view_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the model's processor turns a source image of this size into."""
        ...

    def predict(self, images: list[np.ndarray], instruction: str) -> ChunkPrediction: ...


@dataclass(frozen=True)
class InferenceRequest:
    frames: tuple[CameraFrame, ...]
    instruction: str
    prompt: SpatialPrompt | None
    generation: int
    """Bumped by the controller whenever earlier chunks become invalid (new instruction, stop)."""

    @property
    def stamp(self) -> float:
        """Step 0 of the resulting chunk is meant for the newest frame's instant."""
        return max(f.stamp for f in self.frames)


@dataclass(frozen=True)
class ChunkResult:
    request: InferenceRequest
    prediction: ChunkPrediction
    latency_s: float


class InferenceWorker:
    """A daemon thread looping: take a request, apply the spatial prompt, predict, deliver."""

    def __init__(
        self,
        policy: ChunkPolicy,
        spatial_prompt_mode: str,
        next_request: Callable[[], InferenceRequest | None],
        deliver: Callable[[ChunkResult], None],
        report_error: Callable[[Exception], None],
        idle_poll_s: float = 0.01,
    ) -> None:
        self._policy = policy
        self._mode = spatial_prompt_mode
        self._next_request = next_request
        self._deliver = deliver
        self._report_error = report_error
        self._idle_poll_s = idle_poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="internvla-inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Called on new input so a waiting worker starts without polling delay."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def run_once(self, request: InferenceRequest) -> ChunkResult:
        """Apply the spatial prompt to the (already decoded) frames and predict one chunk."""
        start = time.perf_counter()
        images = [frame.image for frame in request.frames]
        instruction, images = apply_spatial_prompt(
            self._mode,
            request.instruction,
            images,
            [f.frame_id for f in request.frames],
            request.prompt,
            self._policy.view_size,
        )
        prediction = self._policy.predict(images, instruction)
        return ChunkResult(request, prediction, time.perf_counter() - start)

    def _run(self) -> None:
        while not self._stop.is_set():
            request = self._next_request()
            if request is None:
                self._wake.wait(self._idle_poll_s)
                self._wake.clear()
                continue
            try:
                result = self.run_once(request)
            except Exception as exc:  # a bad frame or a model error must not end the worker
                self._report_error(exc)
                self._stop.wait(0.1)
                continue
            self._deliver(result)
