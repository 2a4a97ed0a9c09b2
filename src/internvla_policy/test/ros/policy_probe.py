"""The policy node's test rig: its parameters, its process, and a probe that plays the robot.

Shared by the node's behaviour tests and its fault suite. The probe (the test process) plays
camera, robot and operator: a raw and a compressed camera at 10 Hz, joint states at 50 Hz at the
Franka's home pose, the instruction, the e-stop, and the node's services.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
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
from internvla_policy.ros.msg_conversions import array_to_image, rgb_to_compressed

sys.path.insert(0, str(Path(__file__).parents[1] / "control"))
from policy_panda import HOME, JOINTS, profile_values

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


@contextlib.contextmanager
def node_process(tmp_path: Path, params: dict) -> Iterator[subprocess.Popen]:
    """The node running with `params`; stopped afterwards and its log printed (pytest shows it on failure)."""
    process, log = start_node(tmp_path, params)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(log.read_text())


@contextlib.contextmanager
def probe_session(probe_type: type[Probe] | None = None) -> Iterator[Probe]:
    """rclpy initialised in this process and a probe spinning, for a test module."""
    rclpy.init()
    probe = (probe_type or Probe)()
    try:
        yield probe
    finally:
        probe.close()
        rclpy.try_shutdown()


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
        self.joints_on = True
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

    def header(self, frame_id: str) -> Header:
        header = Header(frame_id=frame_id)
        header.stamp = self.node.get_clock().now().to_msg()
        return header

    def _publish_cameras(self) -> None:
        if not self.camera_on:
            return
        image = self.rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        scene, wrist = self.header("scene_camera"), self.header("wrist_camera")
        self.image_pub.publish(array_to_image(image, "rgb8", scene))
        self.compressed_pub.publish(rgb_to_compressed(image[::2, ::2].copy(), wrist))
        self.last_frame_stamp = max(seconds(scene.stamp), seconds(wrist.stamp))

    def _publish_joints(self) -> None:
        if not self.joints_on:
            return
        msg = JointState(header=self.header(""))
        # Extra joints and a different order: the node matches by name.
        msg.name = ["panda_finger_joint1", *reversed(JOINTS)]
        msg.position = [0.04, *reversed(self.joint_positions.tolist())]
        self.joint_pub.publish(msg)

    def messages(self, key: str, since: float = 0.0) -> list:
        with self.lock:
            return [msg for t, msg in self.received[key] if t >= since]

    def receive_times(self, key: str, since: float = 0.0) -> list[float]:
        with self.lock:
            return [t for t, _ in self.received[key] if t >= since]

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
        self.camera_on = self.joints_on = True
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
