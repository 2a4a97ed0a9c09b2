"""Draw grounded boxes, points and traces with their labels on an RGB frame.

Used twice: the grounding node's annotated image (what RViz shows) and the policy's `overlay`
spatial-prompt mode (the drawing becomes model input), so it must be deterministic: colours
come from a checksum of the label (stable across frames and processes, unlike hash()), and the
input frame is never modified.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import Box2D, GroundingResult, Keypoint2D, Point2D, Trace2D

# Distinct, saturated RGB colours that stay readable on typical table-top scenes.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 56, 56),
    (56, 160, 255),
    (72, 220, 72),
    (255, 178, 29),
    (207, 73, 255),
    (0, 212, 187),
    (255, 112, 180),
    (146, 204, 23),
    (255, 255, 64),
    (61, 219, 255),
)
_SHIFT = 4  # cv2 fixed-point bits: draw at 1/16 px so sub-pixel geometry is not rounded away
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class AnnotationStyle:
    """Sizes in pixels; None scales them with the frame (about 1 px per 240 px of the shorter side)."""

    thickness: int | None = None
    font_scale: float | None = None
    point_radius: int | None = None
    show_scores: bool = True


def color_for(label: str) -> tuple[int, int, int]:
    """The palette colour of a label; the same label always gets the same colour."""
    return PALETTE[zlib.crc32(label.encode("utf-8")) % len(PALETTE)]


def draw_grounding(
    image_rgb: np.ndarray,
    result: GroundingResult,
    caption: str | None = None,
    style: AnnotationStyle = AnnotationStyle(),
) -> np.ndarray:
    """A copy of image_rgb ([H, W, 3] uint8, any strides) with the result drawn on it.

    The result's coordinates are pixels of its own image (image_width x image_height); a frame
    of another size, such as the policy's resized model view, is drawn on after scaling.
    """
    canvas = np.array(image_rgb, dtype=np.uint8, order="C", copy=True)
    height, width = canvas.shape[:2]
    pen = _Pen(canvas, style, width / max(result.image_width, 1), height / max(result.image_height, 1))
    for box in result.boxes:
        pen.box(box)
    for trace in result.traces:
        pen.trace(trace)
    for keypoint in result.points:
        pen.keypoint(keypoint)
    pen.draw_labels()
    if caption:
        pen.caption(caption)
    return canvas


def _to_fixed(x: float, y: float) -> tuple[int, int]:
    return round(x * (1 << _SHIFT)), round(y * (1 << _SHIFT))


class _Pen:
    """Drawing state for one frame: scale to the frame and sizes derived from the style."""

    def __init__(self, canvas: np.ndarray, style: AnnotationStyle, sx: float, sy: float) -> None:
        self.canvas = canvas
        self.sx, self.sy = sx, sy
        short_side = min(canvas.shape[:2])
        self.thickness = style.thickness or max(1, round(short_side / 240))
        self.font_scale = style.font_scale or max(0.35, short_side / 900)
        self.radius = style.point_radius or max(3, 2 * self.thickness + 1)
        self.show_scores = style.show_scores
        self._labels: list[tuple[str, tuple[int, int], tuple[int, int, int], int]] = []

    def _fixed(self, p: Point2D) -> tuple[int, int]:
        """cv2 fixed-point coordinates of p (Point2D puts pixel i's centre at i + 0.5, cv2 at i)."""
        return _to_fixed(p.x * self.sx - 0.5, p.y * self.sy - 0.5)

    def _text(self, label: str, score: float) -> str:
        # Hershey fonts are ASCII-only; anything else would draw as garbage.
        text = label.encode("ascii", "replace").decode("ascii") if label else ""
        if self.show_scores and score < 1.0:
            text = f"{text} {score:.2f}".strip()
        return text

    def box(self, box: Box2D) -> None:
        # The outline runs through the first and last pixels inside the box, so a 1-px line is crisp.
        x0, y0 = box.x_min * self.sx, box.y_min * self.sy
        x1, y1 = max(box.x_max * self.sx - 1, x0), max(box.y_max * self.sy - 1, y0)
        color = color_for(box.label)
        top_left = _to_fixed(x0, y0)
        cv2.rectangle(self.canvas, top_left, _to_fixed(x1, y1), color, self.thickness, cv2.LINE_AA, _SHIFT)
        self.label(self._text(box.label, box.score), top_left, color)

    def keypoint(self, keypoint: Keypoint2D) -> None:
        color = color_for(keypoint.label)
        center = self._fixed(keypoint.point)
        radius = self.radius << _SHIFT
        cv2.circle(
            self.canvas, center, radius + (self.thickness << _SHIFT), (255, 255, 255), -1, cv2.LINE_AA, _SHIFT
        )
        cv2.circle(self.canvas, center, radius, color, -1, cv2.LINE_AA, _SHIFT)
        self.label(
            self._text(keypoint.label, keypoint.score), center, color, beside=self.radius + 2 * self.thickness
        )

    def trace(self, trace: Trace2D) -> None:
        if not trace.points:
            return
        color = color_for(trace.label)
        path = np.array([self._fixed(p) for p in trace.points], dtype=np.int32)
        cv2.polylines(self.canvas, [path], False, color, self.thickness, cv2.LINE_AA, _SHIFT)
        cv2.circle(self.canvas, tuple(path[0]), self.radius << _SHIFT, color, -1, cv2.LINE_AA, _SHIFT)
        if len(path) > 1:
            # Arrow head on the last segment: which end is the goal matters more than the path.
            cv2.arrowedLine(
                self.canvas,
                tuple(path[-2]),
                tuple(path[-1]),
                color,
                self.thickness + 1,
                cv2.LINE_AA,
                _SHIFT,
                tipLength=min(0.5, 4 * self.radius / max(self._length(path), 1)),
            )
        self.label(self._text(trace.label, trace.score), tuple(path[0]), color)

    @staticmethod
    def _length(path: np.ndarray) -> float:
        return float(np.hypot(*(path[-1] - path[-2]))) / (1 << _SHIFT)

    def label(self, text: str, anchor: tuple[int, int], color: tuple[int, int, int], beside: int = 0) -> None:
        """Queue a label; all are drawn after the shapes so that no line crosses a label's text."""
        if text:
            self._labels.append((text, anchor, color, beside))

    def draw_labels(self) -> None:
        for label in self._labels:
            self._tag(*label)

    def _tag(self, text: str, anchor: tuple[int, int], color: tuple[int, int, int], beside: int) -> None:
        """Text on a filled tag just above the anchor (below it when there is no room above).

        beside > 0 puts the tag that many pixels to the right of the anchor instead, centred on it,
        so a point's label covers neither the point nor the label of the box around it.
        """
        (tw, th), baseline = cv2.getTextSize(text, _FONT, self.font_scale, 1)
        tag_h = th + baseline + 2
        height, width = self.canvas.shape[:2]
        x, y = (anchor[0] >> _SHIFT) + beside, anchor[1] >> _SHIFT
        above = y - tag_h
        top = y - tag_h // 2 if beside else (above if above >= 0 else y)
        x = min(max(x, 0), max(width - tw - 2, 0))
        top = min(max(top, 0), max(height - tag_h, 0))
        cv2.rectangle(self.canvas, (x, top), (x + tw + 2, top + tag_h), color, -1)
        ink = (0, 0, 0) if sum(color) > 382 else (255, 255, 255)
        cv2.putText(self.canvas, text, (x + 1, top + th + 1), _FONT, self.font_scale, ink, 1, cv2.LINE_AA)

    def caption(self, text: str) -> None:
        """A one-line banner across the top (instruction and parse status), shaded for contrast."""
        text = text.encode("ascii", "replace").decode("ascii")
        (_, th), baseline = cv2.getTextSize(text, _FONT, self.font_scale, 1)
        band = self.canvas[: th + baseline + 6]
        band[:] = (band.astype(np.uint16) * 2 // 5).astype(np.uint8)
        cv2.putText(self.canvas, text, (3, th + 3), _FONT, self.font_scale, (255, 255, 255), 1, cv2.LINE_AA)
