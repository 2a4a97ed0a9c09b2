"""Per-stage latency of ``predict_action`` and peak memory while loading, for ``internvla-m1 bench``.

Loading is measured in a fresh process: memory already touched by earlier work in this one would
hide the loader's own peak. There the kernel's high-water mark is reset after the imports (Linux
``/proc/self/clear_refs``), so the figure is what ``from_pretrained`` itself adds.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import locate_run
from .internvla_m1 import InternVLAM1

STAGES = ("preprocess", "vlm", "dino", "qformer", "dit", "total")
FRAME_SHAPE = (480, 640, 3)  # a VGA camera frame
INSTRUCTION = "pick up the red block and place it in the bowl."
CFG_SCALE = 1.5  # upstream's default: guidance doubles the DiT batch
DDIM_STEPS = 10


def _memory_kib() -> dict[str, int]:
    """Current and peak resident set size of this process (KiB), from /proc."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _load_in_child(run: str, device: str, dtype: str, results: multiprocessing.queues.Queue) -> None:
    """Runs in the spawned process: load once and report time and memory through ``results``."""
    reset = _reset_peak()
    before = _memory_kib()
    start = time.perf_counter()
    model = InternVLAM1.from_pretrained(run, device=device, dtype=dtype)
    seconds = time.perf_counter() - start
    after = _memory_kib()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    results.put(
        {
            "load_s": seconds,
            "rss_before_load_mb": before["VmRSS"] / 1024,
            "peak_rss_during_load_mb": after["VmHWM"] / 1024,
            "peak_rss_added_by_load_mb": (after["VmHWM"] - before["VmRSS"]) / 1024,
            "rss_after_load_mb": after["VmRSS"] / 1024,
            "weights_in_memory_mb": weights / 2**20,
            "peak_reset_after_imports": reset,
        }
    )


def measure_load(run: Path, device: str = "cpu", dtype: str = "float32") -> dict[str, Any]:
    """Load time and resident memory of ``from_pretrained`` in a fresh (spawned) process."""
    if not Path("/proc/self/status").exists():
        raise RuntimeError("peak-memory measurement needs Linux /proc")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_load_in_child, args=(str(run), device, dtype, results))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the loading process failed with exit code {child.exitcode}")
    return results.get(timeout=10)


def measure_stages(model: InternVLAM1, repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    """Median, p95 and mean milliseconds per stage over ``repeats`` calls after ``warmup`` calls."""
    frame = np.random.default_rng(0).integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for index in range(warmup + repeats):
        prediction = model.predict_action(
            [[frame]], [INSTRUCTION], cfg_scale=CFG_SCALE, ddim_steps=DDIM_STEPS, seed=index
        )
        if index >= warmup:
            for stage in STAGES:
                samples[stage].append(prediction.timings[stage] * 1000)
    return {
        stage: {
            "p50_ms": float(np.median(values)),
            "p95_ms": float(np.percentile(values, 95)),
            "mean_ms": float(np.mean(values)),
        }
        for stage, values in samples.items()
    }


def run_benchmark(
    run: Path, *, repeats: int = 10, warmup: int = 2, device: str = "cpu", dtype: str = "float32"
) -> dict[str, Any]:
    """Everything ``internvla-m1 bench`` reports, as one JSON-ready dict."""
    load = measure_load(run, device, dtype)
    model = InternVLAM1.from_pretrained(run, device=device, dtype=dtype)
    stages = measure_stages(model, repeats, warmup)
    return {
        "run": str(run),
        "device": device,
        "dtype": dtype,
        "input": {
            "views": 1,
            "frame_hwc": list(FRAME_SHAPE),
            "cfg_scale": CFG_SCALE,
            "ddim_steps": DDIM_STEPS,
        },
        "repeats": repeats,
        "warmup": warmup,
        "parameters": model.parameter_counts(),
        "checkpoint_mb": locate_run(run).checkpoint.stat().st_size / 2**20,
        "load": load,
        "stages": stages,
        "machine": {
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1min": os.getloadavg()[0],
        },
    }


def format_report(result: dict[str, Any]) -> str:
    """A short human-readable table of a ``run_benchmark`` result."""
    load, machine = result["load"], result["machine"]
    lines = [
        f"model: {result['run']} ({result['device']}, {result['dtype']}), {machine['torch_threads']} torch "
        f"threads, load average {machine['load_average_1min']:.2f}",
        f"load: {load['load_s'] * 1000:.0f} ms; peak RSS during load "
        f"{load['peak_rss_during_load_mb']:.0f} MB (+{load['peak_rss_added_by_load_mb']:.0f} MB over "
        f"{load['rss_before_load_mb']:.0f} MB after imports; weights {load['weights_in_memory_mb']:.0f} MB, "
        f"checkpoint file {result['checkpoint_mb']:.0f} MB)",
        f"{'stage':<11}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}",
    ]
    for stage, figures in result["stages"].items():
        lines.append(
            f"{stage:<11}{figures['p50_ms']:>9.1f}{figures['p95_ms']:>9.1f}{figures['mean_ms']:>9.1f}"
        )
    return "\n".join(lines)
