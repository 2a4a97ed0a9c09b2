"""The simulated robot: scene, servo-driven joints, gripper, cameras, tasks and success.

``SimEnv`` is the one object the ROS node, the scripted expert and the recorder drive. It owns
physics time: callers command targets and advance time with ``step``; nothing here knows about
wall-clock time or messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from internvla_bringup.sim.camera import (
    CameraIntrinsics,
    CameraRenderer,
    ObjectLabel,
    camera_intrinsics,
    object_labels,
)
from internvla_bringup.sim.kinematics import ArmKinematics
from internvla_bringup.sim.scene import BOWL, BOWL_HEIGHT, OBJECT_NAMES, build_scene, object_label
from internvla_bringup.sim.servo import JointServo, TrajectoryPoint
from internvla_bringup.sim.tasks import (
    DEFAULT_KINDS,
    ObjectState,
    Task,
    judge,
    parse_instruction,
    sample_layout,
    sample_task,
)
from internvla_bringup.sim.transforms import rpy_to_matrix

SETTLE_TIME = 0.3  # seconds of physics after a reset so objects rest on the table
START_HEIGHT = (0.12, 0.45)  # metres above the table of a random start's tool position
START_YAW = np.pi / 4  # largest tool yaw away from the top-down grasp orientation at a random start


@dataclass(frozen=True)
class JointStateSample:
    """Joint names with position (rad or m), velocity and actuator effort (N m or N)."""

    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


@dataclass(frozen=True)
class TaskStatus:
    """Where the episode stands; ``success`` latches once the task has been achieved."""

    robot: str
    seed: int
    instruction: str
    success: bool
    success_now: bool
    step: int
    sim_time: float

    def to_json(self) -> dict:
        """JSON-ready dict (the /sim/task_status payload)."""
        return {
            "robot": self.robot,
            "seed": self.seed,
            "task": self.instruction,
            "success": self.success,
            "success_now": self.success_now,
            "step": self.step,
            "sim_time": round(self.sim_time, 4),
        }


def resolve_task(task: str | Task | None, rng: np.random.Generator, kinds: tuple[str, ...]) -> Task:
    """A Task from an instruction string, a Task, or None/"random" (drawn from ``rng``)."""
    if isinstance(task, Task):
        return task
    if task is None or task.strip().lower() in ("", "random"):
        return sample_task(rng, kinds)
    parsed = parse_instruction(task)
    if parsed is None:
        raise ValueError(
            f"'{task}' is not in the task family; try e.g. 'pick up the red block', "
            "'put the green block in the bowl', 'put the blue block on the yellow block' or 'random'"
        )
    return parsed


class SimEnv:
    """A robot at a tabletop with coloured blocks and a bowl, stepped in physics time."""

    def __init__(
        self,
        robot: str = "franka",
        image_width: int = 224,
        image_height: int = 224,
        physics_rate_hz: float = 500.0,
        seed: int = 0,
        task: str | Task | None = None,
        task_kinds: tuple[str, ...] = DEFAULT_KINDS,
    ) -> None:
        if not (16 <= image_width <= 2048 and 16 <= image_height <= 2048):
            raise ValueError(f"image size must be within 16..2048 pixels, got {image_width}x{image_height}")
        self.scene = build_scene(robot, physics_rate_hz, max(image_width, image_height))
        self.model = self.scene.model
        self.data = mujoco.MjData(self.model)
        self.config = self.scene.config
        self.robot = robot
        self.image_width, self.image_height = image_width, image_height
        self.task_kinds = task_kinds
        self.joint_names = self.scene.actuated_joints
        self._qadr = np.array([self.model.joint(j).qposadr[0] for j in self.joint_names])
        self._dadr = np.array([self.model.joint(j).dofadr[0] for j in self.joint_names])
        self._act = np.array([self.model.actuator(j).id for j in self.joint_names])
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self.arm_index = np.array([self._index[j] for j in self.config.arm_joints])
        self.gripper_index = np.array([self._index[j] for j in self.config.gripper.joints])
        self.home = np.array([self.config.home.get(j, 0.0) for j in self.joint_names])
        self.servo = self._make_servo()
        self.kinematics = ArmKinematics(
            self.model, self.config.arm_joints, self.config.tcp_body, self.home[self.arm_index]
        )
        self._home_tool_x = float(self.kinematics.forward(self.home[self.arm_index])[0][0])
        self._gripper_geom_mask = np.zeros(self.model.ngeom, dtype=bool)
        self._gripper_geom_mask[list(self._geoms_below(self.config.gripper.joints))] = True
        self._object_bodies = {name: self.model.body(name).id for name in OBJECT_NAMES}
        self._renderer: CameraRenderer | None = None
        self.seed = seed
        self.task = self.reset(seed, task)

    def _make_servo(self) -> JointServo:
        lim = self.scene.limits
        velocity = np.array([min(lim[j].velocity, self.config.velocity_cap) for j in self.joint_names])
        # Fingers and held joints: light and quick, bounded only so that a step command stays finite.
        accel = np.full(len(self.joint_names), 4.0 * max(self.config.accel_limit))
        accel[self.arm_index] = self.config.accel_limit
        ranges = self.model.jnt_range[[self.model.joint(j).id for j in self.joint_names]]
        return JointServo(self.home, velocity, accel, ranges[:, 0], ranges[:, 1])

    def _geoms_below(self, joints: tuple[str, ...]) -> set[int]:
        """Geoms of the bodies moved by ``joints`` (the fingers), for grasp contact checks."""
        bodies = {self.model.jnt_bodyid[self.model.joint(j).id] for j in joints}
        grown = True
        while grown:
            children = {b for b in range(self.model.nbody) if self.model.body_parentid[b] in bodies} - bodies
            grown = bool(children)
            bodies |= children
        return {g for g in range(self.model.ngeom) if self.model.geom_bodyid[g] in bodies}

    # ----------------------------------------------------------------- episode
    def reset(self, seed: int, task: str | Task | None = None, random_start: bool = False) -> Task:
        """Start a new episode: objects laid out by ``seed``, the task chosen or drawn, the robot at home.

        ``random_start`` puts the arm at a tool pose drawn by the same seed instead of at home (after
        the layout is drawn, so a seed's layout and task stay the same): demonstrations from anywhere
        above the table, whose motion does not give away where the target lies.
        """
        rng = np.random.default_rng(seed)
        self.seed = int(seed)
        self.task = resolve_task(task, rng, self.task_kinds)
        mujoco.mj_resetData(self.model, self.data)
        ws = self.config.workspace
        layout = sample_layout(rng, ws)
        start = self._random_start(rng) if random_start else self.home
        self.data.qpos[self._qadr] = start
        for name, (x, y, yaw) in layout.items():
            z = ws.table_z + (0.0 if name == BOWL else ws.block_size / 2 + 1e-4)
            self.data.joint(f"{name}_joint").qpos = [x, y, z, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.servo.reset(start)
        self.data.ctrl[self._act] = start
        mujoco.mj_forward(self.model, self.data)
        self._physics(SETTLE_TIME)
        self.step_count = 0
        self.success = False
        return self.task

    def _random_start(self, rng: np.random.Generator) -> np.ndarray:
        """Joint positions (home fingers) of a tool pose drawn over the workspace, pointing down.

        Home when the robot has no top-down tool orientation or the IK does not reach the drawn pose.
        """
        if self.config.tcp_down_rpy is None:
            return self.home
        ws = self.config.workspace
        low = [min(ws.x_range[0], self._home_tool_x), ws.y_range[0], ws.table_z + START_HEIGHT[0]]
        high = [ws.x_range[1], ws.y_range[1], ws.table_z + START_HEIGHT[1]]
        position = rng.uniform(low, high)
        rotation = self.tool_down_rotation(rng.uniform(-START_YAW, START_YAW))
        result = self.kinematics.solve(position, rotation, self.home[self.arm_index], self.data.qpos)
        if not result.converged:
            return self.home
        start = self.home.copy()
        start[self.arm_index] = result.q
        return start

    def tool_down_rotation(self, yaw: float) -> np.ndarray:
        """The tool's rotation pointing down at ``yaw`` about the vertical (the top-down grasp)."""
        if self.config.tcp_down_rpy is None:
            raise ValueError(f"robot '{self.robot}' has no top-down tool orientation")
        return rpy_to_matrix(np.array([0.0, 0.0, yaw])) @ rpy_to_matrix(np.array(self.config.tcp_down_rpy))

    def set_task(self, task: str | Task) -> Task:
        """Judge a different task from now on without moving anything (a new instruction)."""
        self.task = resolve_task(task, np.random.default_rng(self.seed), self.task_kinds)
        self.success = False
        return self.task

    # ---------------------------------------------------------------- commands
    def _indices(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        unknown = [n for n in names if n not in self._index]
        if unknown:
            raise ValueError(
                f"unknown joints {unknown} for robot '{self.robot}', expected {list(self.joint_names)}"
            )
        return np.array([self._index[n] for n in names], dtype=int)

    def command_joints(self, names: list[str] | tuple[str, ...], positions: np.ndarray) -> None:
        """Set a joint position target; the servo moves there within velocity/acceleration limits."""
        self.servo.set_target(self._indices(names), np.asarray(positions, dtype=float))

    def command_trajectory(self, names: list[str] | tuple[str, ...], points: list[TrajectoryPoint]) -> None:
        """Follow timed joint waypoints (time_from_start relative to now)."""
        self.servo.set_trajectory(self._indices(names), points)

    def command_gripper(self, opening: float) -> None:
        """Opening fraction in [0, 1], 1 = fully open (clipped)."""
        self.servo.set_target(self.gripper_index, self.config.gripper.positions(opening))

    # -------------------------------------------------------------------- time
    def _physics(self, duration: float) -> None:
        dt = self.model.opt.timestep
        for _ in range(max(1, round(duration / dt))):
            self.data.ctrl[self._act] = self.servo.update(dt)
            mujoco.mj_step(self.model, self.data)

    def step(self, duration: float) -> TaskStatus:
        """Advance physics by ``duration`` seconds (whole physics steps) and judge the task."""
        self._physics(duration)
        self.step_count += 1
        return self.status()

    @property
    def sim_time(self) -> float:
        return float(self.data.time)

    # ------------------------------------------------------------ observations
    def joint_state(self) -> JointStateSample:
        """Positions, velocities and efforts of every robot joint."""
        return JointStateSample(
            self.joint_names,
            self.data.qpos[self._qadr].copy(),
            self.data.qvel[self._dadr].copy(),
            self.data.actuator_force[self._act].copy(),
        )

    def arm_positions(self) -> np.ndarray:
        return self.data.qpos[self._qadr[self.arm_index]].copy()

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Tool-centre-point position and rotation matrix in the robot base frame."""
        body = self.data.body(self.config.tcp_body)
        return body.xpos.copy(), body.xmat.reshape(3, 3).copy()

    def gripper_opening(self) -> float:
        """Measured opening fraction of the gripper in [0, 1]."""
        grip = self.config.gripper
        q = self.data.qpos[self._qadr[self.gripper_index]]
        span = np.asarray(grip.open) - np.asarray(grip.closed)
        return float(np.clip(np.mean((q - np.asarray(grip.closed)) / span), 0.0, 1.0))

    def object_position(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def object_yaw(self, name: str) -> float:
        rot = self.data.body(name).xmat.reshape(3, 3)
        return float(np.arctan2(rot[1, 0], rot[0, 0]))

    def _touching_gripper(self) -> np.ndarray:
        """Ids of the bodies touching the gripper (vectorised over the contact list: it runs at 100 Hz)."""
        pairs = self.data.contact.geom[: self.data.ncon]
        finger = self._gripper_geom_mask[pairs]
        other = np.concatenate([pairs[finger[:, 0], 1], pairs[finger[:, 1], 0]])
        return self.model.geom_bodyid[other]

    def status(self) -> TaskStatus:
        """Judge the task now and report the episode status (success latches)."""
        touching = self._touching_gripper()
        objects = {
            name: ObjectState(self.data.xpos[body].copy(), bool(np.any(touching == body)))
            for name, body in self._object_bodies.items()
        }
        now = bool(judge(self.task, objects, self.config.workspace))
        self.success = self.success or now
        return TaskStatus(
            self.robot, self.seed, self.task.instruction, self.success, now, self.step_count, self.sim_time
        )

    # ----------------------------------------------------------------- cameras
    @property
    def camera_names(self) -> tuple[str, ...]:
        return self.scene.camera_names

    def _render(self) -> CameraRenderer:
        if self._renderer is None:  # the GL context is made on first use: physics-only users never pay for it
            self._renderer = CameraRenderer(self.model, self.image_width, self.image_height)
        return self._renderer

    def render_rgb(self, camera: str) -> np.ndarray:
        return self._render().rgb(self.data, camera)

    def render_depth(self, camera: str) -> np.ndarray:
        return self._render().depth(self.data, camera)

    def render_geom_ids(self, camera: str) -> np.ndarray:
        """(H, W) id of the geom seen at each pixel (-1: background), the simulator's segmentation."""
        return self._render().geom_ids(self.data, camera)

    def intrinsics(self, camera: str) -> CameraIntrinsics:
        return camera_intrinsics(self.model, camera, self.image_width, self.image_height)

    def grounding_labels(self, camera: str, names: tuple[str, ...] = OBJECT_NAMES) -> list[ObjectLabel]:
        """Ground-truth boxes and points of ``names`` in ``camera``'s image (points: object centres)."""
        points = {}
        for name in names:
            centre = self.object_position(name)
            if name == BOWL:
                centre = centre + np.array([0.0, 0.0, BOWL_HEIGHT / 2])
            points[name] = (object_label(name), centre)
        return object_labels(self.model, self.data, self.render_geom_ids(camera), camera, points)

    def close(self) -> None:
        """Release the renderer's GL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SimEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
