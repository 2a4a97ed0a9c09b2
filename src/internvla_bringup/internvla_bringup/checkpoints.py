"""What ``checkpoint: builtin`` and ``device: auto`` mean, decided once for every entry point."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

BUILTIN = "builtin"
CACHE_ENV = "INTERNVLA_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "internvla-ros")


def trained_builtin_run() -> Path | None:
    """The small trained default model shipped with internvla_policy, when this checkout has one."""
    candidates = [Path(__file__).resolve().parents[2] / "internvla_policy" / "models" / "default"]
    with contextlib.suppress(PackageNotFoundError):
        candidates.insert(0, Path(get_package_share_directory("internvla_policy")) / "models" / "default")
    return next((c for c in candidates if (c / "config.yaml").is_file()), None)


def tiny_random_run() -> Path:
    """A tiny random-weight model in the released layout, written once into the cache."""
    from internvla_policy.model.tiny import write_tiny_run

    run = cache_dir() / "tiny-random"
    if not (run / "config.yaml").is_file():
        write_tiny_run(run, seed=0)
    return run


def resolve_checkpoint(checkpoint: str) -> str:
    """A path the model loader accepts; ``builtin`` is the trained default, else the tiny random model."""
    if checkpoint != BUILTIN:
        return str(Path(checkpoint).expanduser())
    return str(trained_builtin_run() or tiny_random_run())


def is_random_builtin(checkpoint: str) -> bool:
    return Path(checkpoint).resolve() == tiny_random_run().resolve()


def resolve_device(device: str, dtype: str) -> tuple[str, str]:
    """``auto`` picks the GPU when torch sees one; bf16 there, float32 on the CPU."""
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else "bfloat16"
    return device, dtype
