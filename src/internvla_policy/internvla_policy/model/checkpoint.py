"""Finding a run's files, reading its weights without unpickling code, and loading them strictly.

The model is built on the meta device and the checkpoint's tensors are assigned into it one by
one, converted to the requested dtype, so loading holds about one copy of the weights (plus the
memory-mapped file pages) instead of a randomly initialised model and a state dict side by side.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from .errors import CheckpointError

CHECKPOINT_NAME = re.compile(r"^steps_(\d+)_pytorch_model\.(pt|safetensors)$")
CHECKPOINT_SUFFIXES = (".pt", ".safetensors")
RUN_LAYOUT = "config.yaml, dataset_statistics.json and checkpoints/steps_<N>_pytorch_model.pt"
QWEN_PREFIX = "qwen_vl_interface.model."
MAX_REPORTED_PATTERNS = 6


@dataclass(frozen=True)
class RunFiles:
    """The files of one released run: its folder, training config, statistics and chosen checkpoint."""

    run_dir: Path
    config: Path
    statistics: Path
    checkpoint: Path


def locate_run(path: str | Path, step: int | None = None) -> RunFiles:
    """Resolve a run folder (newest step, or ``step``) or a checkpoint file to the run's files.

    A checkpoint inside ``<run>/checkpoints/`` belongs to ``<run>`` (upstream's ``parents[1]``); one
    elsewhere is taken to sit in its run folder directly.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such run folder or checkpoint: {path}")
    if path.is_dir():
        run_dir, checkpoint = path, _pick_checkpoint(path, step)
    else:
        if path.suffix not in CHECKPOINT_SUFFIXES:
            raise CheckpointError(f"{path}: expected a run folder, a .pt or a .safetensors checkpoint")
        if step is not None:
            raise ValueError("step= picks a checkpoint inside a run folder; this path already names one")
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        checkpoint = path
    files = RunFiles(run_dir, run_dir / "config.yaml", run_dir / "dataset_statistics.json", checkpoint)
    for required in (files.config, files.statistics):
        if not required.is_file():
            raise FileNotFoundError(f"{required} not found: a run folder holds {RUN_LAYOUT}")
    return files


def _pick_checkpoint(run_dir: Path, step: int | None) -> Path:
    folder = run_dir / "checkpoints"
    found: dict[int, list[Path]] = {}
    for candidate in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = CHECKPOINT_NAME.match(candidate.name)
        # a dangling link is skipped: a symlink install keeps links to weights a retrained run removed
        if match and candidate.is_file():
            found.setdefault(int(match.group(1)), []).append(candidate)
    if not found:
        raise FileNotFoundError(
            f"no checkpoints/steps_<N>_pytorch_model.pt in {run_dir}: a run folder holds {RUN_LAYOUT}"
        )
    if step is None:
        step = max(found)
    elif step not in found:
        raise FileNotFoundError(f"{folder} has no checkpoint for step {step}; steps present: {sorted(found)}")
    # When both formats exist, prefer safetensors: it cannot carry code and maps faster.
    return sorted(found[step], key=lambda p: p.suffix != ".safetensors")[0]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a flat state dict from .safetensors or a torch.save file (``weights_only``, memory-mapped)."""
    try:
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused: it holds Python objects besides tensors, and checkpoints are read with "
            "weights_only=True, which never runs code from the file"
        ) from err
    except Exception as err:  # torch and safetensors raise many types for damaged files
        raise CheckpointError(
            f"{path}: cannot read the checkpoint (truncated or corrupt?): {_first_line(err)}"
        ) from err
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise CheckpointError(
            f"{path}: expected a state_dict (parameter names to tensors), got {type(state).__name__}"
        )
    return dict(state)


def canonical_key(key: str) -> str:
    """Rename Qwen keys from the pre-4.52 transformers layout (``model.layers``, ``visual.*``) to the
    current one (``model.language_model.*``, ``model.visual.*``); other keys pass unchanged."""
    if not key.startswith(QWEN_PREFIX):
        return key
    rest = key[len(QWEN_PREFIX) :]
    if rest.startswith("visual."):
        return f"{QWEN_PREFIX}model.{rest}"
    if rest.startswith("model.") and not rest.startswith(("model.language_model.", "model.visual.")):
        return f"{QWEN_PREFIX}model.language_model.{rest[len('model.') :]}"
    return key


def match_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: Path, derived: Iterable[str] = ()
) -> dict[str, torch.Tensor]:
    """Check ``state`` strictly against ``model``'s keys and shapes; return it under current key names.

    ``derived`` keys (tied weights) may be present or absent in the file and are dropped: the caller
    recomputes them. ``state`` is consumed so that its tensors are not held twice.
    """
    canonical: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = canonical_key(key)
        if name in canonical:
            raise CheckpointError(f"{source}: holds {name} twice (once under each Qwen key layout)")
        canonical[name] = value
    state.clear()
    derived = set(derived)
    expected = {key: value.shape for key, value in model.state_dict().items() if key not in derived}
    for key in derived:
        canonical.pop(key, None)
    missing = expected.keys() - canonical.keys()
    unexpected = canonical.keys() - expected.keys()
    mismatched = {
        key: (tuple(canonical[key].shape), tuple(shape))
        for key, shape in expected.items()
        if key in canonical and canonical[key].shape != shape
    }
    if missing or unexpected or mismatched:
        raise CheckpointError(key_report(source, len(expected), missing, unexpected, mismatched))
    return canonical


def load_weights(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    device: torch.device,
    dtype: torch.dtype,
    source: Path,
    derived: Iterable[str] = (),
) -> None:
    """Strictly load ``state`` into a meta-device ``model``, converting floats to ``dtype`` on ``device``.

    Tensors already in ``dtype`` on the CPU are assigned as they are (memory-mapped, no copy).
    """
    matched = match_state_dict(model, state, source=source, derived=derived)
    converted = {}
    for key in list(matched):
        value = matched.pop(key)
        converted[key] = value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
    model.load_state_dict(converted, strict=False, assign=True)
    materialize_meta_buffers(model, device)


def key_report(
    source: Path,
    num_expected: int,
    missing: Iterable[str],
    unexpected: Iterable[str],
    mismatched: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]],
) -> str:
    """A readable strict-load failure: keys grouped by module, layer indices folded into ``N``."""
    missing, unexpected = set(missing), set(unexpected)
    matched = num_expected - len(missing)
    if matched < num_expected / 2:
        head = (
            f"{source}: does not look like an InternVLA-M1 checkpoint for this config.yaml "
            f"(only {matched} of {num_expected} expected weights present; another architecture or size?)"
        )
    else:
        head = f"{source}: does not match the model config.yaml describes"
    lines = [head]
    for title, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            lines.append(f"{title} keys ({len(keys)}):")
            lines.extend(_grouped(keys))
    if mismatched:
        lines.append(f"shape mismatches ({len(mismatched)}), checkpoint vs model:")
        lines.extend(f"  {key}: {got} vs {want}" for key, (got, want) in sorted(mismatched.items())[:10])
    return "\n".join(lines)


def _grouped(keys: Iterable[str]) -> list[str]:
    groups: dict[str, Counter[str]] = {}
    for key in sorted(keys):
        parts = key.split(".")
        depth = 4 if key.startswith(f"{QWEN_PREFIX}model.") else 3 if key.startswith(QWEN_PREFIX) else 1
        module, rest = ".".join(parts[:depth]), ".".join(parts[depth:]) or "(itself)"
        groups.setdefault(module, Counter())[re.sub(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)", "N", rest)] += 1
    lines = []
    for module, patterns in groups.items():
        shown = [f"{p} (x{n})" if n > 1 else p for p, n in list(patterns.items())[:MAX_REPORTED_PATTERNS]]
        more = len(patterns) - len(shown)
        lines.append(
            f"  {module} [{sum(patterns.values())}]: "
            + ", ".join(shown)
            + (f", +{more} more" if more else "")
        )
    return lines


def materialize_meta_buffers(model: nn.Module, device: torch.device) -> None:
    """Recreate modules whose non-persistent buffers (rotary frequencies) are still on the meta device.

    Such buffers are never in a checkpoint; transformers modules that own them are rebuilt from the
    ``config`` they keep, which recomputes the buffers on ``device`` in float32.
    """
    for name, module in list(model.named_modules()):
        if not any(buffer.is_meta for buffer in module.buffers(recurse=False)):
            continue
        config = getattr(module, "config", None)
        if config is None:
            raise RuntimeError(f"{name}: buffers left on the meta device and no config to rebuild them from")
        with torch.device(device):
            rebuilt = type(module)(config)
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, rebuilt)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
