"""The replay node over real DDS: it plays an episode, and scores the chunks a (test-side) policy sends.

The node runs as its own process (`python -m internvla_bringup.ros.replay_node`), the test is a second
process acting as the policy: for every joint state it receives it publishes an ActionChunk stamped
like that frame, whose first step is the dataset's action plus a known offset. The per-step error file
must then hold exactly that offset for every frame. A synthetic dataset written by the package's
LeRobot writer makes this run everywhere; the shared sim_pick_place episode runs where ../shared exists.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from internvla_msgs.msg import ActionChunk
from internvla_policy.data import EpisodeRecord, LeRobotDataset, read_error_file, write_dataset

LATCHED = QoSProfile(
    depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)
RELIABLE = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
IMAGES = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.BEST_EFFORT)
"""Best effort like sensor-data QoS, with room for a burst while the Python executor catches up."""
ACTION_KEYS = ("action.delta_eef_position", "action.delta_eef_rotation", "action.gripper_close")
OFFSET = np.array([0.001, -0.002, 0.003, -0.004, 0.005, -0.006, 0.5])
"""What the fake policy adds to the dataset's action: the expected per-dimension error."""
SYNTHETIC_FRAMES = 12
SYNTHETIC_FPS = 10


def _grey(frame: int) -> int:
    return 20 + 15 * frame


def _synthetic_episode(task: str, frames: int) -> EpisodeRecord:
    f = np.arange(frames, dtype=float)
    return EpisodeRecord(
        task=task,
        columns={
            "state.joints": np.stack([f, 10 + f, 20 + f], axis=1),  # position[0] is the frame index
            "state.joints_velocity": np.stack([0.1 * f, 0 * f, -0.1 * f], axis=1),
            "action.delta_eef_position": np.stack([0.01 * f, -0.02 * f, 0.5 + 0 * f], axis=1),
            "action.delta_eef_rotation": np.stack([0.1 + 0 * f, 0.2 + 0 * f, 0.03 * f], axis=1),
            "action.gripper_close": np.where(f < frames / 2, -1.0, 1.0)[:, None],
        },
        videos={
            "video.front": np.stack([np.full((24, 32, 3), _grey(i), np.uint8) for i in range(frames)]),
            "video.wrist": np.zeros((frames, 16, 16, 3), np.uint8),
        },
    )


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory) -> Path:
    episodes = [
        _synthetic_episode("pick the cube", 4),
        _synthetic_episode("place the cube", SYNTHETIC_FRAMES),
    ]
    return write_dataset(tmp_path_factory.mktemp("replay") / "dataset", episodes, fps=SYNTHETIC_FPS)


@pytest.fixture(scope="module")
def test_node():
    context = rclpy.Context()  # its own context: other test modules may hold the default one
    rclpy.init(context=context)
    node = rclpy.create_node("replay_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


class FakePolicy:
    """Subscribes to what the replay node publishes; answers every joint state with an offset chunk."""

    def __init__(self, node, actions: np.ndarray, camera_topics: list[str]):
        self.node, self.actions = node, actions
        self.images: dict[str, list[Image]] = {topic: [] for topic in camera_topics}
        self.frames_by_stamp: dict[tuple[int, int], int] = {}
        self.statuses: list[dict] = []
        self.instructions: list[str] = []
        self.chunks = node.create_publisher(ActionChunk, "/internvla/action_chunk", RELIABLE)
        self.joint_states: list[JointState] = []
        self._subscriptions = []
        for topic in camera_topics:
            self._subscribe(Image, topic, self.images[topic].append, IMAGES)
        self._subscribe(JointState, "/joint_states", self._on_joints, RELIABLE)
        self._subscribe(String, "/replay/status", lambda m: self.statuses.append(json.loads(m.data)), LATCHED)

    def _subscribe(self, msg_type, topic, callback, qos):
        self._subscriptions.append(self.node.create_subscription(msg_type, topic, callback, qos))

    def subscribe_instruction(self):
        """Called once frames flow: the instruction was sent earlier, so only transient local delivers it."""
        self._subscribe(String, "/instruction", lambda m: self.instructions.append(m.data), LATCHED)

    def chunk(self, stamp, first_step, normalized=False) -> ActionChunk:
        data = np.concatenate([first_step, np.full(7, 9.0)]).astype(np.float32)
        msg = ActionChunk(horizon=2, dimension=7, data=data.tolist(), normalized=normalized)
        msg.header.stamp = stamp
        return msg

    def _on_joints(self, msg: JointState):
        """Frames arrive in order and none is lost (reliable), so the k-th joint state is frame k."""
        frame = len(self.joint_states)
        self.joint_states.append(msg)
        self.frames_by_stamp[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = frame
        self.chunks.publish(self.chunk(msg.header.stamp, self.actions[frame] + OFFSET))
        if frame == 0:  # one chunk the node must reject, one it cannot match to a frame
            self.chunks.publish(self.chunk(msg.header.stamp, self.actions[frame], normalized=True))
            unknown = type(msg.header.stamp)(sec=1, nanosec=0)
            self.chunks.publish(self.chunk(unknown, self.actions[frame]))

    def destroy(self):
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        self.node.destroy_publisher(self.chunks)


def _start_node(params: dict[str, object]) -> subprocess.Popen:
    args = [sys.executable, "-m", "internvla_bringup.ros.replay_node", "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(predicate, timeout_s: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process is not None and process.poll() is not None and not predicate():
            pytest.fail(f"replay node exited ({process.returncode}) before {what}:\n{process.stdout.read()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _replay(test_node, policy: FakePolicy, params: dict[str, object], timeout_s: float) -> str:
    """Run the node until it exits after writing its files; return its log."""
    process = _start_node({**params, "exit_when_done": "true"})
    try:
        _wait(lambda: policy.frames_by_stamp, timeout_s, "the first frame", process)
        policy.subscribe_instruction()
        process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = process.stdout.read()
    assert process.returncode == 0, log
    _wait(lambda: policy.statuses and policy.statuses[-1]["state"] == "finished", 10, "the final status")
    return log


def _check_error_file(summary_path: Path, policy: FakePolicy, dataset_actions: np.ndarray, frames: int):
    summary = json.loads(summary_path.read_text())
    header, rows = read_error_file(Path(summary["error_file"]))
    assert header[:2] == ["frame_index", "dataset_delta_eef_position_0"]
    assert header[-1] == "abs_error_gripper_close" and len(header) == 1 + 3 * 7
    received = sorted(policy.frames_by_stamp.values())
    assert rows[:, 0].astype(int).tolist() == received  # one row per chunk, matched to its frame
    assert len(received) >= 0.9 * frames
    frame_index = rows[:, 0].astype(int)
    np.testing.assert_array_equal(rows[:, 1:8], dataset_actions[frame_index])
    commanded = (dataset_actions[frame_index] + OFFSET).astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(rows[:, 8:15], commanded)
    np.testing.assert_allclose(
        rows[:, 15:22], np.abs(commanded - dataset_actions[frame_index]), rtol=0, atol=0
    )
    np.testing.assert_allclose(rows[:, 15:22], np.broadcast_to(np.abs(OFFSET), (len(rows), 7)), atol=1e-6)
    np.testing.assert_allclose(summary["mean_abs_error"], np.abs(OFFSET), atol=1e-6)
    np.testing.assert_allclose(summary["max_abs_error"], np.abs(OFFSET), atol=1e-6)
    assert summary["chunks"] == {
        "received": len(received) + 2,
        "matched": len(received),
        "unmatched": 1,
        "rejected": 1,
    }
    assert summary["frames_published"] == frames and summary["steps"] == len(received)
    return summary


def test_replays_synthetic_episode_and_scores_chunks(test_node, synthetic_dataset, tmp_path):
    actions = LeRobotDataset(synthetic_dataset, action_keys=ACTION_KEYS).actions(1)
    policy = FakePolicy(test_node, actions, ["/front/image_raw", "/cam/wrist"])
    try:
        _replay(
            test_node,
            policy,
            {
                "dataset_path": synthetic_dataset,
                "episode_index": 1,
                "rate_multiplier": 2.0,
                "camera_keys": "[video.front, video.wrist]",
                "camera_topics": "[/front/image_raw, /cam/wrist]",
                "output_dir": tmp_path,
                "start_delay_s": 1.0,
            },
            timeout_s=60,
        )
    finally:
        policy.destroy()
    assert policy.instructions == ["place the cube"]
    summary = _check_error_file(
        tmp_path / "episode_000001_pass_0_summary.json", policy, actions, SYNTHETIC_FRAMES
    )
    assert summary["instruction"] == "place the cube" and summary["episode"] == 1
    assert sorted(policy.frames_by_stamp.values()) == list(range(SYNTHETIC_FRAMES))  # reliable joint states
    assert [m.position[0] for m in policy.joint_states] == list(range(SYNTHETIC_FRAMES))  # k-th is frame k
    final = policy.statuses[-1]
    assert (
        final["frame"] == final["frames"] == SYNTHETIC_FRAMES
        and final["summary"]["steps"] == SYNTHETIC_FRAMES
    )
    for topic, (height, width) in {"/front/image_raw": (24, 32), "/cam/wrist": (16, 16)}.items():
        images = policy.images[topic]
        assert images, f"no image on {topic}"
        for image in images:
            assert (image.encoding, image.height, image.width, image.step) == (
                "rgb8",
                height,
                width,
                3 * width,
            )
            assert len(image.data) == height * image.step
    for image in policy.images["/front/image_raw"]:
        frame = policy.frames_by_stamp[(image.header.stamp.sec, image.header.stamp.nanosec)]
        assert image.header.frame_id == "front_optical_frame"
        assert abs(np.frombuffer(image.data, np.uint8).mean() - _grey(frame)) < 3


def test_joint_state_layout_of_synthetic_episode(test_node, synthetic_dataset, tmp_path):
    """state.joints become named joints with state.joints_velocity as velocities."""
    received: list[JointState] = []
    subscriptions = [
        test_node.create_subscription(JointState, "/joint_states", received.append, RELIABLE),
        *(
            test_node.create_subscription(Image, f"/{name}/image_raw", lambda _: None, IMAGES)
            for name in ("front", "wrist")
        ),
    ]  # every published topic has a subscriber: the node starts once it has seen them all
    process = _start_node(
        {
            "dataset_path": synthetic_dataset,
            "episode_index": 0,
            "rate_multiplier": 4.0,
            "joint_names": "[a, b, c]",
            "output_dir": tmp_path,
            "start_delay_s": 0.5,
            "finish_grace_s": 0.2,
            "exit_when_done": "true",
        }
    )
    try:
        assert process.wait(timeout=60) == 0, process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
        for subscription in subscriptions:
            test_node.destroy_subscription(subscription)
    assert [list(m.position) for m in received] == [[f, 10 + f, 20 + f] for f in range(4)]
    assert all(list(m.name) == ["a", "b", "c"] for m in received)
    np.testing.assert_allclose(
        [list(m.velocity) for m in received], [[0.1 * f, 0, -0.1 * f] for f in range(4)]
    )


def test_loop_writes_files_per_pass_and_stops_on_sigint(test_node, synthetic_dataset, tmp_path):
    statuses: list[dict] = []
    subscription = test_node.create_subscription(
        String, "/replay/status", lambda m: statuses.append(json.loads(m.data)), LATCHED
    )
    process = _start_node(
        {
            "dataset_path": synthetic_dataset,
            "episode_index": 0,
            "rate_multiplier": 4.0,
            "loop": "true",
            "output_dir": tmp_path,
            "start_delay_s": 1.0,
            "wait_for_subscribers": "false",
            "finish_grace_s": 0.1,
        }
    )
    try:
        _wait(lambda: statuses and statuses[-1]["pass"] >= 2, 60, "a third pass", process)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0, process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
        test_node.destroy_subscription(subscription)
    for number in (0, 1):
        summary = json.loads((tmp_path / f"episode_000000_pass_{number}_summary.json").read_text())
        assert (summary["pass"], summary["frames_published"], summary["steps"]) == (number, 4, 0)
    assert {str(tmp_path / f"episode_000000_pass_{n}_errors.csv") for n in (0, 1)} <= set(
        statuses[-1]["files"]
    )


def test_waits_for_subscribers_before_playing(test_node, synthetic_dataset, tmp_path):
    statuses: list[dict] = []
    subscription = test_node.create_subscription(
        String, "/replay/status", lambda m: statuses.append(json.loads(m.data)), LATCHED
    )
    process = _start_node(
        {
            "dataset_path": synthetic_dataset,
            "camera_keys": "[video.wrist]",
            "camera_topics": "[/nobody/listens]",
            "output_dir": tmp_path,
            "start_delay_s": 0.0,
        }
    )
    try:
        _wait(lambda: len(statuses) >= 3, 30, "three status messages", process)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        test_node.destroy_subscription(subscription)
    assert {s["state"] for s in statuses} == {"waiting"} and statuses[-1]["frame"] == 0
    assert statuses[-1]["waiting_for_subscribers"] == ["/nobody/listens", "/joint_states"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "parameter 'dataset_path' is required"),
        ({"rate_multiplier": 0.0}, "parameter 'rate_multiplier' must be > 0"),
        ({"rate_multiplier": "fast"}, "parameter 'rate_multiplier': wrong type"),
        ({"episode_index": 5}, "parameter episode_index: episode 5 is not in"),
        ({"camera_keys": "[video.nope]"}, "parameter camera_keys: unknown key 'video.nope'"),
        ({"camera_keys": "[video.front]", "camera_topics": "[/a, /b]"}, "'camera_topics' has 2 entries"),
        ({"action_keys": "[action.nope]"}, "parameter action_keys: unknown key 'action.nope'"),
        ({"joint_names": "[a]"}, "parameter joint_names: 1 names given, but the state has 3 values"),
    ],
)
def test_bad_parameters_are_named(synthetic_dataset, params, message):
    if params:
        params = {"dataset_path": synthetic_dataset, **params}
    process = _start_node(params)
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, output
    assert "cannot start" in output and message in output, output


def test_replays_shared_episode_with_error_file(test_node, shared_dataset, tmp_path):
    reader = LeRobotDataset(shared_dataset, camera_keys=["video.ego_view"], action_keys=ACTION_KEYS)
    actions = reader.actions(0)
    policy = FakePolicy(test_node, actions, ["/ego_view/image_raw"])
    try:
        log = _replay(
            test_node,
            policy,
            {
                "dataset_path": shared_dataset,
                "episode_index": 0,
                "rate_multiplier": 2.0,
                "output_dir": tmp_path,
                "start_delay_s": 1.0,
            },
            timeout_s=120,
        )
    finally:
        policy.destroy()
    assert "1 camera(s)" in log
    assert policy.instructions == ["Move the shoe to the top of the cooking pot."]
    _check_error_file(tmp_path / "episode_000000_pass_0_summary.json", policy, actions, 412)
    joints = reader.columns(0, ["state.joints"])
    np.testing.assert_array_equal([list(m.position) for m in policy.joint_states], joints)
    assert list(policy.joint_states[0].name) == [f"joint_{i}" for i in range(1, 8)]
    images = policy.images["/ego_view/image_raw"]
    assert images, "no camera image arrived"  # best effort: under load some may be dropped on the way
    for image in images:
        frame = policy.frames_by_stamp[(image.header.stamp.sec, image.header.stamp.nanosec)]
        assert (image.encoding, image.height, image.width, image.step) == ("rgb8", 480, 640, 1920)
        assert image.header.frame_id == "ego_view_optical_frame"
        pixels = np.frombuffer(image.data, np.uint8).reshape(480, 640, 3)
        np.testing.assert_array_equal(pixels, reader.image(0, "video.ego_view", frame))
        assert pixels.std() > 5  # not blank
