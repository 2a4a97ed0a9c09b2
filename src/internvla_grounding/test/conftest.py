"""Fixtures for the grounding tests: the tiny model, the node as a real process, and a test graph.

Everything is real: the node runs as `python -m internvla_grounding.ros.grounding_node` with the
tiny random InternVLA-M1 written by the model core, and the test talks to it over Fast DDS on
loopback in the ROS domain the root conftest.py chose for this pytest process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from internvla_msgs.msg import SpatialPrompt
from internvla_msgs.srv import Ground
from internvla_policy.model.tiny import write_tiny_run
from internvla_policy.ros.msg_conversions import array_to_image

STARTUP_TIMEOUT_S = 120.0
READY_LINE = "model loaded"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The model core's tiny random run folder, written once per test session."""
    return write_tiny_run(tmp_path_factory.mktemp("tiny_m1"), seed=0)


class NodeProcess:
    """The grounding node in its own process, its log lines collected as they are written."""

    def __init__(self, parameters: dict[str, object]) -> None:
        args = [f"{name}:={value}" for name, value in parameters.items()]
        command = [sys.executable, "-m", "internvla_grounding.ros.grounding_node", "--ros-args"]
        for arg in args:
            command += ["-p", arg]
        env = {**os.environ, "RCUTILS_COLORIZED_OUTPUT": "0", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for_line(self, pattern: str, timeout: float, start: int = 0) -> str:
        """The first log line from index `start` on that matches pattern (regex), waiting up to timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    tail = "\n".join(self.lines[-20:])
                    raise AssertionError(
                        f"no log line matching {pattern!r} within {timeout} s; last lines:\n{tail}"
                    )
                self._cond.wait(remaining)

    def lines_matching(self, pattern: str, start: int = 0) -> list[str]:
        regex = re.compile(pattern)
        with self._cond:
            return [line for line in self.lines[start:] if regex.search(line)]

    def mark(self) -> int:
        """The current end of the log, to look only at what comes after."""
        with self._cond:
            return len(self.lines)

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl-C, as a user would; returns the exit status (killed processes fail the caller's check)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return -signal.SIGKILL
        self._reader.join(5)
        return self.process.returncode


@pytest.fixture(scope="module")
def start_node(tiny_run) -> Iterator[Callable[..., NodeProcess]]:
    """Start grounding nodes on the tiny model (test defaults, overridable); all stop at module end."""
    started: list[NodeProcess] = []

    def start(**overrides) -> NodeProcess:
        parameters = {
            "checkpoint": str(tiny_run),
            "max_new_tokens": 8,
            "rate_hz": 5.0,
            "warn_throttle_s": 1.0,
            "depth_sync_tolerance_s": 0.05,
            **overrides,
        }
        node = NodeProcess(parameters)
        started.append(node)
        node.wait_for_line(READY_LINE, STARTUP_TIMEOUT_S)
        return node

    yield start
    for node in started:
        assert node.stop() == 0, "\n".join(node.lines[-20:])


class Graph:
    """A test node with publishers for every input of the grounding node and recorders for its outputs."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("grounding_test", context=self.context)
        self._cond = threading.Condition()
        self.prompts: list[SpatialPrompt] = []
        self.images: list[Image] = []
        self.markers: list[MarkerArray] = []
        node = self.node
        self.image_pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.compressed_pub = node.create_publisher(
            CompressedImage, "image/compressed", qos_profile_sensor_data
        )
        self.depth_pub = node.create_publisher(Image, "depth/image", qos_profile_sensor_data)
        self.info_pub = node.create_publisher(CameraInfo, "depth/camera_info", qos_profile_sensor_data)
        self.instruction_pub = node.create_publisher(String, "/instruction", 10)
        node.create_subscription(SpatialPrompt, "/internvla/spatial_prompt", self._record(self.prompts), 10)
        node.create_subscription(
            Image, "/internvla/grounding/image", self._record(self.images), QoSProfile(depth=10)
        )
        node.create_subscription(MarkerArray, "/internvla/grounding/markers", self._record(self.markers), 10)
        self.ground = node.create_client(Ground, "/internvla/ground")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def _record(self, into: list):
        def callback(msg) -> None:
            with self._cond:
                into.append(msg)
                self._cond.notify_all()

        return callback

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str):
        """Wait until predicate() is truthy (checked on every received message); return its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._cond.wait(min(remaining, 0.1))
            return value

    def wait_for_subscribers(self, timeout: float = 20.0) -> None:
        """Discovery: publish only once the grounding node listens, so nothing is lost to it."""
        publishers = (self.image_pub, self.depth_pub, self.info_pub, self.instruction_pub)
        self.wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers), timeout, "discovery")
        assert self.ground.wait_for_service(timeout)

    def instruct(self, text: str) -> None:
        self.instruction_pub.publish(String(data=text))

    @staticmethod
    def header(stamp_sec: int, frame_id: str = "scene_camera_optical_frame") -> Header:
        """A distinct stamp per published frame lets each output be traced to its input."""
        header = Header(frame_id=frame_id)
        header.stamp.sec = stamp_sec
        header.stamp.nanosec = 250_000_000
        return header

    def publish_frame(
        self, stamp_sec: int, pixels: np.ndarray | None = None, encoding: str = "rgb8"
    ) -> Image:
        msg = array_to_image(scene() if pixels is None else pixels, encoding, self.header(stamp_sec))
        self.image_pub.publish(msg)
        return msg

    def prompt_for(self, stamp_sec: int) -> SpatialPrompt | None:
        return next((p for p in self.prompts if p.header.stamp.sec == stamp_sec), None)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._spinner.join(5)


@pytest.fixture(scope="module")
def graph() -> Iterator[Graph]:
    test_graph = Graph()
    yield test_graph
    test_graph.close()


def scene(width: int = 160, height: int = 120) -> np.ndarray:
    """A small synthetic table-top frame: a red block and a blue bowl on a grey table."""
    frame = np.full((height, width, 3), 128, np.uint8)
    frame[height // 3 : height // 2, width // 5 : width // 3] = (200, 30, 30)
    frame[height // 2 : 3 * height // 4, width // 2 : 3 * width // 4] = (30, 60, 200)
    return frame
