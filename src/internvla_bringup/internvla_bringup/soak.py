"""The soak: the simulated Franka graph at full camera rate for a long time, memory of every node flat.

``python -m internvla_bringup.soak --duration 3600 --out soak_out/`` starts the graph ``internvla
launch franka`` starts (simulated Franka, grounding and policy with the built-in model, each process
through the runner), with the simulator's cameras at 30 Hz instead of 10, and lets the policy work
through episodes: every ``--episode`` seconds the simulator resets and the next instruction is sent.
Every ``--sample-period`` seconds it reads each node's resident memory from ``/proc`` (the node's
process and anything it started). After a warm-up (the first 20% of the run) no node's RSS may grow
by more than ``--bound-mib``, and the graph must keep working: no node exits or restarts, the cameras
deliver at least two thirds of the asked rate, chunks and joint commands keep coming, and the policy
never errs, latches an e-stop or disables itself.

It writes ``soak.json``: the settings, each node's samples and growth, the policy's record and the
verdict, and exits 1 when the verdict fails. The pytest soak (``test/ros/test_soak.py``) runs it for
600 s; ``INTERNVLA_SOAK_DURATION_S`` lengthens both. Measured figures: docs/SAFETY.md, "Soak"."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo
from trajectory_msgs.msg import JointTrajectory

from internvla_bringup.cli import parse_launch_arguments
from internvla_bringup.demo import wait_for_policy
from internvla_bringup.graph import GraphOptions, NodeSpec, describe_graph
from internvla_bringup.memory import MIB, FlatnessRule, judge, tree_rss_bytes
from internvla_bringup.profiles import RobotProfile, load_profile
from internvla_bringup.ros.client import RELIABLE, STATE_NAMES, GraphClient
from internvla_bringup.runner import GraphRunner, package_available
from internvla_msgs.msg import ActionChunk, PolicyStatus
from internvla_policy.control.controller import WAITING_FOR_CHUNK

DURATION_ENV = "INTERNVLA_SOAK_DURATION_S"
DEFAULT_DURATION_S = 600.0
CAMERA_RATE_HZ = 30.0
SAMPLE_PERIOD_S = 2.0
WARMUP_FRACTION = 0.2
WINDOW_S = 30.0
GROWTH_BOUND_MIB = 50.0
MIN_CAMERA_FRACTION = 2 / 3
MAX_CHUNK_GAP_S = 30.0
STARTUP_TIMEOUT_S = 300.0
EPISODE_S = 60.0
INSTRUCTIONS = ("pick up the red block", "put the blue block in the bowl", "pick up the green block")
FATAL_STATES = (PolicyStatus.STATE_ERROR, PolicyStatus.STATE_ESTOPPED, PolicyStatus.STATE_DISABLED)


def default_duration_s() -> float:
    """600 s unless ``INTERNVLA_SOAK_DURATION_S`` asks for longer (or, while developing, shorter)."""
    return float(os.environ.get(DURATION_ENV) or DEFAULT_DURATION_S)


def longest_gap_s(times: Sequence[float], start: float, end: float) -> float:
    """The longest stretch of ``[start, end]`` without an event (all of it when none came)."""
    edges = [start, *sorted(t for t in times if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(edges))


@dataclasses.dataclass(frozen=True)
class SoakSettings:
    """One soak's knobs; the defaults are the CI soak the figures in docs/SAFETY.md come from."""

    out_dir: Path
    duration_s: float = DEFAULT_DURATION_S
    camera_rate_hz: float = CAMERA_RATE_HZ
    sample_period_s: float = SAMPLE_PERIOD_S
    bound_mib: float = GROWTH_BOUND_MIB
    episode_s: float = EPISODE_S
    """A new episode this often: the simulator reset (next layout, arm at home) and the next instruction.

    One endless episode measured nothing of the command path once the small built-in model had driven
    the arm where IK has no solution: a 600 s run held so for up to 57 s at a time, chunks still coming.
    Episodes keep the arm commanded, and instruction changes and resets are part of what must not leak.
    """
    instructions: tuple[str, ...] = INSTRUCTIONS
    robot: str = "franka"
    launch_arguments: tuple[tuple[str, str], ...] = ()
    """Extra ``internvla launch`` arguments, e.g. ``(("share_model", "false"),)``."""

    @property
    def rule(self) -> FlatnessRule:
        """The warm-up is a fraction of the run, so a longer soak also gives the model longer to settle."""
        return FlatnessRule(
            bound_mib=self.bound_mib,
            warmup_s=WARMUP_FRACTION * self.duration_s,
            window_s=min(WINDOW_S, 0.1 * self.duration_s),
        )


class SoakObserver:
    """What the soak watches besides memory: when commands, chunks and camera frames came, and odd states.

    The grounding camera's camera_info stands for its frames: it shares their stamp and rate, and the
    probe need not deserialise 30 images a second to count them.
    """

    def __init__(self, client: GraphClient, profile: RobotProfile) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {"command": [], "chunk": [], "camera": []}
        self.unusual_states: Counter[str] = Counter()
        self.fatal_states: Counter[str] = Counter()
        self.last_status: PolicyStatus | None = None
        self.counting_from = float("inf")
        """States are counted from here (the instruction): loading and waiting for it are no finding."""
        node = client.node
        for kind, topic, qos, event in (
            (JointTrajectory, profile.robot.joint_command_topic, RELIABLE, "command"),
            (ActionChunk, "/internvla/action_chunk", RELIABLE, "chunk"),
            (
                CameraInfo,
                profile.camera(profile.grounding.camera).info_topic,
                qos_profile_sensor_data,
                "camera",
            ),
        ):
            node.create_subscription(kind, topic, lambda _, e=event: self._record(e), qos)
        node.create_subscription(PolicyStatus, "/internvla/policy_status", self._on_status, RELIABLE)

    def _record(self, event: str) -> None:
        with self.lock:
            self.times[event].append(time.monotonic())

    def _on_status(self, message: PolicyStatus) -> None:
        routine = message.state == PolicyStatus.STATE_RUNNING or message.detail == WAITING_FOR_CHUNK
        with self.lock:
            self.last_status = message
            if not routine and time.monotonic() >= self.counting_from:
                # Numbers out, so "camera stale: 0.61 s" and "camera stale: 0.74 s" count as one kind.
                detail = re.sub(r"\d+(\.\d+)?", "#", message.detail)
                key = f"{STATE_NAMES.get(message.state, message.state)}: {detail}"
                (self.fatal_states if message.state in FATAL_STATES else self.unusual_states)[key] += 1

    def events(self, event: str) -> list[float]:
        with self.lock:
            return list(self.times[event])


def soak_graph(settings: SoakSettings, run_dir: Path) -> tuple[RobotProfile, list[NodeSpec]]:
    """What ``internvla launch <robot>`` starts (no RViz), with the simulator's cameras at the soak rate."""
    profile = load_profile(settings.robot)
    options = GraphOptions.from_arguments(
        {"rviz": "false", "run_dir": str(run_dir), **dict(settings.launch_arguments)}
    )
    specs = []
    for spec in describe_graph(profile, options, run_dir):
        if spec.optional and not package_available(spec.package):
            continue
        if spec.name == "sim_robot":
            parameters = {**spec.parameters["sim_robot"], "camera_rate_hz": settings.camera_rate_hz}
            spec = dataclasses.replace(spec, parameters={"sim_robot": parameters})
        specs.append(spec)
    return profile, specs


@dataclasses.dataclass
class _Run:
    """What one soak collected, in monotonic seconds; samples in seconds since the instruction."""

    start: float
    end: float
    pids: dict[str, int]
    samples: dict[str, list[tuple[float, int]]]
    episodes: int
    problems: list[str]
    """A node that exited or a reset that failed: either ends the run early."""


def _soak(
    settings: SoakSettings, profile: RobotProfile, specs: list[NodeSpec], out: Path
) -> tuple[_Run, SoakObserver]:
    """Start the graph, send the instruction, sample every node's RSS until the time is up or one exits."""
    samples: dict[str, list[tuple[float, int]]] = {spec.name: [] for spec in specs}
    problems: list[str] = []
    # No restarts: a node that crashes once has failed the soak, and a restart would reset its memory.
    with (
        GraphClient(name="internvla_soak") as client,
        GraphRunner(specs, out / "logs", max_restarts=0) as runner,
    ):
        observer = SoakObserver(client, profile)
        wait_for_policy(client, runner, STARTUP_TIMEOUT_S, label="soak")
        pids = {name: runner.process(name).pid for name in runner.node_names}
        client.send_instruction(settings.instructions[0])
        start = observer.counting_from = time.monotonic()
        episodes, next_episode = 1, start + settings.episode_s
        print(
            f"soak: instruction sent; {settings.duration_s:.0f} s at {settings.camera_rate_hz:g} Hz cameras, "
            f"warm-up {settings.rule.warmup_s:.0f} s, nodes {', '.join(pids)}",
            flush=True,
        )
        next_report = start
        while not problems and (now := time.monotonic()) - start < settings.duration_s:
            for name, pid in pids.items():
                rss = tree_rss_bytes(pid)
                if rss is None:
                    problems.append(f"{name} exited after {now - start:.0f} s (logs: {runner.log_dir})")
                else:
                    samples[name].append((round(now - start, 2), rss))
            if now >= next_episode:
                ok, message = client.reset_simulator()
                if not ok:
                    problems.append(f"simulator reset failed after {now - start:.0f} s: {message}")
                client.send_instruction(settings.instructions[episodes % len(settings.instructions)])
                episodes, next_episode = episodes + 1, next_episode + settings.episode_s
            if now >= next_report:
                memory = ", ".join(f"{n} {s[-1][1] / MIB:.0f}" for n, s in samples.items() if s)
                print(
                    f"soak: {now - start:5.0f} s  RSS MiB: {memory}  "
                    f"commands {len(observer.events('command'))}  chunks {len(observer.events('chunk'))}",
                    flush=True,
                )
                next_report = now + 60.0
            time.sleep(settings.sample_period_s)
        return _Run(start, time.monotonic(), pids, samples, episodes, problems), observer


def run_soak(settings: SoakSettings) -> dict:
    """Run the soak, write ``soak.json`` into ``settings.out_dir`` and return what it holds."""
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    profile, specs = soak_graph(settings, out / "run")
    run, observer = _soak(settings, profile, specs, out)
    rule = settings.rule
    judged_from = run.start + rule.warmup_s
    judged = {event: [t for t in observer.events(event) if t >= judged_from] for event in observer.times}
    camera_hz = len(judged["camera"]) / max(run.end - judged_from, 1e-9)
    command_gap = longest_gap_s(judged["command"], judged_from, run.end)
    chunk_gap = longest_gap_s(judged["chunk"], judged_from, run.end)
    problems = list(run.problems)
    if camera_hz < MIN_CAMERA_FRACTION * settings.camera_rate_hz:
        problems.append(
            f"the cameras delivered {camera_hz:.1f} Hz of the {settings.camera_rate_hz:g} Hz asked for: "
            "this machine could not render at the soak's rate"
        )
    # Each episode starts with the arm at home, where the policy can command; a whole episode without a
    # command is a stuck graph, not the model driving the arm where IK has no solution.
    for what, gap, limit in (
        ("joint command", command_gap, settings.episode_s),
        ("chunk", chunk_gap, MAX_CHUNK_GAP_S),
    ):
        if gap > limit:
            problems.append(f"no {what} for {gap:.1f} s after the warm-up (limit {limit:.0f} s)")
    problems += [
        f"policy {state} ({count} status messages)" for state, count in observer.fatal_states.items()
    ]
    growths = judge(run.samples, rule) if not run.problems else {}
    problems += [
        f"{name} grew {g.growth_mib:.1f} MiB after the warm-up (bound {rule.bound_mib:.0f} MiB)"
        for name, g in growths.items()
        if not g.flat
    ]
    last = observer.last_status
    report = {
        "settings": {
            "robot": settings.robot,
            "duration_s": settings.duration_s,
            "ran_s": round(run.end - run.start, 1),
            "camera_rate_hz": settings.camera_rate_hz,
            "min_camera_rate_hz": round(MIN_CAMERA_FRACTION * settings.camera_rate_hz, 2),
            "sample_period_s": settings.sample_period_s,
            "warmup_s": rule.warmup_s,
            "window_s": rule.window_s,
            "bound_mib": rule.bound_mib,
            "max_command_gap_s": settings.episode_s,
            "max_chunk_gap_s": MAX_CHUNK_GAP_S,
            "episode_s": settings.episode_s,
            "episodes": run.episodes,
            "instructions": list(settings.instructions),
            "launch_arguments": dict(settings.launch_arguments),
            "checkpoint": next(s for s in specs if "policy" in s.parameters).parameters["policy"][
                "checkpoint"
            ],
        },
        "camera_rate_measured_hz": round(camera_hz, 2),
        "nodes": {
            name: {
                "pid": run.pids[name],
                **(dataclasses.asdict(growths[name]) if name in growths else {}),
                "samples_mib": [[t, round(rss / MIB, 2)] for t, rss in series],
            }
            for name, series in run.samples.items()
        },
        "policy": {
            "commands": len(observer.events("command")),
            "commands_after_warmup": len(judged["command"]),
            "chunks_after_warmup": len(judged["chunk"]),
            "longest_command_gap_after_warmup_s": round(command_gap, 2),
            "longest_chunk_gap_after_warmup_s": round(chunk_gap, 2),
            "dropped_inputs": last.dropped_inputs if last else 0,
            "unusual_states": dict(observer.unusual_states),
            "fatal_states": dict(observer.fatal_states),
        },
        "verdict": {"passed": not problems, "problems": problems},
    }
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report), flush=True)
    return report


def summary(report: dict) -> str:
    """The per-node table and the verdict, as the soak prints it and docs/SAFETY.md quotes it."""
    settings = report["settings"]
    lines = [
        f"soak: {settings['ran_s']:.0f} s, cameras {settings['camera_rate_hz']:g} Hz requested, "
        f"{report['camera_rate_measured_hz']:.1f} Hz measured; warm-up {settings['warmup_s']:.0f} s; "
        f"bound {settings['bound_mib']:.0f} MiB",
        f"{'node':<12} {'start MiB':>10} {'end MiB':>10} {'growth MiB':>11} {'peak MiB':>10} {'MiB/h':>8}",
    ]
    for name, node in report["nodes"].items():
        if "growth_mib" in node:
            lines.append(
                f"{name:<12} {node['start_mib']:>10.1f} {node['end_mib']:>10.1f} {node['growth_mib']:>11.1f} "
                f"{node['peak_mib']:>10.1f} {node['slope_mib_per_h']:>8.1f}"
            )
    policy = report["policy"]
    lines.append(
        f"policy: {policy['commands']} commands ({policy['commands_after_warmup']} after the warm-up, "
        f"longest gap {policy['longest_command_gap_after_warmup_s']:.1f} s), {policy['chunks_after_warmup']} "
        f"chunks after the warm-up (longest gap {policy['longest_chunk_gap_after_warmup_s']:.1f} s), "
        f"unusual states {policy['unusual_states'] or 'none'}"
    )
    verdict = report["verdict"]
    lines.append("soak: PASSED" if verdict["passed"] else "soak: FAILED: " + "; ".join(verdict["problems"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m internvla_bringup.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=default_duration_s(),
        help=f"seconds after the instruction (default {DEFAULT_DURATION_S:.0f}, or ${DURATION_ENV})",
    )
    parser.add_argument(
        "--out", type=Path, help="where soak.json and the node logs go (default: a temp folder)"
    )
    parser.add_argument("--camera-rate", type=float, default=CAMERA_RATE_HZ, help="simulated cameras, Hz")
    parser.add_argument(
        "--sample-period", type=float, default=SAMPLE_PERIOD_S, help="seconds between samples"
    )
    parser.add_argument("--bound-mib", type=float, default=GROWTH_BOUND_MIB, help="allowed growth per node")
    parser.add_argument("--episode", type=float, default=EPISODE_S, help="seconds per simulated episode")
    parser.add_argument(
        "--instruction",
        action="append",
        dest="instructions",
        help="an episode's instruction, taken in turn (repeat the option; default: "
        + "; ".join(INSTRUCTIONS)
        + ")",
    )
    parser.add_argument("arguments", nargs="*", help="internvla launch arguments as name:=value")
    args = parser.parse_args(argv)
    settings = SoakSettings(
        out_dir=args.out or Path(tempfile.mkdtemp(prefix="internvla-soak-")),
        duration_s=args.duration,
        camera_rate_hz=args.camera_rate,
        sample_period_s=args.sample_period,
        bound_mib=args.bound_mib,
        episode_s=args.episode,
        instructions=tuple(args.instructions or INSTRUCTIONS),
        launch_arguments=tuple(parse_launch_arguments(args.arguments).items()),
    )
    return 0 if run_soak(settings)["verdict"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
