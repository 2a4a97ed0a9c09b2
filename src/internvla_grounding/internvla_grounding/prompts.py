"""Grounding prompt templates: what to ask the model for boxes, points and traces.

The defaults follow the answer formats Qwen2.5-VL and InternVLA-M1 were trained on: JSON lists
of objects with "bbox_2d" ([x1, y1, x2, y2]) or "point_2d" ([x, y]) and a "label", in pixels of
the image as the processor resized it. InternVLA-M1's action-training prompt asks to "identify
the key objects for your task" and "locate their bounding boxes", so the box template keeps that
wording and adds the explicit JSON shape the parser reads best. Templates are node parameters;
the only placeholder is {instruction}, substituted literally (no str.format), so a template can
quote JSON braces freely.
"""

from __future__ import annotations

import enum

PLACEHOLDER = "{instruction}"


class GroundingKind(enum.Enum):
    """What to ask for; values are the node's `kind` parameter, .code the Ground.srv KIND_* value."""

    BOX = "box"
    POINT = "point"
    TRACE = "trace"

    @property
    def code(self) -> int:
        return _CODES[self]

    @classmethod
    def from_code(cls, code: int) -> GroundingKind:
        for kind, value in _CODES.items():
            if value == code:
                return kind
        raise ValueError(f"unknown grounding kind code {code} (expected 0 box, 1 point, 2 trace)")


_CODES = {GroundingKind.BOX: 0, GroundingKind.POINT: 1, GroundingKind.TRACE: 2}

DEFAULT_TEMPLATES: dict[GroundingKind, str] = {
    GroundingKind.BOX: (
        "Your task is: {instruction}. Identify the key objects for your task and locate their bounding "
        'boxes. Answer in JSON: [{"bbox_2d": [x1, y1, x2, y2], "label": "object name"}].'
    ),
    GroundingKind.POINT: (
        "Your task is: {instruction}. Point to where the robot should act: the object to grasp and the "
        'place to put it. Answer in JSON: [{"point_2d": [x, y], "label": "what the point is"}].'
    ),
    GroundingKind.TRACE: (
        "Your task is: {instruction}. Predict the path of the robot gripper in the image, from where it is "
        "now to where the task ends, as about 8 points in order. "
        'Answer in JSON: [{"trace": [[x1, y1], [x2, y2], ...], "label": "gripper"}].'
    ),
}


def validate_template(template: str) -> None:
    """Raise ValueError unless the template has exactly one {instruction} placeholder."""
    count = template.count(PLACEHOLDER)
    if count != 1:
        raise ValueError(f"a grounding template needs exactly one {PLACEHOLDER} placeholder, found {count}")


def render(template: str, instruction: str) -> str:
    """The prompt for one instruction.

    Trailing sentence punctuation is stripped from the instruction because the templates supply
    their own; unlike the policy's CoT prompt (which must reproduce upstream's "bowl.." exactly),
    nothing here was trained on the doubled period.
    """
    return template.replace(PLACEHOLDER, instruction.strip().rstrip(".!? ").strip())
