"""The control core end to end without ROS: inputs, requests, chunks, ticks, commands, holds."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from internvla_policy.control.controller import WAITING_FOR_CHUNK, PolicyController
from internvla_policy.control.inference import ChunkPrediction, ChunkResult
from internvla_policy.control.kinematics import PinocchioKinematics
from internvla_policy.control.observation import CameraFrame, InvalidInputError
from internvla_policy.control.pose import rotation_angle
from internvla_policy.control.spatial_prompt import SpatialPrompt
from internvla_policy.control.state import PolicyState
from internvla_policy.vision.geometry import GroundingResult

sys.path.insert(0, str(Path(__file__).parent))
from policy_panda import BASE, EE, HOME, JOINTS, VELOCITY, panda_urdf, profile

PERIOD = 0.1
IMAGE = np.zeros((48, 64, 3), np.uint8)


class Rig:
    """A controller on the Franka with a hand-driven clock and hand-made chunks."""

    def __init__(self, **overrides) -> None:
        self.now = 100.0
        self.kinematics = PinocchioKinematics(panda_urdf(), JOINTS, BASE, EE)
        self.controller = PolicyController.from_params(profile(**overrides), lambda: self.now)

    @classmethod
    def ready(cls, **overrides) -> Rig:
        """A rig whose model is loaded and whose instruction is set: commands wait only on inputs."""
        rig = cls(**overrides)
        rig.controller.set_model_ready()
        rig.controller.on_instruction("pick up the red block.", rig.now)
        return rig

    def feed(self, q: np.ndarray = HOME) -> None:
        """Fresh camera frame and joint state stamped now."""
        self.controller.on_camera(0, CameraFrame(self.now, "scene", IMAGE), self.now)
        self.controller.on_joint_state(list(JOINTS), list(q), self.now, self.now)

    def infer(self, actions: np.ndarray) -> ChunkResult | None:
        """What the worker does: take the request, 'predict' `actions`, deliver."""
        request = self.controller.next_request()
        if request is None:
            return None
        result = ChunkResult(request, ChunkPrediction(actions, actions), 0.05)
        self.controller.on_chunk(result)
        return result

    def tick(self):
        self.now += PERIOD
        return self.controller.tick(self.now)


def chunk(dx: float = 0.01, gripper: float = 1.0) -> np.ndarray:
    actions = np.zeros((16, 7))
    actions[:, 0] = dx
    actions[:, 6] = gripper
    return actions


@pytest.fixture
def rig() -> Rig:
    return Rig.ready()


def test_state_progression_to_a_command_within_limits():
    rig = Rig()
    assert rig.tick().state is PolicyState.STARTING
    rig.controller.set_model_ready()
    assert (rig.tick().state, rig.tick().detail) == (PolicyState.WAITING, "no instruction")
    assert rig.controller.on_instruction("  pick up the red block. ", rig.now)
    assert not rig.controller.on_instruction("pick up the red block.", rig.now)  # a repeat
    result = rig.tick()
    assert result.state is PolicyState.HOLDING and "no joint state yet" in result.detail
    rig.feed()
    assert rig.tick().detail == WAITING_FOR_CHUNK
    rig.feed()
    assert rig.infer(chunk(dx=0.05)).request.instruction == "pick up the red block."
    result = rig.tick()
    assert result.state is PolicyState.RUNNING and len(result.new_chunks) == 1
    command = result.command
    start = rig.kinematics.fk(HOME)
    # dx = 5 cm is clamped to the 2 cm step; the IK solution reaches the clamped target.
    np.testing.assert_allclose(command.ee_target.position - start.position, [0.02, 0.0, 0.0], atol=1e-9)
    assert "translation_step" in command.clamps
    reached = rig.kinematics.fk(command.joint_positions)
    assert np.linalg.norm(reached.position - command.ee_target.position) < 1e-3
    assert rotation_angle(reached.rotation, command.ee_target.rotation) < 0.01
    assert np.all(np.abs(command.joint_positions - HOME) <= VELOCITY * 0.5 * PERIOD + 1e-12)
    assert command.gripper_opening == 1.0
    assert rig.controller.stats.commands == 1 and rig.controller.stats.chunk_count == 1


def test_requests_only_for_new_frames_and_only_when_commands_are_wanted(rig):
    assert rig.controller.next_request() is None  # no camera yet
    rig.feed()
    assert rig.controller.next_request() is not None
    assert rig.controller.next_request() is None  # same frame: nothing new to see
    rig.controller.gate.set_enabled(False)
    rig.now += 0.05
    rig.feed()
    assert rig.controller.next_request() is None


def test_a_new_instruction_discards_chunks_of_the_old_one(rig):
    rig.feed()
    request = rig.controller.next_request()
    rig.controller.on_instruction("open the drawer.", rig.now)
    rig.controller.on_chunk(ChunkResult(request, ChunkPrediction(chunk(), chunk()), 0.05))
    result = rig.tick()
    assert result.new_chunks == () and result.command is None


def test_stale_camera_holds_and_recovers(rig):
    rig.feed()
    rig.infer(chunk())
    assert rig.tick().state is PolicyState.RUNNING
    for _ in range(5):  # joints keep coming, the camera does not
        rig.controller.on_joint_state(list(JOINTS), list(HOME), rig.now, rig.now)
        result = rig.tick()
    assert result.state is PolicyState.HOLDING and result.command is None
    assert "camera 'scene' stale" in result.detail
    rig.feed()
    assert rig.tick().state is PolicyState.RUNNING


def test_non_finite_joint_state_holds_until_a_valid_one(rig):
    rig.feed()
    rig.infer(chunk())
    assert rig.tick().command is not None
    bad = HOME.copy()
    bad[3] = np.nan
    assert "non-finite" in rig.controller.on_joint_state(list(JOINTS), list(bad), rig.now, rig.now)
    result = rig.tick()
    assert result.command is None and "non-finite positions" in result.detail
    assert rig.controller.stats.dropped_inputs == 1
    rig.feed()
    assert rig.tick().command is not None


def test_disable_and_estop_stop_commands_and_drop_old_chunks(rig):
    rig.feed()
    rig.infer(chunk())
    assert rig.tick().command is not None
    rig.controller.gate.set_enabled(False)
    rig.feed()
    assert rig.tick().state is PolicyState.DISABLED
    rig.controller.gate.set_enabled(True)
    rig.feed()
    result = rig.tick()
    assert result.command is None and result.detail == WAITING_FOR_CHUNK
    rig.infer(chunk())
    assert rig.tick().command is not None
    rig.controller.gate.on_estop(True)
    rig.feed()
    assert (rig.tick().state, rig.tick().command) == (PolicyState.ESTOPPED, None)


def test_non_finite_chunk_is_rejected(rig):
    rig.feed()
    actions = chunk()
    actions[3, 2] = np.inf
    rig.infer(actions)
    result = rig.tick()
    assert result.command is None and result.new_chunks == ()
    assert result.detail == WAITING_FOR_CHUNK
    assert rig.controller.stats.inference_errors == 1


def test_an_exhausted_chunk_holds(rig):
    rig.feed()
    rig.infer(chunk())
    results = []
    for _ in range(16):
        rig.controller.on_joint_state(list(JOINTS), list(HOME), rig.now, rig.now)
        rig.controller.on_camera(0, CameraFrame(rig.now, "scene", IMAGE), rig.now)
        results.append(rig.tick())
    # Step 0 was due at the frame's instant, one period before the first tick: skipped.
    assert results[0].new_chunks[0].scheduled.skipped_steps == 1
    assert [r.state for r in results[:15]] == [PolicyState.RUNNING] * 15
    assert results[15].state is PolicyState.HOLDING and results[15].command is None


def test_text_mode_waits_for_a_prompt_of_the_current_instruction():
    rig = Rig.ready(spatial_prompt_mode="text")
    rig.feed()
    assert "no fresh spatial prompt" in rig.tick().detail
    other = SpatialPrompt("open the drawer.", "scene", GroundingResult(64, 48))
    rig.controller.on_spatial_prompt(other, rig.now)
    assert rig.controller.next_request() is None
    mine = SpatialPrompt("pick up the red block.", "scene", GroundingResult(64, 48))
    rig.controller.on_spatial_prompt(mine, rig.now)
    rig.feed()
    assert rig.controller.next_request().prompt is mine


# Hostile inputs (issue: the running graph made unsafe or stuck) -------------------------------


def test_a_frame_stamped_in_the_future_is_refused_and_never_becomes_the_newest(rig):
    rig.feed()
    problem = rig.controller.on_camera(0, CameraFrame(rig.now + 3600.0, "scene", IMAGE), rig.now)
    assert "in the future" in problem and rig.controller.stats.dropped_inputs == 1
    rig.infer(chunk())
    assert rig.tick().state is PolicyState.RUNNING
    rig.feed()  # real frames after it are still taken: requests follow them
    assert rig.controller.next_request() is not None
    for _ in range(6):  # then the camera stops: it goes stale as if the future frame never came
        rig.controller.on_joint_state(list(JOINTS), list(HOME), rig.now, rig.now)
        result = rig.tick()
    assert result.command is None and "camera 'scene' stale" in result.detail


def test_a_frame_within_the_tolerance_is_taken_and_a_frame_too_old_is_not(rig):
    assert rig.controller.on_camera(0, CameraFrame(rig.now + 0.05, "scene", IMAGE), rig.now) is None
    problem = rig.controller.on_camera(0, CameraFrame(rig.now - 10.0, "scene", IMAGE), rig.now)
    assert "old on arrival" in problem


def test_a_joint_state_stamped_in_the_future_does_not_switch_off_the_age_check(rig):
    rig.feed()
    rig.infer(chunk())
    assert rig.tick().command is not None
    problem = rig.controller.on_joint_state(list(JOINTS), list(HOME), rig.now + 3600.0, rig.now)
    assert "in the future" in problem
    for _ in range(3):  # cameras keep coming, real joint states have stopped
        rig.controller.on_camera(0, CameraFrame(rig.now, "scene", IMAGE), rig.now)
        result = rig.tick()
    assert result.command is None and "joint state stale" in result.detail


def test_a_joint_outside_its_urdf_limits_is_a_fault_that_holds(rig):
    rig.feed()
    rig.infer(chunk())
    assert rig.tick().command is not None
    beyond = HOME.copy()
    beyond[3] = -3.0718 - 0.3  # 0.3 rad below panda_joint4's lower limit
    problem = rig.controller.on_joint_state(list(JOINTS), list(beyond), rig.now, rig.now)
    assert "panda_joint4" in problem and "outside its URDF limits" in problem
    result = rig.tick()
    assert result.state is PolicyState.HOLDING and result.command is None
    assert "panda_joint4" in result.detail
    huge = HOME.copy()
    huge[0] = 1e9
    assert "panda_joint1" in rig.controller.on_joint_state(list(JOINTS), list(huge), rig.now, rig.now)
    rig.feed()
    assert rig.tick().command is not None


def test_a_joint_slightly_outside_its_limit_moves_inward_within_one_velocity_step(rig):
    near = HOME.copy()
    near[6] = 2.8973 + 0.03  # the wrist joint, within the 0.05 rad tolerance: not a fault
    rig.feed(near)
    rig.infer(chunk(dx=0.0))
    command = rig.tick().command
    assert command is not None
    max_step = VELOCITY * 0.5 * PERIOD
    assert np.all(np.abs(command.joint_positions - near) <= max_step + 1e-12)
    assert command.joint_positions[6] < near[6]  # drawn inward, never outward


def test_an_end_effector_outside_the_workspace_is_a_fault_that_holds():
    # The Franka's home tool is at x ~ 0.31 m: a box starting at x = 0.4 m leaves it 9 cm outside.
    rig = Rig.ready(workspace_min=[0.4, -0.5, 0.05])
    rig.feed()
    rig.infer(chunk())
    result = rig.tick()
    assert result.command is None and "outside the workspace box" in result.detail


def test_instructions_over_the_limit_or_with_control_characters_stop_the_task(rig):
    rig.feed()
    rig.infer(chunk())
    assert rig.tick().command is not None
    for text in ("x" * 1001, "pick up " * 633, "pick up the red\x1b[2J block", "pick\x00up"):
        with pytest.raises(InvalidInputError):
            rig.controller.on_instruction(text, rig.now)
        rig.feed()
        result = rig.tick()
        assert result.state is PolicyState.WAITING and result.command is None
        assert result.detail.startswith("instruction refused: ")
        assert rig.controller.next_request() is None
    assert rig.controller.stats.dropped_inputs == 4
    assert rig.controller.on_instruction("pick up the red block.", rig.now)  # a valid one resumes
    rig.feed()
    rig.infer(chunk())
    assert rig.tick().command is not None


def test_a_refused_spatial_prompt_holds_until_a_valid_one():
    rig = Rig.ready(spatial_prompt_mode="text")
    prompt = SpatialPrompt("pick up the red block.", "scene", GroundingResult(64, 48))
    rig.controller.on_spatial_prompt(prompt, rig.now)
    rig.feed()
    rig.infer(chunk())
    assert rig.tick().command is not None
    rig.controller.refuse_spatial_prompt("spatial prompt has 1000 boxes, more than 32")
    rig.feed()
    result = rig.tick()
    assert result.command is None and "spatial prompt refused: spatial prompt has 1000 boxes" in result.detail
    rig.controller.on_spatial_prompt(prompt, rig.now)
    rig.feed()
    rig.infer(chunk())
    assert rig.tick().command is not None
