"""Scene assembly: a robot on a tabletop with four coloured blocks, a bowl, lights and cameras.

One builder serves all three robots; the robot's ``Workspace`` sizes the table and the objects.
Rendering settings favour software (OSMesa) speed: no shadow maps, light multisampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from internvla_bringup.sim.robots import JointLimits, RobotConfig, build_robot_spec
from internvla_bringup.sim.transforms import look_at_quat

BLOCK_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.1),
    "green": (0.12, 0.65, 0.22),
    "blue": (0.12, 0.28, 0.85),
    "yellow": (0.95, 0.82, 0.1),
}
BOWL = "bowl"
BOWL_HEIGHT = 0.045
BLOCK_MASS = 0.05
_BOWL_SEGMENTS = 16
_BOWL_FLARE = 0.35  # wall tilt outwards, rad


def block_name(colour: str) -> str:
    """Body name of the block of ``colour`` (also the object label with the underscore as a space)."""
    return f"{colour}_block"


OBJECT_NAMES: tuple[str, ...] = (*(block_name(c) for c in BLOCK_COLOURS), BOWL)


def object_label(name: str) -> str:
    """Natural-language label of an object body ("red_block" -> "red block")."""
    return name.replace("_", " ")


@dataclass
class Scene:
    """A compiled scene and the facts about it that the environment needs."""

    model: mujoco.MjModel
    config: RobotConfig
    limits: dict[str, JointLimits]
    actuated_joints: tuple[str, ...]
    camera_names: tuple[str, ...]


def _add_table(spec: mujoco.MjSpec, config: RobotConfig) -> None:
    ws = config.workspace
    x0, x1 = ws.table_near_x, ws.x_range[1] + 0.35
    half_y = max(abs(ws.y_range[0]), abs(ws.y_range[1])) + 0.4
    thickness = 0.03
    table = spec.worldbody.add_body(name="table", pos=[(x0 + x1) / 2, 0.0, ws.table_z - thickness / 2])
    wood = [0.62, 0.47, 0.32, 1.0]
    table.add_geom(
        name="table_top",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[(x1 - x0) / 2, half_y, thickness / 2],
        rgba=wood,
        friction=[1.0, 0.005, 0.0001],
    )
    leg_len = (ws.table_z - thickness) - ws.floor_z
    for sx in (-1, 1):
        for sy in (-1, 1):
            table.add_geom(
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[0.025, 0.025, leg_len / 2],
                rgba=wood,
                pos=[sx * ((x1 - x0) / 2 - 0.05), sy * (half_y - 0.05), -thickness / 2 - leg_len / 2],
            )
    spec.add_texture(
        name="floor_checker",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.32, 0.34, 0.38],
        rgb2=[0.26, 0.28, 0.31],
        width=256,
        height=256,
    )
    spec.add_material(name="floor", textures=["", "floor_checker"], texrepeat=[6, 6], texuniform=True)
    spec.worldbody.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[4, 4, 0.1],
        pos=[0, 0, ws.floor_z],
        material="floor",
    )


def _add_block(spec: mujoco.MjSpec, colour: str, size: float) -> None:
    body = spec.worldbody.add_body(name=block_name(colour), pos=[0.0, 0.0, size / 2])
    body.add_freejoint(name=f"{block_name(colour)}_joint")
    body.add_geom(
        name=block_name(colour),
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[size / 2] * 3,
        mass=BLOCK_MASS,
        rgba=[*BLOCK_COLOURS[colour], 1.0],
        friction=[1.2, 0.01, 0.0002],
        condim=4,
    )


def _add_bowl(spec: mujoco.MjSpec, radius: float) -> None:
    """A flared dish: a disc and a ring of tilted wall panels (primitive geoms collide robustly)."""
    body = spec.worldbody.add_body(name=BOWL, pos=[0.0, 0.0, 0.0])
    body.add_freejoint(name=f"{BOWL}_joint")
    colour = [0.93, 0.93, 0.95, 1.0]
    body.add_geom(
        name=f"{BOWL}_base",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[radius, 0.004, 0],
        pos=[0, 0, 0.004],
        mass=0.3,
        rgba=colour,
    )
    half_len = radius * np.tan(np.pi / _BOWL_SEGMENTS) * 1.15
    for k in range(_BOWL_SEGMENTS):
        angle = 2 * np.pi * k / _BOWL_SEGMENTS
        centre = radius + 0.5 * BOWL_HEIGHT * np.sin(_BOWL_FLARE)
        quat = np.zeros(4)
        mujoco.mju_mulQuat(
            quat, _yaw_quat(angle), _pitch_quat(_BOWL_FLARE)
        )  # face outwards, tilt the top out
        body.add_geom(
            name=f"{BOWL}_wall{k}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.003, half_len, BOWL_HEIGHT / 2],
            quat=quat,
            mass=0.02,
            rgba=colour,
            pos=[centre * np.cos(angle), centre * np.sin(angle), BOWL_HEIGHT / 2 + 0.002],
        )


def _yaw_quat(angle: float) -> np.ndarray:
    return np.array([np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)])


def _pitch_quat(angle: float) -> np.ndarray:
    return np.array([np.cos(angle / 2), 0.0, np.sin(angle / 2), 0.0])


def _add_cameras_and_lights(spec: mujoco.MjSpec, config: RobotConfig) -> tuple[str, ...]:
    ws = config.workspace
    centre = [np.mean(ws.x_range), np.mean(ws.y_range), ws.table_z]
    spec.worldbody.add_light(
        name="key",
        pos=[centre[0] - 0.3, centre[1] + 0.5, ws.table_z + 2.0],
        dir=[0.15, -0.25, -1.0],
        diffuse=[0.75, 0.75, 0.72],
        specular=[0.2, 0.2, 0.2],
        castshadow=False,
    )
    spec.worldbody.add_light(
        name="fill",
        pos=[centre[0] + 1.0, centre[1] - 0.8, ws.table_z + 1.5],
        dir=[-0.5, 0.4, -0.7],
        diffuse=[0.35, 0.35, 0.38],
        specular=[0, 0, 0],
        castshadow=False,
    )
    for mount in config.cameras:
        parent = spec.worldbody if mount.body == "world" else spec.body(mount.body)
        parent.add_camera(
            name=mount.name,
            pos=list(mount.pos),
            fovy=mount.fovy_deg,
            quat=look_at_quat(np.array(mount.forward), np.array(mount.up)),
        )
    return tuple(m.name for m in config.cameras)


def build_scene(robot: str, physics_rate_hz: float = 500.0, max_image_size: int = 640) -> Scene:
    """Compile the tabletop scene around ``robot``; objects start stacked at the origin until reset."""
    if not 50.0 <= physics_rate_hz <= 5000.0:
        raise ValueError(f"physics_rate_hz must be within [50, 5000], got {physics_rate_hz}")
    robot_spec = build_robot_spec(robot)
    spec, config = robot_spec.spec, robot_spec.config
    spec.modelname = f"internvla_{robot}_tabletop"
    spec.option.timestep = 1.0 / physics_rate_hz
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.global_.offwidth = max(640, max_image_size)
    spec.visual.global_.offheight = max(480, max_image_size)
    spec.visual.map.znear = 0.005  # fraction of the model extent: the wrist camera sees the fingers close up
    _add_table(spec, config)
    for colour in BLOCK_COLOURS:
        _add_block(spec, colour, config.workspace.block_size)
    _add_bowl(spec, config.workspace.bowl_radius)
    cameras = _add_cameras_and_lights(spec, config)
    return Scene(spec.compile(), config, robot_spec.limits, robot_spec.actuated_joints, cameras)
