"""Offscreen RGB, depth and segmentation rendering, pinhole intrinsics and ground-truth 2-D labels.

Image conventions follow ROS (REP-103 optical frame, sensor_msgs/CameraInfo): pixel (u, v) has
its centre at integer coordinates, u to the right, v down, so the principal point of a centred
camera is ((W - 1) / 2, (H - 1) / 2). Depth is metres along the optical axis (REP-118).
Bounding boxes are [x1, y1, x2, y2] pixel edges (x2, y2 exclusive), as Qwen2.5-VL's bbox_2d.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import mujoco
import numpy as np

# MuJoCo cameras look along -z with y up; the ROS optical frame looks along +z with y down.
_MUJOCO_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole model of a rendered camera, in pixels."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class ObjectLabel:
    """Where one object appears in an image: tight box of its visible pixels and its projected centre."""

    name: str
    label: str
    bbox_2d: tuple[int, int, int, int] | None  # None when no pixel of the object is visible
    point_2d: tuple[float, float]
    visible_pixels: int

    def to_json(self) -> dict:
        """A JSON-ready dict in the Qwen2.5-VL grounding vocabulary (bbox_2d, point_2d, label)."""
        return {
            "name": self.name,
            "label": self.label,
            "bbox_2d": list(self.bbox_2d) if self.bbox_2d is not None else None,
            "point_2d": [round(self.point_2d[0], 2), round(self.point_2d[1], 2)],
            "visible_pixels": self.visible_pixels,
        }


def camera_intrinsics(model: mujoco.MjModel, camera: str, width: int, height: int) -> CameraIntrinsics:
    """Intrinsics of ``camera`` rendered at width x height (square pixels, vertical field of view)."""
    fovy = np.deg2rad(model.cam_fovy[model.camera(camera).id])
    focal = 0.5 * height / np.tan(0.5 * fovy)
    return CameraIntrinsics(width, height, focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)


def camera_pose(data: mujoco.MjData, camera: str) -> tuple[np.ndarray, np.ndarray]:
    """Position and rotation (optical frame to world) of ``camera`` in the current state."""
    cam = data.camera(camera)
    return cam.xpos.copy(), cam.xmat.reshape(3, 3) @ _MUJOCO_TO_OPTICAL


def project(
    points_world: np.ndarray, cam_pos: np.ndarray, cam_rot: np.ndarray, k: CameraIntrinsics
) -> np.ndarray:
    """Pixel coordinates (N, 2) of world points (N, 3); points behind the camera give NaN."""
    cam = (np.atleast_2d(points_world) - cam_pos) @ cam_rot
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.column_stack([k.fx * cam[:, 0] / z + k.cx, k.fy * cam[:, 1] / z + k.cy])
    uv[z <= 0] = np.nan
    return uv


class CameraRenderer:
    """One offscreen renderer for all cameras of a scene at one image size."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int) -> None:
        self._model = model
        self._renderer = mujoco.Renderer(model, height=height, width=width)
        # Free the GL context before interpreter teardown even when close() is never called:
        # OSMesa raises from Renderer.__del__ once ctypes is half torn down.
        self._release = weakref.finalize(self, self._renderer.close)
        self.width, self.height = width, height
        self._far = float(model.vis.map.zfar * model.stat.extent)  # the far clipping plane, metres

    def rgb(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        """(H, W, 3) uint8 colour image."""
        self._renderer.update_scene(data, camera=camera)
        return self._renderer.render().copy()

    def depth(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        """(H, W) float32 depth in metres along the optical axis; +inf where nothing is hit (REP-118)."""
        self._renderer.enable_depth_rendering()
        try:
            self._renderer.update_scene(data, camera=camera)
            depth = self._renderer.render().astype(np.float32)
        finally:
            self._renderer.disable_depth_rendering()
        depth[depth >= self._far * 0.999] = np.inf
        return depth

    def geom_ids(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        """(H, W) int32 id of the geom seen at each pixel, -1 for none."""
        self._renderer.enable_segmentation_rendering()
        try:
            self._renderer.update_scene(data, camera=camera)
            seg = self._renderer.render()
        finally:
            self._renderer.disable_segmentation_rendering()
        return np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1).astype(np.int32)

    def close(self) -> None:
        """Free the GL context now."""
        self._release()


def object_labels(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    geom_ids: np.ndarray,
    camera: str,
    objects: dict[str, tuple[str, np.ndarray]],
) -> list[ObjectLabel]:
    """Labels for ``objects`` (body name -> (label, world point to mark)) from a segmentation image."""
    height, width = geom_ids.shape
    k = camera_intrinsics(model, camera, width, height)
    cam_pos, cam_rot = camera_pose(data, camera)
    body_of_pixel = np.where(geom_ids >= 0, model.geom_bodyid[np.maximum(geom_ids, 0)], -1)
    labels = []
    for name, (label, point) in objects.items():
        rows, cols = np.nonzero(body_of_pixel == model.body(name).id)
        box = None
        if rows.size:
            box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
        u, v = project(point, cam_pos, cam_rot, k)[0]
        labels.append(ObjectLabel(name, label, box, (float(u), float(v)), int(rows.size)))
    return labels
