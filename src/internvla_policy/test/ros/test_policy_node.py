"""The policy node over real DDS with the tiny model: commands within limits, and every way they stop.

One node process serves the whole module (loading and warming the model once); each test first
brings it back to RUNNING, then changes one thing. The probe (this process) plays camera, robot
and operator: a raw and a compressed camera at 10 Hz, joint states at 50 Hz at the Franka's home
pose, the instruction, the e-stop, and the node's services.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from internvla_msgs.msg import PolicyStatus
from internvla_policy.control.kinematics import PinocchioKinematics
from internvla_policy.control.pose import Pose, rotation_angle
from internvla_policy.model.tiny import write_tiny_run

sys.path.insert(0, str(Path(__file__).parent))
from policy_probe import (
    CAMERA_MAX_AGE,
    MARGIN,
    MAX_STEP_M,
    MAX_STEP_RAD,
    PERIOD,
    VELOCITY_SCALE,
    WORKSPACE_MAX,
    WORKSPACE_MIN,
    node_parameters,
    node_process,
    probe_session,
    seconds,
    start_node,
    wait_for,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "control"))
from policy_panda import BASE, EE, HOME, JOINTS, LOWER, UPPER, VELOCITY, panda_urdf


@pytest.fixture(scope="module")
def probe():
    with probe_session() as probe:
        yield probe


@pytest.fixture(scope="module")
def policy_node(probe, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("policy_node")
    run = write_tiny_run(tmp_path / "tiny", seed=0)
    with node_process(tmp_path, node_parameters(str(run))) as process:
        yield process


def assert_within_limits(trajectories: list, poses: list) -> None:
    start = PinocchioKinematics(panda_urdf(), JOINTS, BASE, EE).fk(HOME)
    max_joint_step = VELOCITY * VELOCITY_SCALE * PERIOD + 1e-9
    for trajectory in trajectories:
        assert tuple(trajectory.joint_names) == JOINTS
        (point,) = trajectory.points
        q = np.array(point.positions)
        assert np.all(q >= LOWER + MARGIN - 1e-9) and np.all(q <= UPPER - MARGIN + 1e-9)
        assert np.all(np.abs(q - HOME) <= max_joint_step)
        assert seconds(point.time_from_start) == pytest.approx(PERIOD)
    for msg in poses:
        assert msg.header.frame_id == BASE
        p, o = msg.pose.position, msg.pose.orientation
        target = Pose.from_quaternion(np.array([p.x, p.y, p.z]), (o.x, o.y, o.z, o.w))
        assert np.all(target.position >= WORKSPACE_MIN) and np.all(target.position <= WORKSPACE_MAX)
        assert np.linalg.norm(target.position - start.position) <= MAX_STEP_M + 1e-6
        assert rotation_angle(start.rotation, target.rotation) <= MAX_STEP_RAD + 1e-6


def test_starts_disabled_then_commands_within_limits(probe, policy_node):
    wait_for(
        lambda: (s := probe.latest_status()) is not None and s.state == PolicyStatus.STATE_DISABLED,
        what="the warmed-up node to report DISABLED",
    )
    probe.instruct("pick up the red block and place it in the bowl.")
    time.sleep(1.0)
    assert probe.messages("trajectory") == []
    status = probe.latest_status()
    assert status.warmup_duration.sec + status.warmup_duration.nanosec > 0 and not status.enabled

    enabled_at = time.time()
    assert probe.enable(True).success
    trajectories = probe.wait_for_commands(20, enabled_at)
    assert_within_limits(trajectories, probe.messages("pose", enabled_at))
    # One command per control tick, each stamped with its tick time.
    assert np.all(np.diff([seconds(t.header.stamp) for t in trajectories]) > 0)
    grippers = [m.data for m in probe.messages("gripper", enabled_at)]
    assert grippers and all(g in (0.0, 1.0) for g in grippers)
    chunk = probe.messages("chunk", enabled_at)[0]
    assert (chunk.horizon, chunk.dimension, len(chunk.data)) == (16, 7, 112) and not chunk.normalized
    assert chunk.header.frame_id == BASE and chunk.action_space == "delta_eef_rpy_gripper"
    wait_for(lambda: probe.latest_status().commands_published >= 20, 10.0, "the status to count the commands")
    status = probe.latest_status()
    assert status.chunk_count >= 1
    assert status.instruction == "pick up the red block and place it in the bowl."
    assert status.last_inference_latency.sec + status.last_inference_latency.nanosec > 0


def test_stale_camera_stops_commands_within_two_periods(probe, policy_node):
    probe.ensure_running()
    probe.camera_on = False
    time.sleep(0.15)  # let the last publication go out
    last_frame = probe.last_frame_stamp
    time.sleep(CAMERA_MAX_AGE + 1.5)
    late = [
        t for t in probe.messages("trajectory")
        if seconds(t.header.stamp) > last_frame + CAMERA_MAX_AGE + 2 * PERIOD
    ]  # fmt: skip
    assert late == []
    status = probe.latest_status()
    assert status.state == PolicyStatus.STATE_HOLDING and "stale" in status.detail
    probe.ensure_running()


def test_nan_joint_states_give_no_command(probe, policy_node):
    probe.ensure_running()
    dropped_before = probe.latest_status().dropped_inputs
    nan_from = time.time()
    probe.joint_positions = HOME.copy()
    probe.joint_positions[2] = float("nan")
    time.sleep(1.5)
    late = [t for t in probe.messages("trajectory") if seconds(t.header.stamp) > nan_from + 2 * PERIOD]
    assert late == []
    wait_for(lambda: probe.latest_status().dropped_inputs > dropped_before, 10.0, "dropped inputs to count")
    assert "non-finite" in probe.latest_status().detail
    probe.ensure_running()


def test_disabled_gives_no_command(probe, policy_node):
    probe.ensure_running()
    assert probe.enable(False).success
    disabled_at = time.time()
    time.sleep(1.5)
    late = [t for t in probe.messages("trajectory") if seconds(t.header.stamp) > disabled_at]
    assert late == []
    assert probe.latest_status().state == PolicyStatus.STATE_DISABLED
    probe.ensure_running()


def test_estop_latches_until_reset_and_enable(probe, policy_node):
    probe.ensure_running()
    probe.estop_pub.publish(Bool(data=True))
    wait_for(lambda: probe.latest_status().estopped, 10.0, "the e-stop to latch")
    stopped_at = time.time()
    probe.estop_pub.publish(Bool(data=False))  # releasing the button does not resume
    time.sleep(1.5)
    assert [t for t in probe.messages("trajectory") if seconds(t.header.stamp) > stopped_at] == []
    assert probe.latest_status().state == PolicyStatus.STATE_ESTOPPED
    assert not probe.enable(True).success
    assert probe.call(probe.reset_client, Trigger.Request()).success
    assert probe.messages("trajectory", time.time()) == []  # reset leaves the node disabled
    assert probe.enable(True).success
    probe.wait_for_commands(3, time.time())


def test_bad_parameter_is_a_clear_error(tmp_path):
    process, log = start_node(tmp_path, node_parameters("/nonexistent/run", control_rate_hz=-5.0))
    assert process.wait(timeout=60) == 2
    assert "parameter 'control_rate_hz' must be > 0" in log.read_text()
