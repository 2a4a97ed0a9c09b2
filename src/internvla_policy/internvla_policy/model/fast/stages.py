"""Pipeline stages that run eagerly or replay a CUDA graph, and a clock that times them without syncing.

A stage is a function of static buffers (tensors whose storage never changes between calls). On a
GPU it is captured once into a CUDA graph: a replay then launches the whole stage's kernels with one
call, with no Python in between and no host synchronisation. Where capture is impossible (the CPU,
or an operation that refuses capture) the stage runs eagerly, and why is kept in ``note``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

GRAPH_WARMUP_RUNS = 2  # eager runs on a side stream before capture: lazy library init stays out of the graph


class Stage:
    """One step of a pipeline: ``fn()`` reads static inputs and returns its outputs."""

    def __init__(self, name: str, fn: Callable[[], Any]) -> None:
        self.name = name
        self.fn = fn
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: Any = None
        self.note = "eager"

    def capture(self) -> None:
        """Record ``fn`` into a CUDA graph; on failure keep running it eagerly and say why in ``note``."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP_RUNS):
                    self.fn()
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(graph):
                output = self.fn()
        except RuntimeError as err:
            torch.cuda.synchronize()
            self.note = f"eager (capture failed: {str(err).splitlines()[0][:160]})"
            return
        self.graph, self.output, self.note = graph, output, "cuda graph"

    def __call__(self) -> Any:
        if self.graph is None:
            return self.fn()
        self.graph.replay()
        return self.output


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
        for (_, start), (stage, end) in zip(self.marks, self.marks[1:]):
            elapsed = start.elapsed_time(end) / 1000 if self.cuda else end - start
            durations[stage] = durations.get(stage, 0.0) + elapsed
        return durations
