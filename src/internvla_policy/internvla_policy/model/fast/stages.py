"""Pipeline stages that run eagerly or replay a CUDA graph, and a clock that times them without syncing.

A stage is a function of static buffers (tensors whose storage never changes between calls). On a
GPU it is captured once into a CUDA graph: a replay then launches the whole stage's kernels with one
call, with no Python in between and no host synchronisation. Where capture is impossible (the CPU,
or an operation that refuses capture) the stage runs eagerly, and why is kept in ``note``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import torch

GRAPH_WARMUP_RUNS = 2  # eager runs on a side stream before capture: lazy library init stays out of the graph


class Stage:
    """One step of a pipeline: ``fn()`` reads static inputs and returns its outputs (tensors, tuples of
    tensors, or None). With ``graphs`` it is captured on first use and replayed afterwards; if capture
    fails it runs eagerly but still returns the same output tensors every time (later graphs read them)."""

    def __init__(self, name: str, fn: Callable[[], Any], *, graphs: bool) -> None:
        self.name = name
        self.fn = fn
        self.graphs = graphs
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: Any = None
        self.note = "cuda graph (not yet captured)" if graphs else "eager"
        self._prepared = not graphs

    def prepare(self) -> None:
        """Capture now (instead of on first use); on failure fall back to eager and say why in ``note``."""
        self._prepared = True
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP_RUNS):
                    self.fn()
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                output = self.fn()
        except RuntimeError as err:
            torch.cuda.synchronize()
            self.note = f"eager (capture failed: {str(err).strip().splitlines()[0][:160]})"
            return
        self.graph, self.output, self.note = graph, output, "cuda graph"

    def __call__(self) -> Any:
        if not self._prepared:
            self.prepare()
        if self.graph is not None:
            self.graph.replay()
        elif self.output is None or not self.graphs:
            self.output = self.fn()
        else:
            _copy_into(self.output, self.fn())
        return self.output


def _copy_into(target: Any, source: Any) -> None:
    """Copy ``source`` into the same-shaped structure of tensors ``target``."""
    if isinstance(target, torch.Tensor):
        target.copy_(source)
    elif isinstance(target, tuple | list):
        for into, value in zip(target, source, strict=True):
            _copy_into(into, value)


class StageClock:
    """Per-stage durations without host syncs: CUDA events on a GPU (read once, after the call's final
    synchronisation), the host clock on the CPU where every operation has finished when it returns."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, Any]] = [("start", self._now())]

    def _now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def mark(self, stage: str) -> None:
        """The stage named ``stage`` ends now (it began at the previous mark)."""
        self.marks.append((stage, self._now()))

    def seconds(self) -> dict[str, float]:
        """Seconds per stage; on a GPU call only after the work has been synchronised."""
        durations: dict[str, float] = {}
        for (_, start), (stage, end) in itertools.pairwise(self.marks):
            elapsed = start.elapsed_time(end) / 1000 if self.cuda else end - start
            durations[stage] = durations.get(stage, 0.0) + elapsed
        return durations
