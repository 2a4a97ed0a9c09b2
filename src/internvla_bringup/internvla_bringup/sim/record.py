"""Record scripted-expert episodes as a LeRobot v2.1 dataset with grounding labels.

Action space (the released InternVLA-M1 Franka/WidowX convention, 7-D per frame):
``action.delta_eef_position`` (3, metres) + ``action.delta_eef_rotation`` (3, roll-pitch-yaw rad) +
``action.gripper_open`` (1, 1 = open, 0 = closed). Deltas are expressed in the robot base frame
from the measured tool pose at frame t to the tool pose the expert commands for frame t + 1:
p_target = p + delta_p and R_target = rpy_to_matrix(delta_rpy) @ R. ``action.joints`` keeps the
absolute joint targets the IK produced. State columns hold the measured joints, gripper opening
and tool pose (the URDF tool frame, e.g. panda_hand_tcp).

Episodes can start from a random arm pose (``random_start``) and have their executed commands pushed
off the expert's path now and then (``Perturbation``, DART-style): the recorded action stays the
expert's, so the data shows how to get back. Both keep a policy from learning that the arm's own
position gives the target away (from home, the arm is always on the line to the block).

Grounding labels go to meta/grounding.jsonl: per episode, the scene camera's boxes and points of
every object every ``label_stride`` frames, the named targets of the instruction and the 2-D trace
of the tool centre point.

Usage: python -m internvla_bringup.sim.record --out data/sim_expert --episodes 50 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from internvla_bringup.sim.camera import camera_pose, project
from internvla_bringup.sim.env import SimEnv
from internvla_bringup.sim.expert import ExpertAction, ScriptedExpert
from internvla_bringup.sim.robots import SCENE_CAMERA, robot_config
from internvla_bringup.sim.scene import object_label
from internvla_bringup.sim.servo import TrajectoryPoint
from internvla_bringup.sim.transforms import matrix_to_rpy
from internvla_policy.data import DatasetError, LeRobotWriter, write_jsonl

XYZ, RPY = ("x", "y", "z"), ("roll", "pitch", "yaw")
ACTION_KEYS = ("action.delta_eef_position", "action.delta_eef_rotation", "action.gripper_open")
VIDEO_CODEC, VIDEO_GOP = "libsvtav1", 2  # AV1 like LeRobot's recorder; a short GOP for cheap random access
EXPERT_REPORT = "meta/expert_report.json"
RECORDING_STREAM = 1  # second seed word of the recorder's own draws (start pose kind, pushes)


@dataclass(frozen=True)
class Perturbation:
    """Pushes of the executed tool target away from the expert's (the labels stay the expert's)."""

    probability: float = 0.0
    """Chance per frame that a push starts (0: none)."""
    std_m: float = 0.02
    """Standard deviation of a push's offset per axis, metres (half of it vertically)."""
    frames: int = 3
    """Frames a push lasts."""
    min_height_m: float = 0.08
    """No push starts while the expert's tool target is lower than this above the table (grasping)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"perturbation probability must be within 0..1, got {self.probability}")
        if self.std_m < 0.0 or self.frames < 1:
            raise ValueError(f"perturbation needs std >= 0 and frames >= 1, got {self.std_m}, {self.frames}")


class _Pusher:
    """Draws the pushes of one episode."""

    def __init__(self, env: SimEnv, perturbation: Perturbation, rng: np.random.Generator) -> None:
        self.env, self.settings, self.rng = env, perturbation, rng
        self.offset = np.zeros(3)
        self.left = 0
        self.count = 0

    def executed(self, action: ExpertAction) -> np.ndarray:
        """The joint targets to execute for ``action``: the expert's, or those of a pushed tool target."""
        s, env = self.settings, self.env
        if self.left == 0 and s.probability > 0.0:
            high = action.tcp_pos[2] > env.config.workspace.table_z + s.min_height_m
            if high and self.rng.random() < s.probability:
                self.offset = self.rng.normal(0.0, s.std_m, 3) * np.array([1.0, 1.0, 0.5])
                self.left = s.frames
                self.count += 1
        if self.left == 0:
            return action.arm_target
        self.left -= 1
        target = action.tcp_pos + self.offset
        result = env.kinematics.solve(target, action.tcp_rot, action.arm_target, env.data.qpos)
        return result.q if result.converged else action.arm_target


def dataset_features(arm_joints: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The vector columns of a recorded dataset with their per-dimension names, state first, then actions."""
    return {
        "state.joints": arm_joints,
        "state.gripper_opening": ("opening",),
        "state.eef_position": XYZ,
        "state.eef_rotation": RPY,
        "action.delta_eef_position": XYZ,
        "action.delta_eef_rotation": RPY,
        "action.gripper_open": ("gripper",),
        "action.joints": arm_joints,
    }


def _record_episode(
    env: SimEnv, writer: LeRobotWriter, fps: int, max_steps: int, label_stride: int, pusher: _Pusher
) -> dict:
    """Run the expert for one episode, feeding frames to ``writer``; returns the grounding record."""
    expert = ScriptedExpert(env, control_period=1.0 / fps)
    frames, trace = [], []
    k = env.intrinsics(SCENE_CAMERA)
    for frame in range(max_steps):
        if expert.done:
            break
        pos, rot = env.tcp_pose()
        images = {f"video.{cam}": env.render_rgb(cam) for cam in env.camera_names}
        if frame % label_stride == 0:
            labels = env.grounding_labels(SCENE_CAMERA)
            frames.append({"frame_index": frame, "objects": [label.to_json() for label in labels]})
        trace.append([round(float(c), 2) for c in project(pos, *camera_pose(env.data, SCENE_CAMERA), k)[0]])
        action = expert.act()
        values = {
            "state.joints": env.arm_positions(),
            "state.gripper_opening": [env.gripper_opening()],
            "state.eef_position": pos,
            "state.eef_rotation": matrix_to_rpy(rot),
            "action.delta_eef_position": action.tcp_pos - pos,
            "action.delta_eef_rotation": matrix_to_rpy(action.tcp_rot @ rot.T),
            "action.gripper_open": [action.gripper],
            "action.joints": action.arm_target,
        }
        writer.add_frame(values, images)
        # Commanded as the policy node commands (one trajectory point a period ahead): the deltas
        # then carry the tracking lead that a deployed policy must ask for to move at the expert's pace.
        executed = pusher.executed(action)
        env.command_trajectory(env.config.arm_joints, [TrajectoryPoint(1.0 / fps, executed)])
        env.command_gripper(action.gripper)
        env.step(1.0 / fps)
    return {
        "camera": SCENE_CAMERA,
        "video_key": f"video.{SCENE_CAMERA}",
        "image_size": [env.image_width, env.image_height],
        "targets": [object_label(name) for name in env.task.named_objects],
        "frames": frames,
        "tcp_trace_2d": trace,
        "expert_retries": expert.retries,
        "pushes": pusher.count,
    }


def record_expert_dataset(
    out_dir: str | Path,
    episodes: int,
    seed: int,
    robot: str = "franka",
    fps: int = 10,
    image_size: int = 224,
    task: str | None = None,
    max_steps: int = 300,
    label_stride: int = 10,
    keep_failures: bool = False,
    random_start: float = 0.0,
    perturbation: Perturbation = Perturbation(),
    log: Callable[[str], None] = print,
) -> Path:
    """Record ``episodes`` expert episodes (seeds ``seed``, ``seed + 1``, ...) into ``out_dir``.

    Failed demonstrations are dropped unless ``keep_failures``; at most twice as many seeds as
    ``episodes`` are tried. ``task`` None draws a task of the family per seed. A ``random_start``
    fraction of the episodes (drawn per seed) start from a random arm pose instead of home.
    Returns the dataset root.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if image_size < 16 or image_size % 2:
        raise ValueError(
            f"image_size must be an even number of pixels >= 16 (yuv420p video), got {image_size}"
        )
    if not 1 <= fps <= 60:
        raise ValueError(f"fps must be within 1..60, got {fps}")
    if not 0.0 <= random_start <= 1.0:
        raise ValueError(f"random_start must be a fraction within 0..1, got {random_start}")
    started = time.monotonic()
    with SimEnv(robot, image_size, image_size, seed=seed, task=task) as env:
        writer = LeRobotWriter(
            out_dir,
            fps=fps,
            robot_type=env.config.robot_type,
            video_codec=VIDEO_CODEC,
            video_gop=VIDEO_GOP,
            feature_names=dataset_features(env.config.arm_joints),
        )
        grounding, successes, attempts = [], 0, 0
        while writer.episode_index < episodes and attempts < 2 * episodes:
            episode_seed = seed + attempts
            attempts += 1
            episode_rng = np.random.default_rng([episode_seed, RECORDING_STREAM])
            from_random_pose = bool(episode_rng.random() < random_start)
            env.reset(episode_seed, task, random_start=from_random_pose)
            pusher = _Pusher(env, perturbation, episode_rng)
            record = {
                **_record_episode(env, writer, fps, max_steps, label_stride, pusher),
                "random_start": from_random_pose,
            }
            success = env.status().success
            successes += int(success)
            if not (success or keep_failures):
                writer.discard_episode()
                log(f"seed {episode_seed}: '{env.task.instruction}' failed, dropped")
                continue
            index = writer.save_episode(env.task.instruction, {"seed": episode_seed, "success": success})
            grounding.append({"episode_index": index, "task": env.task.instruction, **record})
            log(
                f"episode {index + 1}/{episodes} seed {episode_seed}: '{env.task.instruction}' "
                f"success={success} frames={len(record['tcp_trace_2d'])}"
            )
        if writer.episode_index == 0:
            raise RuntimeError(f"the expert failed all {attempts} attempts; nothing recorded")
        root = writer.finalize()
    write_jsonl(root / "meta" / "grounding.jsonl", grounding)
    report = {
        "robot": robot,
        "seed": seed,
        "episodes": writer.episode_index,
        "attempts": attempts,
        "expert_success_rate": successes / attempts,
        "fps": fps,
        "image_size": [image_size, image_size],
        "random_start": random_start,
        "perturbation": asdict(perturbation),
        "cameras": camera_mounts(robot),
        "action_keys": list(ACTION_KEYS),
        "action_frame": "robot base, tool frame " + env.config.tcp_body,
        "wall_time_s": round(time.monotonic() - started, 1),
    }
    (root / EXPERT_REPORT).write_text(json.dumps(report, indent=4) + "\n")
    log(f"wrote {root}: {report['episodes']} episodes, expert success {successes}/{attempts}")
    return root


def camera_mounts(robot: str) -> list[dict]:
    """Where ``robot``'s simulated cameras sit, as a recording's report stores it (JSON types):
    frames from differently mounted cameras are a different dataset."""
    return json.loads(json.dumps([asdict(mount) for mount in robot_config(robot).cameras]))


def read_expert_report(root: Path) -> dict | None:
    """A recording's ``meta/expert_report.json`` (None when absent); reports written before random
    starts and pushes existed read as recorded from home without pushes (their cameras stay unknown)."""
    path = root / EXPERT_REPORT
    if not path.is_file():
        return None
    return {"random_start": 0.0, "perturbation": asdict(Perturbation()), **json.loads(path.read_text())}


def main(argv: list[str] | None = None) -> int:
    """Command line: record expert demonstrations."""
    parser = argparse.ArgumentParser(
        prog="python -m internvla_bringup.sim.record", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="empty output folder for the dataset")
    parser.add_argument("--episodes", type=int, default=50, help="successful episodes to record")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    parser.add_argument("--robot", default="franka", choices=("franka", "widowx"), help="simulated robot")
    parser.add_argument("--fps", type=int, default=10, help="control and recording rate, Hz")
    parser.add_argument("--image-size", type=int, default=224, help="square camera image size, pixels")
    parser.add_argument("--task", default=None, help="fixed instruction (default: drawn per seed)")
    parser.add_argument("--keep-failures", action="store_true", help="also keep failed demonstrations")
    parser.add_argument(
        "--random-start", type=float, default=0.0, help="fraction of episodes starting from a random arm pose"
    )
    parser.add_argument(
        "--perturb", type=float, default=0.0, help="chance per frame of pushing the executed target off"
    )
    args = parser.parse_args(argv)
    try:
        record_expert_dataset(
            args.out,
            args.episodes,
            args.seed,
            args.robot,
            args.fps,
            args.image_size,
            args.task,
            keep_failures=args.keep_failures,
            random_start=args.random_start,
            perturbation=Perturbation(probability=args.perturb),
        )
    except (ValueError, DatasetError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
