"""Lift grounded pixels to 3-D points in the camera's optical frame with a depth image.

Assumptions, stated once: the depth image is registered to the colour image (same optical
frame and field of view, possibly another resolution), the pixels are rectified (CameraInfo's
K is used and distortion is ignored), and depth is in metres with NaN where invalid (see
imaging.depth_to_metres). Grounded coordinates use the Point2D convention (pixel i spans
[i, i+1)), while K puts pixel i's centre at i, hence the half-pixel shift below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Box2D, Point2D


@dataclass(frozen=True)
class PinholeIntrinsics:
    """Pinhole K for width x height images (REP-103 optical frame: z forward, x right, y down)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if (
            not all(np.isfinite(values))
            or self.fx <= 0
            or self.fy <= 0
            or self.width <= 0
            or self.height <= 0
        ):
            raise ValueError(f"invalid pinhole intrinsics: {self}")

    @classmethod
    def from_k(cls, k, width: int, height: int) -> PinholeIntrinsics:
        """From a row-major 3x3 K (CameraInfo.k)."""
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height))


class DepthProjector:
    """Back-projects points in a source image of size (image_width, image_height) with one depth frame."""

    def __init__(
        self,
        depth_m: np.ndarray,
        intrinsics: PinholeIntrinsics,
        image_width: int,
        image_height: int,
        window: int = 5,
    ) -> None:
        self.depth = depth_m
        self.intrinsics = intrinsics
        self.window = window
        depth_h, depth_w = depth_m.shape
        self._to_depth = (depth_w / image_width, depth_h / image_height)
        self._to_k = (intrinsics.width / image_width, intrinsics.height / image_height)

    def depth_at(self, p: Point2D) -> float:
        """Median of the valid depths in a small window around p (single pixels are often holes)."""
        u = p.x * self._to_depth[0]
        v = p.y * self._to_depth[1]
        return self._median(
            u - self.window / 2, v - self.window / 2, u + self.window / 2, v + self.window / 2
        )

    def depth_in_box(self, box: Box2D) -> float:
        """Median valid depth inside the box: the surface of the object it encloses."""
        sx, sy = self._to_depth
        return self._median(box.x_min * sx, box.y_min * sy, box.x_max * sx, box.y_max * sy)

    def lift(self, p: Point2D, depth: float) -> np.ndarray:
        """The 3-D point [x, y, z] (metres, optical frame) seen at p at the given depth (z)."""
        k = self.intrinsics
        u = p.x * self._to_k[0] - 0.5
        v = p.y * self._to_k[1] - 0.5
        return np.array([(u - k.cx) * depth / k.fx, (v - k.cy) * depth / k.fy, depth])

    def point(self, p: Point2D) -> np.ndarray | None:
        """p lifted at its own depth, or None where the depth has no valid reading."""
        z = self.depth_at(p)
        return None if np.isnan(z) else self.lift(p, z)

    def box_outline(self, box: Box2D) -> np.ndarray | None:
        """The box's four corners (closed: 5 rows) at the object's median depth, or None without depth."""
        z = self.depth_in_box(box)
        if np.isnan(z):
            return None
        corners = [
            (box.x_min, box.y_min),
            (box.x_max, box.y_min),
            (box.x_max, box.y_max),
            (box.x_min, box.y_max),
            (box.x_min, box.y_min),
        ]
        return np.stack([self.lift(Point2D(x, y), z) for x, y in corners])

    def _median(self, u0: float, v0: float, u1: float, v1: float) -> float:
        h, w = self.depth.shape
        c0, r0 = max(int(np.floor(u0)), 0), max(int(np.floor(v0)), 0)
        c1, r1 = min(max(int(np.ceil(u1)), c0 + 1), w), min(max(int(np.ceil(v1)), r0 + 1), h)
        patch = self.depth[r0:r1, c0:c1]
        valid = patch[np.isfinite(patch)]
        return float(np.median(valid)) if valid.size else float("nan")
