"""How the grounding node's spatial prompt reaches the action model (`spatial_prompt_mode`).

- "latent": the released behaviour. The model's own grounding prompt template (the checkpoint's
  CoT prompt, "identify the key objects ... locate their bounding boxes") wraps the instruction and
  the spatial reasoning stays inside the model; the grounding topic is not used.
- "text": the grounded boxes, points and traces are appended to the instruction as Qwen2.5-VL
  style JSON ("bbox_2d", "point_2d", "trace"), in pixels of the image as the model's processor
  sees it (Qwen's own convention for coordinates), inside the same template.
- "overlay": the grounding is drawn onto the matching camera image before inference.
- "off": no spatial guidance at all: the grounding topic is unused and the model gets the bare
  (lower-cased) instruction, without the checkpoint's grounding template.

"text" and "overlay" need a spatial prompt for the current instruction; without one the
controller holds (it does not guess where to act).

A prompt's size is bounded (`prompt_size_problem`): in "text" mode every box, point and label
becomes prompt tokens, and one message with 10,000 points stalled inference for 43 s. A prompt
over the bounds is refused, which in "text" and "overlay" mode holds the robot until a valid one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from internvla_policy.vision.annotate import draw_grounding
from internvla_policy.vision.geometry import GroundingResult

MODES = ("latent", "text", "overlay", "off")
MAX_BOXES = 32
MAX_POINTS = 64
MAX_TRACES = 8
MAX_TRACE_POINTS = 64
MAX_LABEL_LENGTH = 100
"""Bounds of one spatial prompt: far above what a grounding answer holds (a few objects)."""


@dataclass(frozen=True)
class SpatialPrompt:
    """What the policy uses from internvla_msgs/SpatialPrompt."""

    instruction: str
    frame_id: str
    grounding: GroundingResult


def needs_prompt(mode: str) -> bool:
    return mode in ("text", "overlay")


def prompt_size_problem(boxes: Sequence, points: Sequence, traces: Sequence) -> str | None:
    """Why a prompt is too large to use (None when it fits), checked before any conversion.

    Takes the message's own sequences (items with `label`, traces with `points`): counts first,
    so that the per-item checks after them are bounded too.
    """
    counts = (
        ("boxes", len(boxes), MAX_BOXES),
        ("points", len(points), MAX_POINTS),
        ("traces", len(traces), MAX_TRACES),
    )
    for what, count, limit in counts:
        if count > limit:
            return f"spatial prompt has {count} {what}, more than {limit}"
    for trace in traces:
        if len(trace.points) > MAX_TRACE_POINTS:
            return f"spatial prompt has a trace of {len(trace.points)} points, more than {MAX_TRACE_POINTS}"
    for item in (*boxes, *points, *traces):
        if len(item.label) > MAX_LABEL_LENGTH:
            return f"spatial prompt has a label of {len(item.label)} characters, more than {MAX_LABEL_LENGTH}"
    return None


def matching_camera(prompt: SpatialPrompt, frame_ids: Sequence[str]) -> int | None:
    """Index of the camera the prompt was grounded on: by frame_id, or the only camera there is."""
    if prompt.frame_id in frame_ids:
        return list(frame_ids).index(prompt.frame_id)
    return 0 if len(frame_ids) == 1 else None


def grounding_text(grounding: GroundingResult, view_size: tuple[int, int]) -> str:
    """The grounding as Qwen2.5-VL JSON, scaled from its source image to `view_size` (width, height)."""
    sx = view_size[0] / max(grounding.image_width, 1)
    sy = view_size[1] / max(grounding.image_height, 1)

    def pt(x: float, y: float) -> list[int]:
        return [round(x * sx), round(y * sy)]

    items: list[dict] = [
        {"bbox_2d": pt(b.x_min, b.y_min) + pt(b.x_max, b.y_max), "label": b.label} for b in grounding.boxes
    ]
    items += [{"point_2d": pt(k.point.x, k.point.y), "label": k.label} for k in grounding.points]
    items += [{"trace": [pt(p.x, p.y) for p in t.points], "label": t.label} for t in grounding.traces]
    return json.dumps(items)


def apply_spatial_prompt(
    mode: str,
    instruction: str,
    images: list[np.ndarray],
    frame_ids: Sequence[str],
    prompt: SpatialPrompt | None,
    view_size: Callable[[int, int], tuple[int, int]],
) -> tuple[str, list[np.ndarray]]:
    """The (instruction, images) to give the model. Raises ValueError when the mode cannot be applied."""
    if not needs_prompt(mode):
        return instruction, images
    if prompt is None:
        raise ValueError(f"spatial_prompt_mode '{mode}' needs a spatial prompt for this instruction")
    if mode == "text":
        size = view_size(prompt.grounding.image_width, prompt.grounding.image_height)
        return f"{instruction.rstrip()} Grounding: {grounding_text(prompt.grounding, size)}", images
    camera = matching_camera(prompt, frame_ids)
    if camera is None:
        raise ValueError(f"spatial prompt frame '{prompt.frame_id}' is not one of {list(frame_ids)}")
    drawn = list(images)
    drawn[camera] = draw_grounding(images[camera], prompt.grounding)
    return instruction, drawn
