"""``make demo``: the simulated Franka graph, one instruction, one episode, and what it did.

The demo runs the real graph through the runner (simulated robot, grounding and policy nodes
over DDS), watches it from a client node, and writes ``demo_out/``: the scene camera as MP4
with the spatial prompt drawn on it, the last annotated grounding frame as PNG, and
``summary.json`` with the numbers a user asks first (did it work, how far did the arm move,
how fast was the model).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from internvla_bringup.checkpoints import is_random_builtin, resolve_checkpoint
from internvla_bringup.graph import GraphOptions, describe_graph
from internvla_bringup.profiles import RobotProfile, load_profile
from internvla_bringup.ros.client import RELIABLE, STATE_NAMES, GraphClient
from internvla_bringup.runner import GraphRunner, package_available
from internvla_msgs.msg import PolicyStatus, SpatialPrompt
from internvla_policy.data.writer import encode_video
from internvla_policy.ros.msg_conversions import image_to_rgb, spatial_prompt_to_result
from internvla_policy.vision.annotate import draw_grounding

VIDEO_FPS = 10


@dataclass(frozen=True)
class DemoSettings:
    out_dir: Path
    instruction: str = "pick up the red block"
    seed: int = 0
    max_steps: int = 120
    checkpoint: str = "builtin"
    timeout_s: float = 600.0
    robot: str = "franka"


@dataclass
class _Observed:
    """What the client saw, filled from subscription callbacks."""

    frames: list[np.ndarray] = field(default_factory=list)
    annotated: np.ndarray | None = None
    command_times: list[float] = field(default_factory=list)
    joint_positions: list[np.ndarray] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    last_chunk_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class DemoRecorder:
    """Subscribes to what the demo reports on; every callback only stores."""

    def __init__(self, client: GraphClient, profile: RobotProfile) -> None:
        self._client = client
        self._joints = profile.robot.joint_names
        self.seen = _Observed()
        self._prompt: SpatialPrompt | None = None
        node = client.node
        scene = profile.camera(profile.grounding.camera)
        node.create_subscription(Image, scene.topic, self._on_frame, qos_profile_sensor_data)
        node.create_subscription(Image, "/internvla/grounding/image", self._on_annotated, 2)
        node.create_subscription(
            JointTrajectory, profile.robot.joint_command_topic, self._on_command, RELIABLE
        )
        node.create_subscription(
            JointState, profile.robot.joint_state_topic, self._on_joints, qos_profile_sensor_data
        )
        node.create_subscription(PolicyStatus, "/internvla/policy_status", self._on_status, RELIABLE)

    def _on_frame(self, message: Image) -> None:
        frame = image_to_rgb(message)
        prompt = self._client.latest_prompt
        if prompt is not None:
            frame = draw_grounding(frame, spatial_prompt_to_result(prompt))
        with self.seen.lock:
            self.seen.frames.append(frame)

    def _on_annotated(self, message: Image) -> None:
        self.seen.annotated = image_to_rgb(message)

    def _on_command(self, _: JointTrajectory) -> None:
        with self.seen.lock:
            self.seen.command_times.append(time.monotonic())

    def _on_joints(self, message: JointState) -> None:
        index = {name: i for i, name in enumerate(message.name)}
        if all(name in index for name in self._joints):
            with self.seen.lock:
                self.seen.joint_positions.append(np.array([message.position[index[n]] for n in self._joints]))

    def _on_status(self, message: PolicyStatus) -> None:
        if message.chunk_count > self.seen.last_chunk_count:
            latency = message.last_inference_latency
            self.seen.latencies_ms.append((latency.sec + latency.nanosec * 1e-9) * 1000.0)
            self.seen.last_chunk_count = message.chunk_count


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
    }


def wait_for_policy(client: GraphClient, runner: GraphRunner, timeout_s: float, label: str = "demo") -> None:
    """Block until the policy reports it is ready for an instruction (model loaded, warmed up).

    Progress lines start with ``label``: the demo and the soak (``internvla_bringup.soak``) both wait here.
    """
    ready = (PolicyStatus.STATE_WAITING, PolicyStatus.STATE_RUNNING, PolicyStatus.STATE_HOLDING)
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        status = client.latest_status
        if status is not None and status.state in ready:
            return
        if status is not None and status.state == PolicyStatus.STATE_ERROR:
            raise RuntimeError(f"the policy failed to start: {status.detail} (logs: {runner.log_dir})")
        text = (
            "waiting for the policy node"
            if status is None
            else f"policy {STATE_NAMES[status.state]}: {status.detail}"
        )
        if text != last:
            print(f"{label}: {text}", flush=True)
            last = text
        if not runner.running():
            raise RuntimeError(f"the graph stopped while starting (logs: {runner.log_dir})")
        time.sleep(0.2)
    raise RuntimeError(f"the policy was not ready after {timeout_s:.0f} s (logs: {runner.log_dir})")


def run_demo(settings: DemoSettings) -> dict:
    """Run one episode and write demo_out/; returns the summary."""
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    profile = load_profile(settings.robot)
    checkpoint = resolve_checkpoint(settings.checkpoint)
    options = GraphOptions.from_arguments(
        {
            "checkpoint": checkpoint,
            "seed": str(settings.seed),
            "task": settings.instruction,
            "rviz": "false",
            "run_dir": str(out / "run"),
        }
    )
    specs = [
        s
        for s in describe_graph(profile, options, out / "run")
        if not s.optional or package_available(s.package)
    ]
    started = time.monotonic()
    with GraphClient(name="internvla_demo") as client, GraphRunner(specs, out / "logs") as runner:
        recorder = DemoRecorder(client, profile)
        wait_for_policy(client, runner, timeout_s=settings.timeout_s)
        client.send_instruction(settings.instruction)
        print(f"demo: instruction sent: {settings.instruction!r}", flush=True)
        success = False
        next_report = 0.0
        while time.monotonic() - started < settings.timeout_s:
            steps = len(recorder.seen.command_times)
            task = client.latest_task or {}
            success = bool(task.get("success"))
            if time.monotonic() >= next_report:
                latency = recorder.seen.latencies_ms[-1] if recorder.seen.latencies_ms else float("nan")
                print(
                    f"demo: step {steps}/{settings.max_steps}  chunks {recorder.seen.last_chunk_count}  "
                    f"last inference {latency:.0f} ms  success {success}",
                    flush=True,
                )
                next_report = time.monotonic() + 2.0
            if success or steps >= settings.max_steps or not runner.running():
                break
            time.sleep(0.05)
    return _write_outputs(settings, recorder.seen, checkpoint, success, out)


def _write_outputs(
    settings: DemoSettings, seen: _Observed, checkpoint: str, success: bool, out: Path
) -> dict:
    with seen.lock:
        frames, times, positions = list(seen.frames), list(seen.command_times), list(seen.joint_positions)
    if frames:
        encode_video(out / "scene.mp4", np.stack(frames), fps=VIDEO_FPS)
    last = seen.annotated if seen.annotated is not None else (frames[-1] if frames else None)
    if last is not None:
        PILImage.fromarray(last).save(out / "last_annotated.png")
    travel = float(np.abs(np.diff(np.stack(positions), axis=0)).sum()) if len(positions) > 1 else 0.0
    periods = np.diff(times) * 1000.0 if len(times) > 1 else np.array([])
    summary = {
        "instruction": settings.instruction,
        "success": success,
        "steps": len(times),
        "commands_published": len(times),
        "joint_travel_rad": round(travel, 4),
        "inference_latency_ms": _percentiles(seen.latencies_ms),
        "control_period_ms": round(float(np.median(periods)), 2) if periods.size else None,
        "model": checkpoint,
        "model_note": (
            "tiny random-weight model (no trained default model yet): the arm moves, but not purposefully"
        )
        if is_random_builtin(checkpoint)
        else "trained built-in model",
        "seed": settings.seed,
        "video": "scene.mp4" if frames else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"demo: wrote {out}/summary.json, scene.mp4, last_annotated.png", flush=True)
    print(json.dumps(summary, indent=2), flush=True)
    return summary
