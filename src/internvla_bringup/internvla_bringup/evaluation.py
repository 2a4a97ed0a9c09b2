"""Closed-loop evaluation in the simulator through the policy node's own core, without DDS.

Each episode runs exactly what the ROS graph runs, minus the messages: the parameters come from the
same graph description the launch files use (robot profile, ``sim:=true``), the policy is the node's
``PolicyController`` (chunk schedule and ensembler, action convention, IK, safety clamps) fed by the
node's ``InferenceWorker`` step (spatial prompt applied, ``predict_action``), and spatial guidance is
the grounding node's ``Grounder`` asking the model itself, parsed by the grounding parser, at the
profile's grounding rate. Time is simulated: inference is instantaneous in sim time, so this measures
what the policy decides, not how fast a given computer runs it.

Every seed runs twice, with the guidance mode (``overlay`` or ``text``) and with ``off``, from the same
state and noise seed. Two continuous measures say how close a failing policy came: where the first
chunk heads (its first ``HEADING_STEPS`` position deltas, in the table plane, against the direction
from the tool to the object to pick) and the tool's closest approach to that object. The grounding
of the first frame of each guided episode (held-out scenes: the
evaluation seeds are not training seeds) is scored against the simulator's boxes (``grounding_iou``).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from internvla_bringup.graph import GraphOptions, describe_graph
from internvla_bringup.profiles import load_profile
from internvla_bringup.sim.env import SimEnv
from internvla_bringup.sim.robots import SCENE_CAMERA
from internvla_bringup.sim.servo import TrajectoryPoint
from internvla_grounding.grounder import Grounder
from internvla_grounding.settings import settings_from_values
from internvla_policy.control.config import PolicyParams
from internvla_policy.control.controller import PolicyController
from internvla_policy.control.inference import InferenceWorker
from internvla_policy.control.model_policy import ModelChunkPolicy
from internvla_policy.control.observation import CameraFrame
from internvla_policy.control.spatial_prompt import SpatialPrompt, needs_prompt
from internvla_policy.model import InternVLAM1, load_for_inference
from internvla_policy.vision.geometry import Box2D, GroundingResult

GUIDANCE_MODES = ("overlay", "text")
NO_GUIDANCE = "off"
HEADING_STEPS = 8
"""Steps of the first chunk whose summed position deltas say where the policy heads first (0.8 s)."""


@dataclass(frozen=True)
class EvalSettings:
    """What to evaluate: ``episodes`` seeds from ``seed`` on, each with guidance and without."""

    checkpoint: str
    episodes: int = 50
    seed: int = 10_000
    guidance_mode: str = "overlay"
    modes: tuple[str, ...] = ("overlay", NO_GUIDANCE)
    max_steps: int = 200
    """Control ticks per episode (20 s at 10 Hz; the expert needs 7 to 10 s)."""
    robot: str = "franka"
    image_size: int = 224
    """Camera images in pixels, as the simulated robot node publishes them."""

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.max_steps < 1:
            raise ValueError("episodes and max_steps must be at least 1")
        if self.guidance_mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance mode must be one of {GUIDANCE_MODES}, got {self.guidance_mode!r}")
        unknown = set(self.modes) - {self.guidance_mode, NO_GUIDANCE}
        if not self.modes or unknown:
            raise ValueError(
                f"modes must be among {self.guidance_mode!r} and {NO_GUIDANCE!r}, got {self.modes}"
            )


@dataclass(frozen=True)
class EpisodeResult:
    seed: int
    mode: str
    task: str
    kind: str
    success: bool
    steps: int
    grounding_answer: str | None
    grounding_iou: float | None
    first_move_m: list[float] | None = None
    """Table-plane (x, y) displacement the first chunk asks for over ``HEADING_STEPS`` steps."""
    target_offset_m: list[float] | None = None
    """Table-plane (x, y) offset from the tool to the object to pick, at the start."""
    closest_approach_m: float | None = None
    """Smallest distance between the tool and the object to pick during the episode."""

    @property
    def heading_cos(self) -> float | None:
        """Cosine between the first move and the direction to the object (1: straight at it)."""
        if self.first_move_m is None or self.target_offset_m is None:
            return None
        move, offset = np.asarray(self.first_move_m), np.asarray(self.target_offset_m)
        norms = float(np.linalg.norm(move) * np.linalg.norm(offset))
        return float(move @ offset / norms) if norms > 1e-9 else 0.0


def box_iou(a: Box2D, b: Box2D) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    width = max(0.0, min(a.x_max, b.x_max) - max(a.x_min, b.x_min))
    height = max(0.0, min(a.y_max, b.y_max) - max(a.y_min, b.y_min))
    inter = width * height
    union = (a.x_max - a.x_min) * (a.y_max - a.y_min) + (b.x_max - b.x_min) * (b.y_max - b.y_min) - inter
    return inter / union if union > 0 else 0.0


def grounding_iou(result: GroundingResult, truth: dict[str, Box2D]) -> float:
    """Mean over the true targets of the IoU with the answer's box of the same label (0 when absent)."""
    answered = {box.label.strip().lower(): box for box in result.boxes}
    scores = [box_iou(answered[label], box) if label in answered else 0.0 for label, box in truth.items()]
    return float(np.mean(scores)) if scores else 0.0


class Evaluator:
    """Loads the model and the graph's parameters once; runs seeded episodes."""

    def __init__(self, settings: EvalSettings, work_dir: Path, log: Callable[[str], None] = print) -> None:
        """``work_dir`` receives the files the graph description generates (the robot's URDF)."""
        self.settings = settings
        self.log = log
        options = GraphOptions(checkpoint=settings.checkpoint, device="cpu", rviz=False, share_model=True)
        specs = describe_graph(load_profile(settings.robot), options, work_dir)
        parameters = next(spec.parameters for spec in specs if spec.name == "inference")
        self.policy_values = dict(parameters["policy"])
        grounding = settings_from_values(parameters["grounding"])
        self.grounding_period = max(1, round(self.policy_values["control_rate_hz"] / grounding.rate_hz))
        self.model: InternVLAM1 = load_for_inference(
            self.policy_values["checkpoint"],
            base_vlm=self.policy_values["base_vlm"],
            device="cpu",
            dtype="float32",
            share=True,
        )
        self.grounder = Grounder(
            self.model, grounding.templates, grounding.coordinates, grounding.max_new_tokens
        )
        self.grounding_kind = grounding.kind
        self.cameras = [topic.strip("/").split("/")[0] for topic in self.policy_values["camera_topics"]]

    def params(self, mode: str) -> PolicyParams:
        """The policy node's parameters in the simulated graph, with ``mode`` as its spatial-prompt mode."""
        return PolicyParams.from_mapping({**self.policy_values, "spatial_prompt_mode": mode})

    def run(self, out_dir: Path) -> dict[str, Any]:
        """Every seed in every mode, in this process; writes and returns ``out_dir/eval.json``."""
        started = time.monotonic()
        s = self.settings
        return write_report(self.run_seeds(range(s.seed, s.seed + s.episodes)), s, started, out_dir)

    def run_seeds(self, seeds: range) -> list[EpisodeResult]:
        """``seeds`` in every mode, in order."""
        s = self.settings
        results: list[EpisodeResult] = []
        with SimEnv(s.robot, s.image_size, s.image_size, seed=seeds.start) as env:
            missing = set(self.cameras) - set(env.camera_names)
            if missing:
                raise ValueError(f"the profile's cameras {sorted(missing)} are not simulated for {s.robot}")
            for seed in seeds:
                for mode in s.modes:
                    result = self.episode(env, seed, mode, self.params(mode))
                    results.append(result)
                    iou = "" if result.grounding_iou is None else f" iou={result.grounding_iou:.2f}"
                    outcome = f"success={result.success} steps={result.steps}{iou}"
                    self.log(f"seed {seed} {mode:>7}: {result.task!r} {outcome}")
        return results

    def episode(self, env: SimEnv, seed: int, mode: str, params: PolicyParams) -> EpisodeResult:
        """One closed-loop episode; noise and layout are fixed by ``seed`` whatever the mode."""
        task = env.reset(seed)
        torch.manual_seed(seed)
        period = params.control_period_s
        controller = PolicyController.from_params(params, clock=lambda: env.sim_time)
        policy = ModelChunkPolicy(  # as the policy node builds it
            self.model,
            cfg_scale=params.cfg_scale,
            ddim_steps=params.ddim_steps,
            seed=None if params.seed < 0 else params.seed,
            unnorm_key=params.unnorm_key or None,
            prompt_template=mode != NO_GUIDANCE,
        )
        worker = InferenceWorker(policy, mode, controller.next_request, controller.on_chunk, lambda _: None)
        controller.set_model_ready()
        controller.on_instruction(task.instruction, env.sim_time)
        answer = iou = first_move = None
        offset = _tool_to_object(env, task.obj)
        target_offset, closest = offset[:2].tolist(), float(np.linalg.norm(offset))
        step = 0
        for step in range(1, self.settings.max_steps + 1):
            now = env.sim_time
            images = {camera: env.render_rgb(camera) for camera in self.cameras}
            for index, camera in enumerate(self.cameras):
                frame_id = f"{camera}_optical_frame"
                controller.on_camera(index, CameraFrame(now, frame_id, images[camera]), now)
            joints = env.joint_state()
            controller.on_joint_state(joints.names, joints.position, now, now)
            if needs_prompt(mode) and (step - 1) % self.grounding_period == 0:
                grounding = self.grounder.ground(images[SCENE_CAMERA], task.instruction, self.grounding_kind)
                controller.on_spatial_prompt(
                    SpatialPrompt(task.instruction, f"{SCENE_CAMERA}_optical_frame", grounding.result), now
                )
                if answer is None:
                    answer, iou = grounding.raw_answer, grounding_iou(grounding.result, true_boxes(env))
            request = controller.next_request()
            if request is not None:
                chunk = worker.run_once(request)
                if first_move is None:
                    first_move = chunk.prediction.actions[:HEADING_STEPS, :2].sum(axis=0).tolist()
                controller.on_chunk(chunk)
            command = controller.tick(now).command
            if command is not None:
                env.command_trajectory(params.joint_names, [TrajectoryPoint(period, command.joint_positions)])
                env.command_gripper(command.gripper_opening)
            succeeded = env.step(period).success
            closest = min(closest, float(np.linalg.norm(_tool_to_object(env, task.obj))))
            if succeeded:
                break
        return EpisodeResult(
            seed,
            mode,
            task.instruction,
            task.kind,
            env.success,
            step,
            answer,
            iou,
            first_move,
            target_offset,
            closest,
        )


def _tool_to_object(env: SimEnv, name: str) -> np.ndarray:
    """Vector from the tool centre point to object ``name``, robot base frame."""
    return env.object_position(name) - env.tcp_pose()[0]


def evaluate(settings: EvalSettings, out_dir: Path, workers: int = 1) -> dict[str, Any]:
    """Every seed in every mode, split into ``workers`` processes of one torch thread each (each loads
    the model), so that a many-core machine evaluates 50 seeds in minutes; writes ``out_dir/eval.json``."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        return Evaluator(settings, out_dir).run(out_dir)
    started = time.monotonic()
    seeds = np.array_split(np.arange(settings.seed, settings.seed + settings.episodes), workers)
    shards = [range(int(part[0]), int(part[-1]) + 1) for part in seeds if len(part)]
    context = multiprocessing.get_context("spawn")  # no forked torch or MuJoCo state
    with ProcessPoolExecutor(len(shards), mp_context=context) as pool:
        parts = pool.map(functools.partial(_evaluate_shard, settings, out_dir), shards)
        results = [result for part in parts for result in part]
    return write_report(results, settings, started, out_dir)


def _evaluate_shard(settings: EvalSettings, work_dir: Path, seeds: range) -> list[EpisodeResult]:
    torch.set_num_threads(1)
    return Evaluator(settings, work_dir, lambda line: print(line, flush=True)).run_seeds(seeds)


def write_report(
    results: list[EpisodeResult], settings: EvalSettings, started: float, out_dir: Path
) -> dict[str, Any]:
    """Summarise ``results`` into ``out_dir/eval.json`` and return the summary."""
    report = summarize(results, settings, time.monotonic() - started)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def true_boxes(env: SimEnv) -> dict[str, Box2D]:
    """The simulator's boxes of the instruction's named objects in the scene camera, by label."""
    names = set(env.task.named_objects)
    return {
        label.label: Box2D(*map(float, label.bbox_2d), label=label.label)
        for label in env.grounding_labels(SCENE_CAMERA)
        if label.name in names and label.bbox_2d is not None
    }


def _rate(results: list[EpisodeResult]) -> float | None:
    return float(np.mean([r.success for r in results])) if results else None


def summarize(results: list[EpisodeResult], settings: EvalSettings, wall_time_s: float) -> dict[str, Any]:
    """eval.json: success with and without guidance, per task kind, episode lengths, grounding IoU."""
    guided = [r for r in results if r.mode == settings.guidance_mode]
    unguided = [r for r in results if r.mode == NO_GUIDANCE]
    kinds = sorted({r.kind for r in results})
    ious = [r.grounding_iou for r in guided if r.grounding_iou is not None]
    return {
        "checkpoint": settings.checkpoint,
        "episodes": settings.episodes,
        "seeds": [settings.seed, settings.seed + settings.episodes - 1],
        "guidance_mode": settings.guidance_mode,
        "success_rate": _rate(guided),
        "success_rate_no_guidance": _rate(unguided),
        "per_task": {
            kind: {
                "episodes": len({r.seed for r in results if r.kind == kind}),
                "success_rate": _rate([r for r in guided if r.kind == kind]),
                "success_rate_no_guidance": _rate([r for r in unguided if r.kind == kind]),
            }
            for kind in kinds
        },
        "episode_lengths": {
            "guidance": [r.steps for r in guided],
            "no_guidance": [r.steps for r in unguided],
            "mean_successful_guidance": _mean_steps(guided),
            "mean_successful_no_guidance": _mean_steps(unguided),
        },
        "grounding_iou": float(np.mean(ious)) if ious else None,
        "approach": {"guidance": approach(guided), "no_guidance": approach(unguided)},
        "how": "policy core and simulator without DDS (PolicyController, InferenceWorker, Grounder, SimEnv); "
        "simulated time, inference instantaneous",
        "settings": {**asdict(settings), "modes": list(settings.modes)},
        "wall_time_s": round(wall_time_s, 1),
        "runs": [asdict(r) for r in results],
    }


def approach(results: list[EpisodeResult]) -> dict[str, float | None]:
    """How the episodes went for the object, success or not: mean first-chunk heading cosine (1 = straight
    at it, 0 = blind), the correlation across scenes of the first move's y with the object's y offset
    (the lateral direction only an image can tell from home), and the mean closest approach."""
    headed = [r for r in results if r.heading_cos is not None]
    closest = [r.closest_approach_m for r in results if r.closest_approach_m is not None]
    moves, offsets = [r.first_move_m[1] for r in headed], [r.target_offset_m[1] for r in headed]
    lateral = None
    if len(headed) >= 3 and np.ptp(moves) > 0 and np.ptp(offsets) > 0:
        lateral = float(np.corrcoef(moves, offsets)[0, 1])
    return {
        "heading_cos": float(np.mean([r.heading_cos for r in headed])) if headed else None,
        "lateral_correlation": lateral,
        "closest_approach_m": float(np.mean(closest)) if closest else None,
    }


def _mean_steps(results: list[EpisodeResult]) -> float | None:
    steps = [r.steps for r in results if r.success]
    return float(np.mean(steps)) if steps else None
