"""What the model grounded, in source-image pixels, as plain dataclasses.

These mirror the internvla_msgs geometry messages so the ROS-free code (parser, drawing,
projection, the policy's prompt builders) never needs a ROS import. Coordinates follow
internvla_msgs/Point2D: source-image pixels, origin at the top-left corner of the top-left
pixel, x right, y down; pixel (i, j) covers [i, i+1) x [j, j+1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ParseStatus(enum.IntEnum):
    """How completely an answer was turned into geometry (values = SpatialPrompt.PARSE_*)."""

    OK = 0
    PARTIAL = 1
    EMPTY = 2
    FAILED = 3


@dataclass(frozen=True)
class Point2D:
    x: float
    y: float


@dataclass(frozen=True)
class Box2D:
    """Axis-aligned box by its corners; after parsing 0 <= x_min <= x_max <= width (same for y)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    label: str = ""
    score: float = 1.0

    @property
    def center(self) -> Point2D:
        return Point2D(0.5 * (self.x_min + self.x_max), 0.5 * (self.y_min + self.y_max))


@dataclass(frozen=True)
class Keypoint2D:
    point: Point2D
    label: str = ""
    score: float = 1.0


@dataclass(frozen=True)
class Trace2D:
    """An ordered path; points[0] is the start."""

    points: tuple[Point2D, ...]
    label: str = ""
    score: float = 1.0


@dataclass(frozen=True)
class GroundingResult:
    """Everything parsed from one answer, for one source image of the given size."""

    image_width: int
    image_height: int
    boxes: tuple[Box2D, ...] = ()
    points: tuple[Keypoint2D, ...] = ()
    traces: tuple[Trace2D, ...] = ()
    status: ParseStatus = ParseStatus.EMPTY
    status_message: str = ""

    @property
    def is_empty(self) -> bool:
        return not (self.boxes or self.points or self.traces)

    def contains(self, p: Point2D) -> bool:
        """True when p lies in the closed image rectangle [0, width] x [0, height]."""
        return 0.0 <= p.x <= self.image_width and 0.0 <= p.y <= self.image_height

    def to_dict(self) -> dict:
        """JSON-ready form (the `internvla-ground parse` output)."""
        return {
            "image_width": self.image_width,
            "image_height": self.image_height,
            "boxes": [
                {
                    "label": b.label,
                    "score": b.score,
                    "x_min": b.x_min,
                    "y_min": b.y_min,
                    "x_max": b.x_max,
                    "y_max": b.y_max,
                }
                for b in self.boxes
            ],
            "points": [
                {"label": k.label, "score": k.score, "x": k.point.x, "y": k.point.y} for k in self.points
            ],
            "traces": [
                {"label": t.label, "score": t.score, "points": [[p.x, p.y] for p in t.points]}
                for t in self.traces
            ],
            "status": self.status.name.lower(),
            "status_message": self.status_message,
        }
