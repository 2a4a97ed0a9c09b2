"""Robot models: found in the asset packages, loaded into MuJoCo, kinematically equal to pinocchio."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pinocchio as pin
import pytest

from internvla_bringup.sim.assets import AssetNotFoundError, find_installed, robot_description
from internvla_bringup.sim.robots import robot_config, urdf_joint_limits
from internvla_bringup.sim.scene import OBJECT_NAMES, build_scene

ROBOTS = ("franka", "widowx", "humanoid")


@pytest.mark.parametrize("robot", ROBOTS)
def test_description_found_with_every_mesh(robot: str) -> None:
    description = robot_description(robot)
    assert description.source.is_file()
    assert "site-packages" in str(description.source) or "dist-packages" in str(description.source)
    meshes = [m.get("filename") for m in ET.fromstring(description.urdf_xml).iter("mesh")]
    assert len(meshes) >= 8
    assert all(Path(m).is_absolute() and Path(m).is_file() for m in meshes)


def test_missing_asset_names_the_package() -> None:
    with pytest.raises(AssetNotFoundError, match="pip install --no-deps example-robot-data"):
        find_installed("no/such/robot.urdf", "example-robot-data")
    with pytest.raises(ValueError, match="franka, widowx, humanoid"):
        robot_description("ur5")


@pytest.mark.parametrize("robot", ROBOTS)
def test_scene_loads_with_objects_cameras_and_actuators(robot: str) -> None:
    scene = build_scene(robot)
    model, config = scene.model, scene.config
    for name in OBJECT_NAMES:
        assert model.body(name).id > 0
    assert set(scene.camera_names) == {m.name for m in config.cameras}
    joint_names = {model.joint(j).name for j in range(model.njnt)}
    assert set(config.arm_joints) <= joint_names and set(config.gripper.joints) <= joint_names
    # One position servo per robot joint; the five objects are free bodies.
    assert model.nu == model.njnt - len(OBJECT_NAMES)
    assert model.opt.timestep == pytest.approx(0.002)


def test_franka_joint_names_match_the_policy_urdf() -> None:
    scene = build_scene("franka")
    assert scene.config.arm_joints == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert scene.actuated_joints[:9] == (
        *scene.config.arm_joints,
        "panda_finger_joint1",
        "panda_finger_joint2",
    )


@pytest.mark.parametrize("robot", ROBOTS)
def test_forward_kinematics_equals_pinocchio_on_the_same_urdf(
    robot: str, request: pytest.FixtureRequest
) -> None:
    """The policy solves IK with pinocchio on the registry URDF: the simulator must agree within 1 mm."""
    env = request.getfixturevalue(f"{robot}_env")
    config = env.config
    model = pin.buildModelFromXML(robot_description(robot).urdf_xml)
    data = model.createData()
    frame = model.getFrameId(config.tcp_body)
    rng = np.random.default_rng(7)
    lower, upper = env.kinematics.lower, env.kinematics.upper
    worst_pos, worst_rot = 0.0, 0.0
    for _ in range(50):
        q_arm = rng.uniform(lower, upper)
        pos, rot = env.kinematics.forward(q_arm, np.zeros(env.model.nq))
        q = pin.neutral(model)
        for name, value in zip(config.arm_joints, q_arm, strict=True):
            q[model.joints[model.getJointId(name)].idx_q] = value
        pin.framesForwardKinematics(model, data, q)
        worst_pos = max(worst_pos, float(np.linalg.norm(data.oMf[frame].translation - pos)))
        worst_rot = max(worst_rot, float(np.abs(data.oMf[frame].rotation - rot).max()))
    assert worst_pos < 1e-3
    assert worst_rot < 1e-3


def test_servo_limits_come_from_the_urdf() -> None:
    limits = urdf_joint_limits(robot_description("franka").urdf_xml)
    assert limits["panda_joint1"].velocity == pytest.approx(2.175)
    assert limits["panda_joint4"].upper == pytest.approx(-0.0698)
    assert limits["panda_joint7"].effort == pytest.approx(12.0)
    assert robot_config("franka").accel_limit[1] == pytest.approx(7.5)
