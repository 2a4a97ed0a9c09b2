"""``internvla-m1 bench``: the reference path against the fast path, on the same inputs and noise.

One run builds the model (random weights at the released model's real dimensions or the tiny ones,
or a checkpoint from disk), then times two paths on one 640x480 camera frame, CFG 1.5, 10 DDIM steps:

- reference: what the released code does. ``InternVLAM1.predict_action`` with float32 weights, under
  bfloat16 autocast on a GPU (upstream's ``torch.autocast("cuda")``, a no-op on the CPU), PIL and the
  Qwen processor per call, eager kernels, classifier-free guidance as a doubled DiT batch.
- fast: :class:`FastInference` (on a GPU bfloat16 matrix weights, float32 activations under autocast,
  CUDA graphs; on the CPU float32, eager).

Each path's first call is timed on its own (cold start: lazy initialisation, plan building, graph
capture), then ``warmup`` untimed calls, then ``repeats`` timed ones: p50/p95 end to end and per stage.
Every call's normalised actions are compared across the paths (same seed, so same initial noise):
``max_rel_err`` is the largest ||fast - reference|| / ||reference|| over the chunks. The grounding answer
(``answer_tokens`` new tokens, greedy) is timed the same way.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import multiprocessing.queues
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
import transformers
from PIL import Image

from .checkpoint import locate_run
from .fast import FastInference
from .internvla_m1 import ActionPrediction, Answer, InternVLAM1
from .synthetic import random_model

STAGES = ("preprocess", "vlm", "dino", "qformer", "dit", "postprocess")
FRAME_SHAPE = (480, 640, 3)  # a VGA camera frame
INSTRUCTION = "Pick up the red block and place it in the bowl."
GROUNDING_PROMPT = "Give the bounding box for the red block."
CFG_SCALE = 1.5  # upstream's default: guidance doubles the DiT batch
DDIM_STEPS = 10
LOW_PRECISION_TOLERANCE = 1e-2  # the bound for bfloat16
FLOAT32_TOLERANCE = 1e-5


@dataclass(frozen=True)
class BenchSettings:
    """What to benchmark and how long. ``run`` (a run folder) replaces the random model of ``dims``."""

    dims: str = "tiny"
    device: str = "cpu"
    repeats: int = 10
    warmup: int = 2
    answer_tokens: int = 32
    answer_repeats: int = 3
    seed: int = 0
    compile_dit: bool = False
    fast_dtype: str | None = None
    pure_low_precision: bool = False
    """Fast path: activations in the weights' low dtype too, instead of float32 under autocast."""
    threads: int = 0
    """CPU threads for torch; 0: every core this process may use but one (as the policy node does)."""
    run: Path | None = None


def summary_ms(seconds: list[float], first_call: float | None = None) -> dict[str, float]:
    """p50 and p95 in milliseconds (and the first call's time when given)."""
    values = np.asarray(seconds) * 1000
    figures = {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}
    if first_call is not None:
        figures["first_call"] = first_call * 1000
    return figures


@dataclass
class PathTimes:
    """What one path measured: first call, end-to-end and per-stage seconds of the timed calls."""

    first_call: float
    total: list[float]
    stages: dict[str, list[float]]

    def report(self) -> dict[str, Any]:
        return {
            "ms": summary_ms(self.total, self.first_call),
            "stages_ms": {stage: summary_ms(values) for stage, values in self.stages.items()},
        }


def _timed_calls(
    call: Callable[[int], tuple[Any, dict[str, float]]], warmup: int, repeats: int
) -> tuple[PathTimes, list[Any]]:
    """Run ``call(seed)`` for seeds 0..: first call, ``warmup`` more, then ``repeats`` timed ones.

    ``call`` returns its result and its per-stage seconds; end to end is measured here.
    """
    results, totals, stages = [], [], {stage: [] for stage in STAGES}
    first_call = 0.0
    for index in range(1 + warmup + repeats):
        started = time.perf_counter()
        result, timings = call(index)
        elapsed = time.perf_counter() - started
        results.append(result)
        if index == 0:
            first_call = elapsed
        elif index > warmup:
            totals.append(elapsed)
            for stage in STAGES:
                stages[stage].append(timings.get(stage, 0.0))
    return PathTimes(first_call, totals, stages), results


@contextlib.contextmanager
def reference_precision(device: torch.device) -> Iterator[None]:
    """Upstream's ``torch.autocast("cuda", dtype=torch.bfloat16)`` around inference: active on CUDA only."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        yield


def reference_action_call(model: InternVLAM1, frame: np.ndarray) -> Callable[[int], tuple[Any, dict]]:
    def call(seed: int) -> tuple[ActionPrediction, dict[str, float]]:
        started = time.perf_counter()
        with reference_precision(model.device):
            prediction = model.predict_action(
                [[frame]], [INSTRUCTION], cfg_scale=CFG_SCALE, ddim_steps=DDIM_STEPS, seed=seed
            )
        timings = dict(prediction.timings)
        timings["postprocess"] = time.perf_counter() - started - timings.pop("total")
        return prediction, timings

    return call


def fast_action_call(fast: FastInference, frame: np.ndarray) -> Callable[[int], tuple[Any, dict]]:
    def call(seed: int) -> tuple[ActionPrediction, dict[str, float]]:
        prediction = fast.predict_action(
            [[frame]], [INSTRUCTION], cfg_scale=CFG_SCALE, ddim_steps=DDIM_STEPS, seed=seed
        )
        return prediction, prediction.timings

    return call


def reference_answer_call(
    model: InternVLAM1, frame: np.ndarray, tokens: int
) -> Callable[[int], tuple[Any, dict]]:
    def call(_: int) -> tuple[Answer, dict[str, float]]:
        with reference_precision(model.device):
            return model.generate(frame, GROUNDING_PROMPT, max_new_tokens=tokens), {}

    return call


def fast_answer_call(
    fast: FastInference, frame: np.ndarray, tokens: int
) -> Callable[[int], tuple[Any, dict]]:
    def call(_: int) -> tuple[Answer, dict[str, float]]:
        return fast.generate(frame, GROUNDING_PROMPT, max_new_tokens=tokens), {}

    return call


def relative_error(fast: np.ndarray, reference: np.ndarray) -> float:
    """||fast - reference|| / ||reference|| over a whole action chunk."""
    return float(np.linalg.norm(fast - reference) / max(np.linalg.norm(reference), 1e-12))


def build_model(settings: BenchSettings) -> InternVLAM1:
    if settings.run is not None:
        return InternVLAM1.from_pretrained(settings.run, device=settings.device)
    return random_model(settings.dims, device=settings.device, seed=settings.seed)


def run_benchmark(settings: BenchSettings) -> dict[str, Any]:
    """Everything ``internvla-m1 bench`` reports, as one JSON-ready dict."""
    load = measure_load(settings.run, settings.device) if settings.run is not None else None
    torch.set_num_threads(settings.threads or max(1, len(os.sched_getaffinity(0)) - 1))
    model = build_model(settings)
    device = model.device
    frame = np.random.default_rng(settings.seed).integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
    reference, reference_results = _timed_calls(
        reference_action_call(model, frame), settings.warmup, settings.repeats
    )
    fast_dtype = getattr(torch, settings.fast_dtype) if settings.fast_dtype else None
    fast = FastInference(
        model,
        dtype=fast_dtype,
        mixed_precision=not settings.pure_low_precision,
        compile_dit=settings.compile_dit,
    )
    fast_times, fast_results = _timed_calls(fast_action_call(fast, frame), settings.warmup, settings.repeats)
    errors = [
        relative_error(f.normalized, r.normalized)
        for f, r in zip(fast_results, reference_results, strict=True)
    ]
    low_precision = fast.dtype != torch.float32 or device.type == "cuda"
    tolerance = LOW_PRECISION_TOLERANCE if low_precision else FLOAT32_TOLERANCE
    result: dict[str, Any] = {
        "device": describe_device(device),
        "dims": "checkpoint" if settings.run is not None else settings.dims,
        "reference_ms": reference.report()["ms"],
        "fast_ms": fast_times.report()["ms"],
        "speedup": reference.report()["ms"]["p50"] / fast_times.report()["ms"]["p50"],
        "max_rel_err": max(errors),
        "max_abs_err": max(
            float(np.abs(f.normalized - r.normalized).max())
            for f, r in zip(fast_results, reference_results, strict=True)
        ),
        "agreement_tolerance": tolerance,
        "agreement_ok": max(errors) <= tolerance,
        "stages_ms": {"reference": reference.report()["stages_ms"], "fast": fast_times.report()["stages_ms"]},
        "fast_stage_modes": fast.stage_modes(),
    }
    if settings.answer_tokens > 0:
        result["answer"] = measure_answers(model, fast, frame, settings)
    result.update(
        {
            "input": {
                "frame_hwc": list(FRAME_SHAPE),
                "views": 1,
                "image_size": list(model.config.image_size) if model.config.image_size else None,
                "instruction": INSTRUCTION,
                "prompt_tokens": prompt_length(model, frame),
                "cfg_scale": CFG_SCALE,
                "ddim_steps": DDIM_STEPS,
            },
            "calls": {"warmup": settings.warmup, "repeats": settings.repeats, "seeds_compared": len(errors)},
            "model": {
                "parameters": model.parameter_counts(),
                "reference_dtype": dtype_name(model.dtype),
                "fast_dtype": dtype_name(fast.dtype),
                "fast_precision": fast.precision,
                "fast_cuda_graphs": fast.cuda_graphs,
                "fast_compiled_dit": fast.compiled,
            },
            "versions": versions(),
            "machine": machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    if settings.run is not None:
        result["run"] = str(settings.run)
        result["checkpoint_mb"] = locate_run(settings.run).checkpoint.stat().st_size / 2**20
        result["load"] = load
    return result


def measure_answers(
    model: InternVLAM1, fast: FastInference, frame: np.ndarray, settings: BenchSettings
) -> dict[str, Any]:
    """Time the grounding answer on both paths; compare the generated ids."""
    tokens, repeats = settings.answer_tokens, settings.answer_repeats
    reference, reference_answers = _timed_calls(reference_answer_call(model, frame, tokens), 1, repeats)
    fast_times, fast_answers = _timed_calls(fast_answer_call(fast, frame, tokens), 1, repeats)
    return {
        "prompt": GROUNDING_PROMPT,
        "max_new_tokens": tokens,
        "new_tokens": {
            "reference": len(reference_answers[0].token_ids),
            "fast": len(fast_answers[0].token_ids),
        },
        "prompt_tokens": len(fast_answers[0].prompt_token_ids),
        "reference_ms": reference.report()["ms"],
        "fast_ms": fast_times.report()["ms"],
        "speedup": reference.report()["ms"]["p50"] / fast_times.report()["ms"]["p50"],
        "token_ids_match": all(
            f.token_ids == r.token_ids for f, r in zip(fast_answers, reference_answers, strict=True)
        ),
    }


def prompt_length(model: InternVLAM1, frame: np.ndarray) -> int:
    """Tokens Qwen reads for the benchmark's instruction and frame (image tokens included)."""
    views = model.model_views([[Image.fromarray(frame)]])
    return int(model.qwen_inputs(views, [model.prompt_text(INSTRUCTION)])["input_ids"].shape[1])


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_model()}, {torch.get_num_threads()} torch threads)"


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo where there is one (Linux), else the architecture."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.machine()


def versions() -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "executable": sys.executable,
    }


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


def _load_in_child(run: str, device: str, results: multiprocessing.queues.Queue) -> None:
    """Runs in the spawned process: load once and report time and memory through ``results``."""
    reset = _reset_peak()
    before = _memory_kib()
    start = time.perf_counter()
    model = InternVLAM1.from_pretrained(run, device=device)
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


def measure_load(run: Path, device: str = "cpu") -> dict[str, Any]:
    """Load time and resident memory of ``from_pretrained`` in a fresh (spawned) process: memory this
    process already touched would hide the loader's own peak."""
    if not Path("/proc/self/status").exists():
        raise RuntimeError("peak-memory measurement needs Linux /proc")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_load_in_child, args=(str(run), device, results))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the loading process failed with exit code {child.exitcode}")
    return results.get(timeout=10)


def format_report(result: dict[str, Any]) -> str:
    """The table printed by ``internvla-m1 bench``."""
    ref, fast = result["reference_ms"], result["fast_ms"]
    stages_ref, stages_fast = result["stages_ms"]["reference"], result["stages_ms"]["fast"]
    lines = [
        f"device: {result['device']}; dims: {result['dims']}; "
        f"prompt {result['input']['prompt_tokens']} tokens; "
        f"reference {result['model']['reference_dtype']}, fast {result['model']['fast_precision']}; "
        f"load average {result['machine']['load_average_1min']:.2f}",
        f"{'stage':<12}{'ref p50':>10}{'ref p95':>10}{'fast p50':>10}{'fast p95':>10}   (ms)",
    ]
    for stage in STAGES:
        lines.append(
            f"{stage:<12}{stages_ref[stage]['p50']:>10.2f}{stages_ref[stage]['p95']:>10.2f}"
            f"{stages_fast[stage]['p50']:>10.2f}{stages_fast[stage]['p95']:>10.2f}"
        )
    lines += [
        f"{'end to end':<12}{ref['p50']:>10.2f}{ref['p95']:>10.2f}{fast['p50']:>10.2f}{fast['p95']:>10.2f}",
        f"{'first call':<12}{ref['first_call']:>10.1f}{'':>10}{fast['first_call']:>10.1f}",
        f"speedup (reference p50 / fast p50): {result['speedup']:.2f}x",
        f"agreement: max relative error {result['max_rel_err']:.2e} over {result['calls']['seeds_compared']} "
        f"chunks (tolerance {result['agreement_tolerance']:.0e}): "
        + ("PASS" if result["agreement_ok"] else "FAIL"),
        "fast stages: " + ", ".join(f"{name} {mode}" for name, mode in result["fast_stage_modes"].items()),
    ]
    answer = result.get("answer")
    if answer:
        lines.append(
            f"answer ({answer['max_new_tokens']} new tokens max; generated "
            f"{answer['new_tokens']['reference']} ref / {answer['new_tokens']['fast']} fast; "
            f"prompt {answer['prompt_tokens']} tokens): reference p50 "
            f"{answer['reference_ms']['p50']:.1f} ms, fast p50 {answer['fast_ms']['p50']:.1f} ms "
            f"({answer['speedup']:.2f}x), token ids match: {answer['token_ids_match']}"
        )
    return "\n".join(lines)
