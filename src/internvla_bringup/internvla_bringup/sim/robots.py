"""The three simulated robots: which joints are driven, gripper, tool frame, cameras, workspace.

These are facts about the simulated models (built straight from the registry URDFs, so joint
names and kinematics equal what pinocchio loads from the same files), not deployment settings:
those live in the bringup YAML profiles. The world frame of every scene is the robot base frame.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import mujoco
import numpy as np

from internvla_bringup.sim.assets import ROBOT_NAMES, robot_description

# Collision bits: robot geoms collide with the world (table, objects) but never with each other,
# which keeps contact detection cheap for the 50-geom humanoid and avoids URDF self-overlaps.
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 1, 0
SCENE_CAMERA = "scene_camera"  # every robot has it; the grounding labels refer to its image


@dataclass(frozen=True)
class GripperConfig:
    """Gripper joints and their positions when fully open and fully closed (URDF units)."""

    joints: tuple[str, ...]
    open: tuple[float, ...]
    closed: tuple[float, ...]
    max_force: float  # per joint actuator, N or N m: the grip force a position servo saturates at

    def positions(self, opening: float) -> np.ndarray:
        """Joint positions for an opening fraction in [0, 1], 1 = fully open."""
        frac = float(np.clip(opening, 0.0, 1.0))
        return np.asarray(self.closed) + frac * (np.asarray(self.open) - np.asarray(self.closed))


@dataclass(frozen=True)
class CameraMount:
    """A camera fixed to ``body`` ("world" for the scene) looking along ``forward`` (body frame)."""

    name: str
    body: str
    pos: tuple[float, float, float]
    forward: tuple[float, float, float]
    up: tuple[float, float, float]
    fovy_deg: float


@dataclass(frozen=True)
class Workspace:
    """Table and object region in the robot base frame, metres."""

    table_z: float
    floor_z: float
    table_near_x: float  # the table edge closest to the robot: behind an arm's base, in front of a humanoid
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    block_size: float
    bowl_radius: float


@dataclass(frozen=True)
class RobotConfig:
    """Everything the simulator needs to know about one robot model."""

    name: str
    robot_type: str
    arm_joints: tuple[str, ...]
    gripper: GripperConfig
    tcp_body: str
    home: dict[str, float]
    accel_limit: tuple[float, ...]  # rad/s^2 per arm joint; the URDF has no acceleration limits
    velocity_cap: float  # rad/s ceiling over the URDF velocity limits (some URDFs list motor speeds)
    servo_error_at_max_force: float  # position error (rad or m) at which a joint servo saturates
    armature: float
    rgba: tuple[float, float, float, float]
    workspace: Workspace
    cameras: tuple[CameraMount, ...]
    # Tool orientation pointing at the table with yaw 0, for the scripted expert's top-down grasps;
    # None where the expert has no grasp (the humanoid's dexterous hand).
    tcp_down_rpy: tuple[float, float, float] | None


_FRANKA = RobotConfig(
    name="franka",
    robot_type="franka_panda",
    arm_joints=tuple(f"panda_joint{i}" for i in range(1, 8)),
    gripper=GripperConfig(
        joints=("panda_finger_joint1", "panda_finger_joint2"),
        open=(0.04, 0.04),
        closed=(0.0, 0.0),
        max_force=30.0,
    ),
    tcp_body="panda_hand_tcp",
    home={
        "panda_joint1": 0.0,
        "panda_joint2": -0.785,
        "panda_joint3": 0.0,
        "panda_joint4": -2.356,
        "panda_joint5": 0.0,
        "panda_joint6": 1.571,
        "panda_joint7": 0.785,
        "panda_finger_joint1": 0.04,
        "panda_finger_joint2": 0.04,
    },
    # Franka Emika datasheet joint acceleration limits.
    accel_limit=(15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0),
    velocity_cap=2.61,
    servo_error_at_max_force=0.02,
    armature=0.1,
    rgba=(0.92, 0.92, 0.9, 1.0),
    workspace=Workspace(
        table_z=0.0,
        floor_z=-0.75,
        table_near_x=-0.3,
        x_range=(0.4, 0.65),
        y_range=(-0.22, 0.22),
        block_size=0.04,
        bowl_radius=0.075,
    ),
    cameras=(
        CameraMount(SCENE_CAMERA, "world", (1.15, -0.45, 0.85), (-0.7, 0.45, -0.73), (0.0, 0.0, 1.0), 50.0),
        CameraMount(
            "wrist_camera", "panda_hand", (0.09, 0.0, -0.02), (-0.45, 0.0, 1.0), (1.0, 0.0, 0.0), 70.0
        ),
    ),
    tcp_down_rpy=(np.pi, 0.0, 0.0),
)

_WIDOWX = RobotConfig(
    name="widowx",
    robot_type="widowx_250s",
    arm_joints=("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"),
    gripper=GripperConfig(
        joints=("left_finger", "right_finger"), open=(0.037, -0.037), closed=(0.015, -0.015), max_force=5.0
    ),
    tcp_body="wx250s/ee_gripper_link",
    home={
        "waist": 0.0,
        "shoulder": -0.3,
        "elbow": 0.4,
        "forearm_roll": 0.0,
        "wrist_angle": 1.45,
        "wrist_rotate": 0.0,
        "left_finger": 0.037,
        "right_finger": -0.037,
    },
    accel_limit=(10.0,) * 6,
    velocity_cap=2.0,
    servo_error_at_max_force=0.02,
    armature=0.02,
    rgba=(0.15, 0.15, 0.17, 1.0),
    workspace=Workspace(
        table_z=0.0,
        floor_z=-0.75,
        table_near_x=-0.3,
        x_range=(0.22, 0.36),
        y_range=(-0.15, 0.15),
        block_size=0.025,
        bowl_radius=0.06,
    ),
    cameras=(
        CameraMount(SCENE_CAMERA, "world", (0.75, 0.0, 0.45), (-0.6, 0.0, -0.52), (0.0, 0.0, 1.0), 50.0),
    ),
    tcp_down_rpy=(0.0, np.pi / 2, 0.0),
)

_HUMANOID = RobotConfig(
    name="humanoid",
    robot_type="unitree_g1",
    # The left arm, as the humanoid bringup profile drives it; every other joint holds its home.
    arm_joints=tuple(
        f"left_{j}_joint"
        for j in (
            "shoulder_pitch",
            "shoulder_roll",
            "shoulder_yaw",
            "elbow",
            "wrist_roll",
            "wrist_pitch",
            "wrist_yaw",
        )
    ),
    gripper=GripperConfig(
        joints=tuple(
            f"left_hand_{j}_joint"
            for j in ("thumb_0", "thumb_1", "thumb_2", "middle_0", "middle_1", "index_0", "index_1")
        ),
        open=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        closed=(0.0, 0.6, 1.2, -1.2, -1.2, -1.2, -1.2),
        max_force=1.4,
    ),
    tcp_body="left_hand_palm_link",
    home={"right_shoulder_roll_joint": -0.15, "left_shoulder_roll_joint": 0.15},
    accel_limit=(20.0,) * 7,
    velocity_cap=3.0,
    servo_error_at_max_force=0.02,
    armature=0.05,
    rgba=(0.55, 0.57, 0.6, 1.0),
    workspace=Workspace(
        table_z=-0.06,
        floor_z=-0.8,
        table_near_x=0.16,
        x_range=(0.26, 0.46),
        y_range=(-0.04, 0.36),
        block_size=0.04,
        bowl_radius=0.07,
    ),
    cameras=(
        CameraMount(SCENE_CAMERA, "world", (0.95, 0.3, 0.45), (-0.6, -0.15, -0.4), (0.0, 0.0, 1.0), 55.0),
    ),
    tcp_down_rpy=None,
)

ROBOTS: dict[str, RobotConfig] = {cfg.name: cfg for cfg in (_FRANKA, _WIDOWX, _HUMANOID)}


def robot_config(name: str) -> RobotConfig:
    """The configuration of ``name``; a clear error lists the valid names."""
    if name not in ROBOTS:
        raise ValueError(f"unknown robot '{name}', expected one of {', '.join(ROBOT_NAMES)}")
    return ROBOTS[name]


@dataclass(frozen=True)
class JointLimits:
    lower: float
    upper: float
    velocity: float
    effort: float


def _float_attr(attrs: dict[str, str], key: str, default: float) -> float:
    return float(attrs.get(key, default))


def urdf_joint_limits(urdf_xml: str) -> dict[str, JointLimits]:
    """Position, velocity and effort limits of every non-fixed URDF joint (continuous: +-inf)."""
    limits = {}
    # Direct children only: <transmission> elements also hold <joint> tags, without limits.
    for joint in ET.fromstring(urdf_xml).findall("joint"):
        if joint.get("type") in ("fixed", "floating", "planar"):
            continue
        lim = joint.find("limit")
        attrs = lim.attrib if lim is not None else {}
        get = functools.partial(_float_attr, attrs)
        continuous = joint.get("type") == "continuous"
        limits[joint.get("name")] = JointLimits(
            lower=-np.inf if continuous else get("lower", 0.0),
            upper=np.inf if continuous else get("upper", 0.0),
            velocity=get("velocity", 1.0),
            effort=get("effort", 1.0),
        )
    return limits


@dataclass
class RobotModelSpec:
    """A MuJoCo spec of the robot alone, with the facts the scene and the servo need."""

    config: RobotConfig
    spec: mujoco.MjSpec
    limits: dict[str, JointLimits]
    actuated_joints: tuple[str, ...]  # arm, then gripper, then held joints: one actuator each


def _mujoco_urdf(urdf_xml: str) -> mujoco.MjSpec:
    root = ET.fromstring(urdf_xml)
    extension = ET.SubElement(root, "mujoco")
    # Keep every link as a body (fusestatic off) so URDF frames such as panda_hand_tcp exist by name;
    # collision geometry doubles as visual geometry (URDF visual meshes are often COLLADA).
    ET.SubElement(extension, "compiler", strippath="false", discardvisual="true", fusestatic="false")
    return mujoco.MjSpec.from_string(ET.tostring(root, encoding="unicode"))


def build_robot_spec(name: str) -> RobotModelSpec:
    """The robot's MuJoCo spec: gravity compensated, position servos on every joint, no self-collision.

    Gravity compensation stands in for the robot's own controller (a real Franka compensates gravity
    internally), so the joint servos track commanded positions instead of sagging under load.
    """
    config = robot_config(name)
    urdf = robot_description(name).urdf_xml
    spec = _mujoco_urdf(urdf)
    limits = urdf_joint_limits(urdf)
    for mimic in list(spec.equalities):  # URDF mimic tags become equality constraints: every joint is driven
        spec.delete(mimic)
    for body in spec.bodies:
        if body.name != "world":
            body.gravcomp = 1.0
    for geom in spec.geoms:
        geom.contype, geom.conaffinity = ROBOT_CONTYPE, ROBOT_CONAFFINITY
        geom.rgba = config.rgba
        geom.friction = [1.5, 0.02, 0.001]
        geom.condim = 4
    joint_names = [j.name for j in spec.joints]
    driven = list(config.arm_joints) + list(config.gripper.joints)
    actuated = tuple(driven + [j for j in joint_names if j not in driven])
    for joint_name in actuated:
        lim = limits[joint_name]
        joint = spec.joint(joint_name)
        joint.armature = config.armature
        force = config.gripper.max_force if joint_name in config.gripper.joints else lim.effort
        act = spec.add_actuator(name=joint_name, target=joint_name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=force / config.servo_error_at_max_force, dampratio=1.0)
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-force, force]
    return RobotModelSpec(config, spec, limits, actuated)
