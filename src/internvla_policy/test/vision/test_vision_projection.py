"""Back-projection of grounded pixels with depth and pinhole intrinsics."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_policy.vision.geometry import Box2D, Point2D
from internvla_policy.vision.projection import DepthProjector, PinholeIntrinsics

# The obs_camera of the sim_pick_place dataset: 640x480, fx 606.99, fy 606.49, cx 321.73, cy 260.76.
K = PinholeIntrinsics(606.9908, 606.4873, 321.7321, 260.7582, 640, 480)


def flat_depth(z: float, shape=(480, 640)) -> np.ndarray:
    return np.full(shape, z, np.float32)


def project(xyz: np.ndarray, k: PinholeIntrinsics) -> Point2D:
    """Where a camera-frame point lands, in Point2D's convention (pixel i spans [i, i+1))."""
    u = k.fx * xyz[0] / xyz[2] + k.cx
    v = k.fy * xyz[1] / xyz[2] + k.cy
    return Point2D(u + 0.5, v + 0.5)


def test_from_k_reads_a_row_major_camera_info_k():
    k = PinholeIntrinsics.from_k([500.0, 0, 320.5, 0, 501.0, 240.5, 0, 0, 1], 640, 480)
    assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (500.0, 501.0, 320.5, 240.5, 640, 480)


@pytest.mark.parametrize(
    "k", [[0.0] * 9, [500, 0, 320, 0, 500, float("nan"), 0, 0, 1], [-1, 0, 1, 0, 1, 1, 0, 0, 1]]
)
def test_uncalibrated_or_invalid_k_is_rejected(k):
    with pytest.raises(ValueError, match="invalid pinhole intrinsics"):
        PinholeIntrinsics.from_k(k, 640, 480)


def test_the_principal_point_lies_on_the_optical_axis():
    projector = DepthProjector(flat_depth(1.5), K, 640, 480)
    xyz = projector.point(Point2D(K.cx + 0.5, K.cy + 0.5))
    np.testing.assert_allclose(xyz, [0.0, 0.0, 1.5], atol=1e-12)


def test_lift_inverts_projection():
    projector = DepthProjector(flat_depth(1.0), K, 640, 480)
    rng = np.random.default_rng(3)
    for xyz in rng.uniform([-0.3, -0.2, 0.4], [0.3, 0.2, 2.0], (20, 3)):
        np.testing.assert_allclose(projector.lift(project(xyz, K), xyz[2]), xyz, atol=1e-12)


def test_other_resolutions_of_depth_and_intrinsics_are_scaled():
    # Source image 320x240, depth at 160x120 and K calibrated at 640x480: all three grids differ.
    depth = np.full((120, 160), np.nan, np.float32)
    depth[30, 40] = 2.0  # the depth pixel under source pixel (80.5, 60.5)
    projector = DepthProjector(depth, K, 320, 240, window=1)
    p = Point2D(80.5, 60.5)
    assert projector.depth_at(p) == 2.0
    u, v = p.x * 2 - 0.5, p.y * 2 - 0.5  # the pixel centre in K's 640x480 grid
    np.testing.assert_allclose(projector.point(p), [(u - K.cx) * 2 / K.fx, (v - K.cy) * 2 / K.fy, 2.0])


def test_depth_is_the_median_of_valid_readings_around_the_point():
    depth = np.full((480, 640), np.nan, np.float32)
    depth[98:103, 198:203] = [[1.0, 1.1, 1.2, 1.3, 1.4]] * 5
    depth[100, 200] = np.nan  # a hole right under the point
    projector = DepthProjector(depth, K, 640, 480, window=5)
    assert projector.depth_at(Point2D(200.5, 100.5)) == pytest.approx(1.2)
    assert projector.point(Point2D(400.5, 300.5)) is None  # no valid reading there


def test_points_on_the_image_border_use_the_pixels_inside():
    projector = DepthProjector(flat_depth(0.7), K, 640, 480)
    for p in (Point2D(0, 0), Point2D(640, 480), Point2D(640, 0)):
        assert projector.depth_at(p) == pytest.approx(0.7)


def test_box_outline_is_a_closed_rectangle_at_the_objects_median_depth():
    depth = flat_depth(3.0)  # the table behind
    depth[200:260, 300:380] = 0.8  # the object filling most of the box
    projector = DepthProjector(depth, K, 640, 480)
    box = Box2D(295, 195, 385, 265, "mug")
    outline = projector.box_outline(box)
    assert outline.shape == (5, 3)
    np.testing.assert_allclose(outline[0], outline[-1])
    np.testing.assert_allclose(outline[:, 2], 0.8)
    np.testing.assert_allclose(outline[0], projector.lift(Point2D(295, 195), 0.8))
    np.testing.assert_allclose(outline[2], projector.lift(Point2D(385, 265), 0.8))
    assert projector.box_outline(Box2D(0, 0, 10, 10)) is not None
    assert DepthProjector(flat_depth(np.nan), K, 640, 480).box_outline(box) is None
