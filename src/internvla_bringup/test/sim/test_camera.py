"""Rendering gives sane RGB and depth; intrinsics, depth and projection agree with the scene geometry."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_bringup.sim.camera import camera_pose, project
from internvla_bringup.sim.env import SimEnv
from internvla_bringup.sim.scene import BLOCK_COLOURS, BOWL, OBJECT_NAMES, block_name


def test_rgb_and_depth_are_sane(any_env: SimEnv) -> None:
    for camera in any_env.camera_names:
        rgb = any_env.render_rgb(camera)
        depth = any_env.render_depth(camera)
        assert rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8
        assert depth.shape == (224, 224) and depth.dtype == np.float32
        assert rgb.std() > 20  # a scene, not a blank frame
        hit = np.isfinite(depth)
        assert hit.mean() > 0.5  # the table and floor fill most of the view
        assert np.all(depth[~hit] == np.inf)  # background beyond the far plane: +inf (REP-118)
        assert depth[hit].min() > 0.02 and depth[hit].max() < 10.0


def test_table_pixels_back_project_onto_the_table_plane(franka_env: SimEnv) -> None:
    """Depth is metres along the optical axis and K maps it back: every table pixel lands at z = 0."""
    env = franka_env
    env.reset(0)
    k = env.intrinsics("scene_camera")
    assert (k.cx, k.cy) == (111.5, 111.5) and k.fx == k.fy
    depth = env.render_depth("scene_camera")
    geoms = env.render_geom_ids("scene_camera")
    rows, cols = np.nonzero(geoms == env.model.geom("table_top").id)
    assert rows.size > 5000
    z = depth[rows, cols]
    optical = np.column_stack([(cols - k.cx) * z / k.fx, (rows - k.cy) * z / k.fy, z])
    cam_pos, cam_rot = camera_pose(env.data, "scene_camera")
    world = optical @ cam_rot.T + cam_pos
    height = world[:, 2] - env.config.workspace.table_z
    # The top face (most pixels) lands on the plane; the visible front edge of the 3 cm slab lies below it.
    assert np.quantile(np.abs(height), 0.9) < 1e-3
    assert height.min() > -0.031 and height.max() < 1e-3


def test_projection_lands_on_the_object_in_the_image(franka_env: SimEnv) -> None:
    env = franka_env
    env.reset(4)
    rgb = env.render_rgb("scene_camera")
    k = env.intrinsics("scene_camera")
    for colour, value in BLOCK_COLOURS.items():
        top = env.object_position(block_name(colour)) + np.array([0, 0, env.config.workspace.block_size / 2])
        u, v = project(top, *camera_pose(env.data, "scene_camera"), k)[0]
        pixel = rgb[round(v), round(u)].astype(float) / 255.0
        dominant = int(np.argmax(value))
        assert np.argmax(pixel) == dominant or colour == "yellow", (colour, pixel)


def test_grounding_labels_box_every_visible_object(any_env: SimEnv) -> None:
    labels = {label.name: label for label in any_env.grounding_labels("scene_camera")}
    assert set(labels) == set(OBJECT_NAMES)
    for name, label in labels.items():
        assert label.bbox_2d is not None, name
        x1, y1, x2, y2 = label.bbox_2d
        assert 0 <= x1 < x2 <= 224 and 0 <= y1 < y2 <= 224
        assert label.visible_pixels <= (x2 - x1) * (y2 - y1)
        u, v = label.point_2d
        assert x1 - 1 <= u <= x2 + 1 and y1 - 1 <= v <= y2 + 1, (name, label)
    assert labels[BOWL].visible_pixels > labels["red_block"].visible_pixels


def test_hidden_object_has_no_box(franka_env: SimEnv) -> None:
    env = franka_env
    env.reset(0)
    env.data.joint("red_block_joint").qpos[:3] = [3.0, 3.0, -0.7]  # under the table, out of view
    env.step(0.01)
    label = next(lab for lab in env.grounding_labels("scene_camera") if lab.name == "red_block")
    assert label.bbox_2d is None and label.visible_pixels == 0
    env.reset(0)


@pytest.mark.parametrize("camera", ["scene_camera", "wrist_camera"])
def test_camera_intrinsics_follow_the_image_size(camera: str) -> None:
    with SimEnv("franka", image_width=320, image_height=240) as env:
        k = env.intrinsics(camera)
        assert (k.width, k.height, k.cx, k.cy) == (320, 240, 159.5, 119.5)
        fovy = np.deg2rad(env.model.cam_fovy[env.model.camera(camera).id])
        assert k.fy == pytest.approx(120.0 / np.tan(fovy / 2))
        assert env.render_rgb(camera).shape == (240, 320, 3)
