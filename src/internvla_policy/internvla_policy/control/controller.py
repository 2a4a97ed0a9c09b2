"""The control core: inputs in, one safe command (or a reason to hold) per control tick out.

`PolicyController` owns the latest inputs, the chunk schedule and the safety gate; it is fed by
the node's callbacks (any thread), by the inference worker (`next_request` / `on_chunk`), and is
stepped by the node's control timer (`tick`). It never talks to ROS, so the whole decision path,
from a chunk to a clamped joint command, is testable with plain numbers.

Per tick, in order: chunks that arrived since the last tick are pinned to the tick counter; the
first reason not to move wins (model not ready, e-stop, disabled, deadman, no or refused
instruction, stale or invalid inputs, no action due); otherwise the action for this tick becomes
an end-effector target from the measured pose, clamped, solved by IK, clamped again in joint
space, and returned.

Inputs are judged on arrival: a message stamped in the future or already too old, a joint state
outside the URDF limits, an instruction or spatial prompt over its bounds is refused and counted
(`dropped_inputs`), and never becomes "the newest" input that freshness is measured from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from internvla_policy.control.action import ActionConvention
from internvla_policy.control.config import ConfigError, PolicyParams
from internvla_policy.control.ensembler import ChunkSchedule, ScheduledChunk
from internvla_policy.control.inference import ChunkResult, InferenceRequest
from internvla_policy.control.instruction import instruction_problem
from internvla_policy.control.kinematics import Kinematics, KinematicsError, make_kinematics
from internvla_policy.control.observation import (
    CameraFrame,
    InvalidInputError,
    JointSample,
    JointStateMatcher,
    staleness,
    stamp_problem,
)
from internvla_policy.control.pose import Pose
from internvla_policy.control.safety import (
    SafetyGate,
    SafetyLimits,
    joint_limit_problem,
    limit_joint_step,
    limit_pose_step,
    workspace_problem,
)
from internvla_policy.control.spatial_prompt import SpatialPrompt, needs_prompt
from internvla_policy.control.state import PolicyState

WAITING_FOR_CHUNK = "waiting for the next action chunk"
"""The hold between chunks when inference is slower than a chunk lasts: routine, not a fault."""


@dataclass(frozen=True)
class ControllerSettings:
    """Timing and input policy. Ages in seconds; an age <= 0 means that input never expires."""

    control_period_s: float
    camera_names: tuple[str, ...]
    camera_max_age_s: float
    joint_state_max_age_s: float
    instruction_max_age_s: float
    spatial_prompt_max_age_s: float
    spatial_prompt_mode: str
    future_stamp_tolerance_s: float
    max_instruction_length: int


@dataclass(frozen=True)
class Command:
    """What one tick commands: joint positions, the end-effector target they aim at, the gripper."""

    stamp: float
    joint_positions: np.ndarray
    ee_target: Pose
    gripper_opening: float
    action: np.ndarray
    clamps: tuple[str, ...]


@dataclass(frozen=True)
class ReceivedChunk:
    """A chunk picked up at a tick: the worker's result and how it was pinned to the ticks."""

    result: ChunkResult
    scheduled: ScheduledChunk


@dataclass(frozen=True)
class TickResult:
    state: PolicyState
    detail: str
    command: Command | None = None
    new_chunks: tuple[ReceivedChunk, ...] = ()


@dataclass
class ControllerStats:
    chunk_count: int = 0
    commands: int = 0
    dropped_inputs: int = 0
    inference_errors: int = 0
    last_inference_latency_s: float = 0.0


class PolicyController:
    def __init__(
        self,
        settings: ControllerSettings,
        kinematics: Kinematics,
        convention: ActionConvention,
        limits: SafetyLimits,
        gate: SafetyGate,
        schedule: ChunkSchedule,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.stats = ControllerStats()
        self._kinematics = kinematics
        self._convention = convention
        self._limits = limits
        self._schedule = schedule
        self._clock = clock
        self._matcher = JointStateMatcher(kinematics.joint_names)
        self._lock = threading.Lock()
        self._frames: list[CameraFrame | None] = [None] * len(settings.camera_names)
        self._joints: JointSample | None = None
        self._joint_error: str | None = None
        self._instruction: tuple[str, float] | None = None
        self._instruction_refused: str | None = None
        self._prompt: tuple[SpatialPrompt, float] | None = None
        self._prompt_refused: str | None = None
        self._generation = 0
        self._pending: list[ChunkResult] = []
        self._last_request_stamps: tuple[float, ...] | None = None
        self._tick = 0
        self._model_block: tuple[PolicyState, str] | None = (PolicyState.STARTING, "loading the model")

    @classmethod
    def from_params(cls, p: PolicyParams, clock: Callable[[], float]) -> PolicyController:
        """Everything the node's parameters describe; ConfigError when the robot model does not fit them."""
        try:
            kinematics = make_kinematics(
                p.kinematics_backend,
                p.urdf_path,
                p.joint_names,
                p.base_frame,
                p.ee_frame,
                moveit_group=p.moveit_group,
                ik_max_iterations=p.ik_max_iterations,
                ik_damping=p.ik_damping,
            )
        except KinematicsError as exc:
            raise ConfigError(f"robot model (urdf_path, joint_names, base_frame, ee_frame): {exc}") from exc
        limits = SafetyLimits(
            workspace_min=np.array(p.workspace_min),
            workspace_max=np.array(p.workspace_max),
            max_translation_per_tick=p.max_translation_per_tick_m,
            max_rotation_per_tick=p.max_rotation_per_tick_rad,
            joints=kinematics.limits,
            joint_position_margin=p.joint_position_margin_rad,
            joint_velocity_scale=p.joint_velocity_scale,
            joint_limit_tolerance=p.joint_limit_tolerance_rad,
            workspace_tolerance=p.workspace_tolerance_m,
        )
        convention = ActionConvention(
            frame=p.action_frame,
            rotation_format=p.action_rotation_format,
            axis_signs=p.action_axis_signs,
            translation_scale=p.action_translation_scale,
            rotation_scale=p.action_rotation_scale,
            gripper_inverted=p.gripper_inverted,
            gripper_binary=p.gripper_binary,
        )
        settings = ControllerSettings(
            control_period_s=p.control_period_s,
            camera_names=p.camera_topics,
            camera_max_age_s=p.camera_max_age_s,
            joint_state_max_age_s=p.joint_state_max_age_s,
            instruction_max_age_s=p.instruction_max_age_s,
            spatial_prompt_max_age_s=p.spatial_prompt_max_age_s,
            spatial_prompt_mode=p.spatial_prompt_mode,
            future_stamp_tolerance_s=p.future_stamp_tolerance_s,
            max_instruction_length=p.max_instruction_length,
        )
        return cls(
            settings,
            kinematics,
            convention,
            limits,
            SafetyGate(p.start_enabled, p.heartbeat_timeout_s),
            ChunkSchedule(p.ensemble_mode, p.ensemble_k, p.ensemble_alpha, p.control_period_s),
            clock,
        )

    @property
    def instruction(self) -> str:
        with self._lock:
            return "" if self._instruction is None else self._instruction[0]

    # Model life cycle -------------------------------------------------------------------------

    def set_model_ready(self) -> None:
        with self._lock:
            self._model_block = None

    def set_model_error(self, detail: str) -> None:
        with self._lock:
            self._model_block = (PolicyState.ERROR, detail)

    # Inputs (any thread) ----------------------------------------------------------------------

    def on_camera(self, index: int, frame: CameraFrame, now: float) -> str | None:
        """Store a decoded frame; returns why it was refused (a bad stamp), None when usable.

        Frames older than the stored one are ignored (reordering), not counted as faults.
        """
        s = self.settings
        problem = stamp_problem(frame.stamp, now, s.camera_max_age_s, s.future_stamp_tolerance_s)
        if problem is not None:
            self.drop_input()
            return f"camera '{s.camera_names[index]}' frame {problem}"
        with self._lock:
            current = self._frames[index]
            if current is None or frame.stamp >= current.stamp:
                self._frames[index] = frame
        return None

    def on_joint_state(
        self, names: Sequence[str], positions: Sequence[float], stamp: float, now: float
    ) -> str | None:
        """Store a joint state; returns why it was rejected (and then holds until a valid one).

        A state with a bad stamp is dropped but leaves the stored one in place (its age keeps
        growing); an unusable state (missing or non-finite joints, outside the URDF limits) is a
        fault that holds until a valid state replaces it.
        """
        s = self.settings
        problem = stamp_problem(stamp, now, s.joint_state_max_age_s, s.future_stamp_tolerance_s)
        if problem is not None:
            self.drop_input()
            return f"joint state {problem}"
        try:
            q = self._matcher.match(names, positions)
            fault = joint_limit_problem(self._kinematics.joint_names, q, self._limits)
            if fault is not None:
                raise InvalidInputError(fault)
        except InvalidInputError as exc:
            with self._lock:
                self._joint_error = str(exc)
                self.stats.dropped_inputs += 1
            return str(exc)
        with self._lock:
            self._joints = JointSample(q, stamp)
            self._joint_error = None
        return None

    def on_instruction(self, text: str, now: float) -> bool:
        """Store the instruction; True when it changed the task (a repeat only refreshes its age).

        A new instruction invalidates every chunk computed for the previous one; empty means stop.
        Raises InvalidInputError for a text outside the instruction rule (control/instruction.py):
        the task stops and the robot holds until a valid instruction arrives.
        """
        problem = instruction_problem(text, self.settings.max_instruction_length)
        text = text.strip()
        with self._lock:
            if problem is not None:
                self.stats.dropped_inputs += 1
                self._invalidate_chunks()
                self._instruction, self._instruction_refused = None, problem
                raise InvalidInputError(problem)
            changed = (self._instruction[0] if self._instruction else "") != text
            if changed or self._instruction_refused is not None:
                self._invalidate_chunks()
            self._instruction = (text, now) if text else None
            self._instruction_refused = None
            return changed

    def on_spatial_prompt(self, prompt: SpatialPrompt, now: float) -> None:
        with self._lock:
            self._prompt = (prompt, now)
            self._prompt_refused = None

    def refuse_spatial_prompt(self, problem: str) -> None:
        """A prompt the node could not use replaces the current one: modes that need one hold."""
        with self._lock:
            self.stats.dropped_inputs += 1
            self._prompt, self._prompt_refused = None, problem

    def drop_input(self) -> None:
        """Count an input the node could not use (malformed message)."""
        with self._lock:
            self.stats.dropped_inputs += 1

    # Inference worker side --------------------------------------------------------------------

    def next_request(self) -> InferenceRequest | None:
        """A request when commands are wanted and a camera has a frame not yet inferred on."""
        now = self._clock()
        with self._lock:
            if self._blocking_state(now) is not None or self._input_problem(now) is not None:
                return None
            frames = tuple(f for f in self._frames if f is not None)
            stamps = tuple(f.stamp for f in frames)
            if stamps == self._last_request_stamps:
                return None
            self._last_request_stamps = stamps
            prompt = self._current_prompt(now)
            return InferenceRequest(frames, self._instruction[0], prompt, self._generation)

    def on_chunk(self, result: ChunkResult) -> None:
        with self._lock:
            self.stats.last_inference_latency_s = result.latency_s
            if result.request.generation == self._generation:
                self._pending.append(result)

    def on_inference_error(self) -> None:
        with self._lock:
            self.stats.inference_errors += 1

    # Control tick (timer thread) --------------------------------------------------------------

    def tick(self, now: float) -> TickResult:
        with self._lock:
            self._tick += 1
            received = tuple(self._pin_pending(now))
            block = self._blocking_state(now) or self._input_problem(now)
            if block is not None:
                if block[0] in (PolicyState.DISABLED, PolicyState.ESTOPPED, PolicyState.WAITING):
                    self._invalidate_chunks()
                return TickResult(block[0], block[1], None, received)
            action = self._schedule.action_at(self._tick)
            q = self._joints.positions
        if action is None:
            return TickResult(PolicyState.HOLDING, WAITING_FOR_CHUNK, None, received)
        state, detail, command = self._command(now, action, q)
        if command is not None:
            with self._lock:
                self.stats.commands += 1
        return TickResult(state, detail, command, received)

    def _command(
        self, now: float, action: np.ndarray, q: np.ndarray
    ) -> tuple[PolicyState, str, Command | None]:
        current = self._kinematics.fk(q)
        fault = workspace_problem(current.position, self._limits)
        if fault is not None:
            return PolicyState.HOLDING, fault, None
        target, clamps = limit_pose_step(current, self._convention.target_pose(current, action), self._limits)
        solution = self._kinematics.ik(target, q)  # fails on a non-finite target too
        if not solution.success:
            return PolicyState.HOLDING, f"IK failed: {solution.message}", None
        q_cmd, joint_clamps = limit_joint_step(q, solution.q, self.settings.control_period_s, self._limits)
        if not np.all(np.isfinite(q_cmd)):  # the last check before anything reaches the robot
            return PolicyState.HOLDING, "non-finite joint command", None
        all_clamps = tuple(clamps + joint_clamps)
        command = Command(now, q_cmd, target, self._convention.gripper_opening(action), action, all_clamps)
        detail = f"clamped: {', '.join(all_clamps)}" if all_clamps else ""
        return PolicyState.RUNNING, detail, command

    # Internals (called with the lock held) ----------------------------------------------------

    def _invalidate_chunks(self) -> None:
        self._generation += 1
        self._pending.clear()
        self._schedule.clear()
        self._last_request_stamps = None

    def _pin_pending(self, now: float):
        """Pin the chunks that arrived since the last tick; a chunk with NaN/inf never enters the schedule."""
        for result in self._pending:
            if not np.all(np.isfinite(result.prediction.actions)):
                self.stats.inference_errors += 1
                continue
            scheduled = self._schedule.add(result.prediction.actions, result.request.stamp, now, self._tick)
            self.stats.chunk_count += 1
            yield ReceivedChunk(result, scheduled)
        self._pending.clear()

    def _blocking_state(self, now: float) -> tuple[PolicyState, str] | None:
        """Reasons not to command that do not depend on sensor freshness."""
        if self._model_block is not None:
            return self._model_block
        gate = self.gate.check(now)
        if gate is not None:
            return gate
        if self._instruction is None:
            refused = self._instruction_refused
            return (
                PolicyState.WAITING,
                "no instruction" if refused is None else f"instruction refused: {refused}",
            )
        if staleness("instruction", self._instruction[1], now, self.settings.instruction_max_age_s):
            return PolicyState.WAITING, "instruction expired"
        return None

    def _input_problem(self, now: float) -> tuple[PolicyState, str] | None:
        s = self.settings
        problems = [self._joint_error] if self._joint_error else []
        joint_stamp = None if self._joints is None else self._joints.stamp
        problems.append(staleness("joint state", joint_stamp, now, s.joint_state_max_age_s))
        for name, frame in zip(s.camera_names, self._frames, strict=True):
            stamp = None if frame is None else frame.stamp
            problems.append(staleness(f"camera '{name}'", stamp, now, s.camera_max_age_s))
        if needs_prompt(s.spatial_prompt_mode) and self._current_prompt(now) is None:
            refused = self._prompt_refused
            problems.append(
                "no fresh spatial prompt for this instruction"
                if refused is None
                else f"spatial prompt refused: {refused}"
            )
        problems = [p for p in problems if p]
        return (PolicyState.HOLDING, "; ".join(problems)) if problems else None

    def _current_prompt(self, now: float) -> SpatialPrompt | None:
        if self._prompt is None or self._instruction is None:
            return None
        prompt, received = self._prompt
        if prompt.instruction.strip() != self._instruction[0]:
            return None
        if staleness("spatial prompt", received, now, self.settings.spatial_prompt_max_age_s):
            return None
        return prompt
