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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from internvla_policy.vision.annotate import draw_grounding
from internvla_policy.vision.geometry import GroundingResult

MODES = ("latent", "text", "overlay", "off")


@dataclass(frozen=True)
class SpatialPrompt:
    """What the policy uses from internvla_msgs/SpatialPrompt."""

    instruction: str
    frame_id: str
    grounding: GroundingResult


def needs_prompt(mode: str) -> bool:
    return mode in ("text", "overlay")


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
