"""The policy node over real DDS with the tiny model: commands within limits, and every way they stop.

One node process serves the whole module (loading and warming the model once); each test first
brings it back to RUNNING, then changes one thing. The probe (this process) plays camera, robot
and operator: a raw and a compressed camera at 10 Hz, joint states at 50 Hz at the Franka's home
pose, the instruction, the e-stop, and the node's services.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool, Float64, Header, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from internvla_msgs.msg import ActionChunk, PolicyStatus
from internvla_policy.control.kinematics import PinocchioKinematics
from internvla_policy.control.pose import Pose, rotation_angle
from internvla_policy.model.tiny import write_tiny_run
from internvla_policy.ros.msg_conversions import array_to_image, rgb_to_compressed

sys.path.insert(0, str(Path(__file__).parents[1] / "control"))
from policy_panda import BASE, EE, HOME, JOINTS, LOWER, UPPER, VELOCITY, panda_urdf, profile_values

PERIOD = 0.1
CAMERA_MAX_AGE = 0.5
WORKSPACE_MIN, WORKSPACE_MAX = np.array([0.2, -0.5, 0.05]), np.array([0.8, 0.5, 0.9])
MAX_STEP_M, MAX_STEP_RAD, MARGIN, VELOCITY_SCALE = 0.02, 0.1, 0.01, 0.5
CAMERAS = ("/test/scene/image", "/test/wrist/image/compressed")
RELIABLE = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
TIMEOUT_S = 120.0


def node_parameters(checkpoint: str, **overrides) -> dict:
    values = {
        "camera_topics": list(CAMERAS),
        "camera_compressed": [False, True],
        "workspace_min": WORKSPACE_MIN.tolist(),
        "workspace_max": WORKSPACE_MAX.tolist(),
        "checkpoint": checkpoint,
        "control_rate_hz": 10,
        "camera_max_age_s": CAMERA_MAX_AGE,
        "max_translation_per_tick_m": MAX_STEP_M,
        "max_rotation_per_tick_rad": MAX_STEP_RAD,
        "joint_position_margin_rad": MARGIN,
        "joint_velocity_scale": VELOCITY_SCALE,
        "start_enabled": False,
        "status_rate_hz": 5.0,
        # A cheaper sampler keeps inference well inside a chunk's 1.6 s on a busy 2-core machine;
        # what is under test is the node, not the sampler.
        "ddim_steps": 2,
        "cfg_scale": 1.0,
    }
    return profile_values(**{**values, **overrides})


def start_node(tmp_path: Path, params: dict) -> tuple[subprocess.Popen, Path]:
    params_file = tmp_path / "policy.yaml"
    params_file.write_text(yaml.safe_dump({"internvla_policy": {"ros__parameters": params}}))
    log = tmp_path / "policy_node.log"
    command = [
        sys.executable,
        "-m",
        "internvla_policy.ros.policy_node",
        "--ros-args",
        "--params-file",
        str(params_file),
    ]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return process, log


def wait_for(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.02)


def seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class Probe:
    """Camera, robot and operator for the node under test, on its own executor thread."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("policy_node_probe")
        self.lock = threading.Lock()
        self.camera_on = True
        self.last_frame_stamp = 0.0
        self.joint_positions = HOME.copy()
        self.received: dict[str, list] = {
            "trajectory": [],
            "pose": [],
            "gripper": [],
            "chunk": [],
            "status": [],
        }
        n = self.node
        self.image_pub = n.create_publisher(Image, CAMERAS[0], qos_profile_sensor_data)
        self.compressed_pub = n.create_publisher(CompressedImage, CAMERAS[1], qos_profile_sensor_data)
        self.joint_pub = n.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self.instruction_pub = n.create_publisher(String, "/instruction", RELIABLE)
        self.estop_pub = n.create_publisher(Bool, "/internvla/estop", RELIABLE)
        for key, msg_type, topic in (
            ("trajectory", JointTrajectory, "/internvla/joint_command"),
            ("pose", PoseStamped, "/internvla/ee_target"),
            ("gripper", Float64, "/internvla/gripper_command"),
            ("chunk", ActionChunk, "/internvla/action_chunk"),
            ("status", PolicyStatus, "/internvla/policy_status"),
        ):
            n.create_subscription(msg_type, topic, self._recorder(key), RELIABLE)
        self.enable_client = n.create_client(SetBool, "/internvla_policy/enable")
        self.reset_client = n.create_client(Trigger, "/internvla_policy/reset_estop")
        self.rng = np.random.default_rng(0)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(n)
        n.create_timer(0.1, self._publish_cameras)
        n.create_timer(0.02, self._publish_joints)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _recorder(self, key: str):
        def record(msg) -> None:
            with self.lock:
                self.received[key].append((time.time(), msg))

        return record

    def _header(self, frame_id: str) -> Header:
        header = Header(frame_id=frame_id)
        header.stamp = self.node.get_clock().now().to_msg()
        return header

    def _publish_cameras(self) -> None:
        if not self.camera_on:
            return
        image = self.rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        scene, wrist = self._header("scene_camera"), self._header("wrist_camera")
        self.image_pub.publish(array_to_image(image, "rgb8", scene))
        self.compressed_pub.publish(rgb_to_compressed(image[::2, ::2].copy(), wrist))
        self.last_frame_stamp = max(seconds(scene.stamp), seconds(wrist.stamp))

    def _publish_joints(self) -> None:
        msg = JointState(header=self._header(""))
        # Extra joints and a different order: the node matches by name.
        msg.name = ["panda_finger_joint1", *reversed(JOINTS)]
        msg.position = [0.04, *reversed(self.joint_positions.tolist())]
        self.joint_pub.publish(msg)

    def messages(self, key: str, since: float = 0.0) -> list:
        with self.lock:
            return [msg for t, msg in self.received[key] if t >= since]

    def latest_status(self) -> PolicyStatus | None:
        statuses = self.messages("status")
        return statuses[-1] if statuses else None

    def call(self, client, request):
        assert client.wait_for_service(timeout_sec=30.0), f"service {client.srv_name} not available"
        future = client.call_async(request)
        wait_for(future.done, 30.0, f"a response from {client.srv_name}")
        return future.result()

    def enable(self, on: bool) -> SetBool.Response:
        return self.call(self.enable_client, SetBool.Request(data=on))

    def instruct(self, text: str) -> None:
        """Publish until the node's status shows it (a volatile topic drops what precedes discovery)."""

        def shown() -> bool:
            status = self.latest_status()
            if status is not None and status.instruction == text:
                return True
            self.instruction_pub.publish(String(data=text))
            time.sleep(0.3)
            return False

        wait_for(shown, 30.0, f"the node to take the instruction {text!r}")

    def wait_for_commands(self, count: int, since: float) -> list:
        wait_for(lambda: len(self.messages("trajectory", since)) >= count, what=f"{count} joint commands")
        return self.messages("trajectory", since)

    def ensure_running(self) -> None:
        """Camera on, valid joints, e-stop clear, enabled, and commands flowing."""
        self.camera_on = True
        self.joint_positions = HOME.copy()
        self.estop_pub.publish(Bool(data=False))
        status = self.latest_status()
        if status is not None and status.estopped:
            wait_for(lambda: self.call(self.reset_client, Trigger.Request()).success, 10.0, "an e-stop reset")
        assert self.enable(True).success
        self.wait_for_commands(3, time.time())

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=10.0)  # no callback may run on a destroyed node
        self.node.destroy_node()


@pytest.fixture(scope="module")
def probe():
    rclpy.init()
    probe = Probe()
    yield probe
    probe.close()
    rclpy.try_shutdown()


@pytest.fixture(scope="module")
def policy_node(probe, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("policy_node")
    run = write_tiny_run(tmp_path / "tiny", seed=0)
    process, log = start_node(tmp_path, node_parameters(str(run)))
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    print(log.read_text())


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
