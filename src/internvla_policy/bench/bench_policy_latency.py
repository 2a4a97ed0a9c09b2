"""End-to-end latency of the policy node on CPU with the tiny model, over real DDS.

    source scripts/env.sh && python src/internvla_policy/bench/bench_policy_latency.py [--duration 60]

Starts the policy node (simulated Franka profile, enabled, one raw camera) as its own process and
plays camera and robot from this one: 640x480 rgb8 frames at --camera-hz, joint states at 100 Hz
at the home pose, one instruction. It measures:

- frame -> command latency: from a camera frame's header stamp to the arrival here of the first
  joint command that used the chunk computed from that frame. Each ActionChunk carries its frame's
  stamp and is published in the control tick that first uses it, just before that tick's command;
  the command is the one whose tick stamp is the latest at or before the chunk's arrival (at most
  one control period earlier). p50 and p95 over all chunks.
- control-tick jitter: |interval between consecutive command stamps - control period|, p95. The
  stamps are taken when the timer callback starts, so this is the timer's lateness, including the
  time inference threads take from the executor.
- inference rate, and inference latency as the node reports it in PolicyStatus.

Writes <out>/bench_policy_latency.json and prints a summary. The machine's load average is
recorded too: on a shared machine the numbers move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String
from trajectory_msgs.msg import JointTrajectory

from internvla_msgs.msg import ActionChunk, PolicyStatus
from internvla_policy.model.tiny import write_tiny_run
from internvla_policy.ros.msg_conversions import array_to_image

PANDA_URDF = (
    Path(sysconfig.get_paths()["purelib"])
    / "cmeel.prefix/share/example-robot-data/robots/panda_description/urdf/panda.urdf"
)
JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
HOME = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
CAMERA = "/bench/camera/image"
RELIABLE = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)


def seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def percentiles_ms(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {"p50": float("nan"), "p95": float("nan"), "n": 0}
    ms = np.asarray(values_s) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "n": len(ms)}


class Player:
    """Camera and robot for the node under test; records chunks, commands and status."""

    def __init__(self, camera_hz: float) -> None:
        self.node = rclpy.create_node("policy_latency_bench")
        self.lock = threading.Lock()
        self.chunks: list[tuple[float, float]] = []  # (arrival, frame stamp)
        self.commands: list[tuple[float, float]] = []  # (arrival, tick stamp)
        self.latencies: list[float] = []
        self.status: PolicyStatus | None = None
        rng = np.random.default_rng(0)
        self.frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
        self.frame_index = 0
        n = self.node
        self.image_pub = n.create_publisher(Image, CAMERA, qos_profile_sensor_data)
        self.joint_pub = n.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self.instruction_pub = n.create_publisher(String, "/instruction", RELIABLE)
        n.create_subscription(ActionChunk, "/internvla/action_chunk", self._on_chunk, RELIABLE)
        n.create_subscription(JointTrajectory, "/internvla/joint_command", self._on_command, RELIABLE)
        n.create_subscription(PolicyStatus, "/internvla/policy_status", self._on_status, RELIABLE)
        n.create_timer(1.0 / camera_hz, self._publish_frame)
        n.create_timer(0.01, self._publish_joints)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _header(self) -> Header:
        header = Header(frame_id="bench_camera")
        header.stamp = self.node.get_clock().now().to_msg()
        return header

    def _publish_frame(self) -> None:
        self.frame_index = (self.frame_index + 1) % len(self.frames)
        self.image_pub.publish(array_to_image(self.frames[self.frame_index], "rgb8", self._header()))

    def _publish_joints(self) -> None:
        self.joint_pub.publish(JointState(header=self._header(), name=JOINTS, position=HOME))

    def _on_chunk(self, msg: ActionChunk) -> None:
        with self.lock:
            self.chunks.append((time.time(), seconds(msg.header.stamp)))

    def _on_command(self, msg: JointTrajectory) -> None:
        with self.lock:
            self.commands.append((time.time(), seconds(msg.header.stamp)))

    def _on_status(self, msg: PolicyStatus) -> None:
        previous, self.status = self.status, msg
        if previous is not None and msg.chunk_count != previous.chunk_count:
            with self.lock:
                self.latencies.append(seconds(msg.last_inference_latency))

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=10.0)  # no callback may run on a destroyed node
        self.node.destroy_node()


def frame_to_command_latencies(chunks, commands, period: float) -> list[float]:
    """For each chunk, arrival of its first command minus its frame's stamp (see the module doc)."""
    ticks = sorted(commands, key=lambda c: c[1])
    stamps = np.array([t for _, t in ticks])
    latencies = []
    for arrival, frame_stamp in chunks:
        i = int(np.searchsorted(stamps, arrival, side="right")) - 1
        if i >= 0 and arrival - stamps[i] <= period:
            latencies.append(ticks[i][0] - frame_stamp)
    return latencies


def tick_jitter(commands, period: float) -> list[float]:
    stamps = np.sort([t for _, t in commands])
    intervals = np.diff(stamps)
    consecutive = intervals[intervals < 1.5 * period]  # holds leave gaps; those are not jitter
    return list(np.abs(consecutive - period))


def run(args: argparse.Namespace) -> dict:
    if not PANDA_URDF.is_file():
        sys.exit(f"{PANDA_URDF} not found: run make setup (it installs example-robot-data)")
    period = 1.0 / args.control_hz
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        run_dir = write_tiny_run(tmp_path / "tiny", seed=0)
        params = {
            "joint_names": JOINTS,
            "urdf_path": str(PANDA_URDF),
            "base_frame": "panda_link0",
            "ee_frame": "panda_hand_tcp",
            "camera_topics": [CAMERA],
            "workspace_min": [0.2, -0.5, 0.05],
            "workspace_max": [0.8, 0.5, 0.9],
            "checkpoint": str(run_dir),
            "control_rate_hz": args.control_hz,
            "torch_threads": args.torch_threads,
            "start_enabled": True,
            "status_rate_hz": 5.0,
        }
        params_file = tmp_path / "policy.yaml"
        params_file.write_text(yaml.safe_dump({"internvla_policy": {"ros__parameters": params}}))
        log = tmp_path / "policy_node.log"
        rclpy.init()
        player = Player(args.camera_hz)
        with log.open("w") as out:
            node = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "internvla_policy.ros.policy_node",
                    "--ros-args",
                    "--params-file",
                    str(params_file),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 180.0
            while player.status is None or player.status.state in (PolicyStatus.STATE_STARTING,):
                if time.monotonic() > deadline or node.poll() is not None:
                    raise RuntimeError(f"the policy node did not start:\n{log.read_text()}")
                time.sleep(0.1)
            while player.status.instruction == "":
                player.instruction_pub.publish(String(data="pick up the red block and place it in the bowl."))
                time.sleep(0.3)
            time.sleep(args.settle)
            with player.lock:
                player.chunks.clear()
                player.commands.clear()
                player.latencies.clear()
            load_before = os.getloadavg()[0]
            time.sleep(args.duration)
            with player.lock:
                chunks, commands, inference = (
                    list(player.chunks),
                    list(player.commands),
                    list(player.latencies),
                )
            load_after = os.getloadavg()[0]
            status = player.status
        finally:
            node.terminate()
            node.wait(timeout=20)
            player.close()
            rclpy.shutdown()
    return {
        "model": "tiny random InternVLA-M1 (internvla_policy.model.tiny, seed 0)",
        "device": "cpu",
        "torch_threads": args.torch_threads,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "camera": {"size": [640, 480], "encoding": "rgb8", "rate_hz": args.camera_hz},
        "control_period_ms": period * 1000.0,
        "duration_s": args.duration,
        "chunks": len(chunks),
        "chunk_rate_hz": len(chunks) / args.duration,
        "commands": len(commands),
        "frame_to_command_latency_ms": percentiles_ms(frame_to_command_latencies(chunks, commands, period)),
        "tick_jitter_ms": percentiles_ms(tick_jitter(commands, period)),
        # Sampled from PolicyStatus when its chunk count changes: most, not all, chunks.
        "inference_latency_ms": percentiles_ms(inference),
        "warmup_ms": seconds(status.warmup_duration) * 1000.0,
        "load_average_1min": [load_before, load_after],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds (after --settle)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of running before measuring")
    parser.add_argument("--camera-hz", type=float, default=15.0)
    parser.add_argument("--control-hz", type=float, default=10.0)
    parser.add_argument("--torch-threads", type=int, default=0, help="0 = all cores but one")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    args = parser.parse_args()
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_policy_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
