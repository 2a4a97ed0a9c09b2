"""The grounding node's parameters, described once: name, default, description and validation.

The node declares a ROS parameter for each PARAMETERS entry (with the description as its
descriptor) and hands the values to settings_from_values, which either returns a typed
GroundingSettings or raises SettingsError naming the parameter and saying what to do. Kept
ROS-free so the rules are unit-tested without a graph.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from internvla_policy.control.instruction import MAX_INSTRUCTION_LENGTH

from .parsing import CoordinateConvention
from .prompts import DEFAULT_TEMPLATES, GroundingKind, validate_template

DTYPES = ("float32", "bfloat16", "float16")
IMAGE_TRANSPORTS = ("raw", "compressed")
_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec(
        "checkpoint", "", "InternVLA-M1 checkpoint: <run>/checkpoints/steps_<N>_pytorch_model.pt (required)"
    ),
    ParameterSpec(
        "base_vlm", "", "Qwen2.5-VL base folder; empty = framework.qwenvl.base_vlm of the run's config"
    ),
    ParameterSpec("device", "cpu", "torch device for the model: cpu, cuda, cuda:N or mps"),
    ParameterSpec("dtype", "float32", "model weights and compute type", choices=DTYPES),
    ParameterSpec(
        "share_model",
        True,
        "true: use the process-wide model cache keyed by checkpoint, so a policy node in the same process "
        "shares the weights; false: load a private copy",
    ),
    ParameterSpec(
        "kind", "box", "what to ground on the topic stream", choices=tuple(k.value for k in GroundingKind)
    ),
    *(
        ParameterSpec(
            f"templates.{kind.value}",
            template,
            f"prompt for {kind.value} answers; must contain {{instruction}}",
        )
        for kind, template in DEFAULT_TEMPLATES.items()
    ),
    ParameterSpec(
        "rate_hz",
        1.0,
        "re-ground the newest camera frame at this rate (Hz) while an instruction is active; "
        "0 = only when a new instruction arrives",
        minimum=0.0,
    ),
    ParameterSpec(
        "coordinates",
        CoordinateConvention.PIXELS.value,
        "the answers' coordinates: 'pixels' of the processor-resized image (Qwen2.5-VL, InternVLA-M1) or "
        "'normalized_1000' (0..1000 on both axes)",
        choices=tuple(c.value for c in CoordinateConvention),
    ),
    ParameterSpec("max_new_tokens", 256, "longest answer generated, in tokens", minimum=1),
    ParameterSpec(
        "max_instruction_length",
        MAX_INSTRUCTION_LENGTH,
        "longer instructions (or any with control characters) are rejected (characters)",
        minimum=1,
    ),
    ParameterSpec(
        "max_image_pixels",
        4096 * 4096,
        "camera frames with more pixels (width x height) are rejected",
        minimum=1,
    ),
    ParameterSpec(
        "max_frame_age_s", 2.0, "never ground a frame received longer ago than this (s)", minimum=0.0
    ),
    ParameterSpec(
        "image_transport",
        "raw",
        "camera input: 'raw' subscribes to image, 'compressed' to image/compressed",
        choices=IMAGE_TRANSPORTS,
    ),
    ParameterSpec(
        "depth_sync_tolerance_s",
        0.1,
        "a depth frame is used for 3-D markers only if its stamp is this close to the colour frame's (s)",
        minimum=0.0,
    ),
    ParameterSpec(
        "service_timeout_s", 60.0, "a Ground request fails after waiting this long (s)", minimum=0.0
    ),
    ParameterSpec(
        "warn_throttle_s",
        5.0,
        "repeat a warning about the same dropped input at most this often (s)",
        minimum=0.0,
    ),
)


class SettingsError(ValueError):
    """A parameter value the node cannot start with; the message names the parameter."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"parameter '{name}': {problem}")
        self.parameter = name


@dataclass(frozen=True)
class GroundingSettings:
    checkpoint: Path
    base_vlm: Path | None
    device: str
    dtype: str
    share_model: bool
    kind: GroundingKind
    templates: Mapping[GroundingKind, str]
    rate_hz: float
    coordinates: CoordinateConvention
    max_new_tokens: int
    max_instruction_length: int
    max_image_pixels: int
    max_frame_age_s: float
    image_transport: str
    depth_sync_tolerance_s: float
    service_timeout_s: float
    warn_throttle_s: float


def settings_from_values(values: Mapping[str, Any]) -> GroundingSettings:
    """Validate parameter values (missing ones take their defaults) into GroundingSettings."""
    v = {spec.name: values.get(spec.name, spec.default) for spec in PARAMETERS}
    for spec in PARAMETERS:
        _check_spec(spec, v[spec.name])
    if not v["checkpoint"]:
        raise SettingsError(
            "checkpoint", "not set; pass -p checkpoint:=<run>/checkpoints/steps_<N>_pytorch_model.pt"
        )
    checkpoint = Path(v["checkpoint"]).expanduser()
    if not checkpoint.exists():
        raise SettingsError("checkpoint", f"{checkpoint} does not exist")
    base_vlm = Path(v["base_vlm"]).expanduser() if v["base_vlm"] else None
    if base_vlm is not None and not base_vlm.is_dir():
        raise SettingsError("base_vlm", f"{base_vlm} is not a folder")
    if not _DEVICE.fullmatch(v["device"]):
        raise SettingsError("device", f"{v['device']!r} is not a torch device (cpu, cuda, cuda:N, mps)")
    templates = {}
    for kind in GroundingKind:
        name = f"templates.{kind.value}"
        try:
            validate_template(v[name])
        except ValueError as exc:
            raise SettingsError(name, str(exc)) from None
        templates[kind] = v[name]
    return GroundingSettings(
        checkpoint=checkpoint,
        base_vlm=base_vlm,
        device=v["device"],
        dtype=v["dtype"],
        share_model=v["share_model"],
        kind=GroundingKind(v["kind"]),
        templates=templates,
        rate_hz=float(v["rate_hz"]),
        coordinates=CoordinateConvention(v["coordinates"]),
        max_new_tokens=v["max_new_tokens"],
        max_instruction_length=v["max_instruction_length"],
        max_image_pixels=v["max_image_pixels"],
        max_frame_age_s=float(v["max_frame_age_s"]),
        image_transport=v["image_transport"],
        depth_sync_tolerance_s=float(v["depth_sync_tolerance_s"]),
        service_timeout_s=float(v["service_timeout_s"]),
        warn_throttle_s=float(v["warn_throttle_s"]),
    )


def _check_spec(spec: ParameterSpec, value: Any) -> None:
    expected = type(spec.default)
    if not _has_type(value, expected):
        raise SettingsError(spec.name, f"expected a {expected.__name__}, got {value!r}")
    if spec.choices and value not in spec.choices:
        raise SettingsError(spec.name, f"{value!r} is not one of {', '.join(spec.choices)}")
    if spec.minimum is not None and value < spec.minimum:
        raise SettingsError(spec.name, f"must be >= {spec.minimum}, got {value}")


def _has_type(value: Any, expected: type) -> bool:
    """bool is never a number here, and an integer is accepted where a float is expected (`-p rate_hz:=2`)."""
    if isinstance(value, bool) or expected is bool:
        return isinstance(value, bool) and expected is bool
    return isinstance(value, (int, float)) if expected is float else isinstance(value, expected)
