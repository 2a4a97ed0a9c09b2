"""One model per process for each (checkpoint, base VLM, device, dtype): the grounding and policy
nodes of one process share it instead of holding two copies of several GB of weights."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from .fast import FastInference
from .internvla_m1 import InternVLAM1, resolve_device, resolve_dtype

CacheKey = tuple[str, str | None, int | None, str, torch.dtype]

_models: dict[CacheKey, InternVLAM1] = {}
_key_locks: dict[CacheKey, threading.Lock] = {}
_fast: dict[int, FastInference] = {}
_registry_lock = threading.Lock()


def load_model_cached(
    path: str | Path,
    *,
    base_vlm: str | Path | None = None,
    step: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
) -> InternVLAM1:
    """:meth:`InternVLAM1.from_pretrained`, loaded once per key; thread-safe.

    Each key has its own lock, so a second caller of the same model waits for the first load
    instead of starting another, while a different model can load at the same time.
    """
    key: CacheKey = (
        str(Path(path).expanduser().resolve()),
        str(Path(base_vlm).expanduser().resolve()) if base_vlm else None,
        step,
        str(resolve_device(device)),
        resolve_dtype(dtype),
    )
    with _registry_lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        if key not in _models:
            _models[key] = InternVLAM1.from_pretrained(
                path, base_vlm=base_vlm, step=step, device=device, dtype=dtype
            )
        return _models[key]


def inference_for(model: InternVLAM1) -> InternVLAM1 | FastInference:
    """What the nodes run: the fast path on a GPU (one per model, shared like the model), else the model.

    The fast path gives the same actions and answers (docs/PERFORMANCE.md) with captured CUDA
    graphs; on the CPU it brings nothing measurable, so the reference path serves there.
    """
    if model.device.type != "cuda":
        return model
    with _registry_lock:
        if id(model) not in _fast:
            _fast[id(model)] = FastInference(model)
        return _fast[id(model)]


def load_for_inference(
    checkpoint: str | Path,
    *,
    base_vlm: str | Path | None,
    device: str | torch.device,
    dtype: torch.dtype | str,
    share: bool,
) -> InternVLAM1 | FastInference:
    """What a node loads: the run, through the process-wide cache with ``share`` (nodes of one process
    then hold one copy of the weights), wrapped as :func:`inference_for` decides. An empty
    ``base_vlm`` keeps the run's own."""
    load = load_model_cached if share else InternVLAM1.from_pretrained
    return inference_for(load(checkpoint, base_vlm=base_vlm or None, device=device, dtype=dtype))


def clear_model_cache() -> None:
    """Drop every cached model (their memory is freed once no caller holds them)."""
    with _registry_lock:
        _models.clear()
        _key_locks.clear()
        _fast.clear()
