"""The one description of the InternVLA graph, shared by the launch files and the pip-only runner.

``describe_graph(profile, options)`` says which processes run, with which parameters and
remappings. ``launch/*.launch.py`` turn the result into launch_ros ``Node`` actions; the
``internvla launch`` runner turns the same result into command lines. Neither adds or drops
anything of its own, so a graph tested with the runner here is the graph a robot gets from
``ros2 launch``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xacro
import yaml

from internvla_bringup.checkpoints import resolve_checkpoint, resolve_device
from internvla_bringup.profiles import INFERENCE_BACKENDS, SPATIAL_PROMPT_MODES, RobotProfile, profile_dir
from internvla_bringup.sim.assets import robot_description
from internvla_policy.data.meta import DatasetMeta


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph.

    ``parameters`` maps each ROS node the process hosts to its parameters: one entry for an
    ordinary node, two for the shared-model inference process.
    """

    name: str
    package: str
    executable: str
    parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()
    optional: bool = False
    """Started only where its package is installed (rviz2, robot_state_publisher)."""
    respawn: bool = True


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument(
        "sim", "true", "true: a MuJoCo simulated robot stands in for the arm; false: the real robot"
    ),
    LaunchArgument("checkpoint", "", "InternVLA-M1 run folder, .pt or .safetensors; empty = the profile's"),
    LaunchArgument("base_vlm", "", "override the checkpoint config's base VLM folder; empty = the profile's"),
    LaunchArgument("device", "", "torch device (cpu, cuda, cuda:N, auto); empty = the profile's"),
    LaunchArgument(
        "use_grounding", "true", "run the grounding node (spatial prompts, markers, annotated image)"
    ),
    LaunchArgument("share_model", "true", "grounding and policy in one process sharing one loaded model"),
    LaunchArgument("spatial_prompt_mode", "", f"{' | '.join(SPATIAL_PROMPT_MODES)}; empty = the profile's"),
    LaunchArgument(
        "inference_backend",
        "",
        "local: the policy loads the checkpoint; remote: it asks the inference server at server_uri "
        "(internvla-m1 serve); empty = the profile's",
    ),
    LaunchArgument("server_uri", "", "inference server, ws://host:port; empty = the profile's"),
    LaunchArgument(
        "enable",
        "",
        "start with commands enabled; empty = true in sim and replay, the "
        "profile's start_enabled on a real robot",
    ),
    LaunchArgument("rviz", "true", "start RViz with rviz/internvla.rviz (where rviz2 is installed)"),
    LaunchArgument("replay", "", "LeRobot v2.1 dataset folder to replay instead of a robot"),
    LaunchArgument("episode", "0", "episode index to replay"),
    LaunchArgument(
        "replay_cameras",
        "",
        "comma-separated dataset camera keys fed to the profile's cameras in order; empty = every camera "
        "with a video for the episode",
    ),
    LaunchArgument("seed", "0", "simulated task seed (object placement)"),
    LaunchArgument("task", "", "simulated task instruction; empty = chosen by the seed"),
    LaunchArgument("run_dir", "", "folder for generated files (URDF); empty = a temporary folder"),
)

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class GraphArgumentError(ValueError):
    """A launch argument has a value the graph cannot use; the message names the argument."""


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise GraphArgumentError(f"launch argument {name}:={value!r}: expected true or false")


def _integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise GraphArgumentError(f"launch argument {name}:={value!r}: expected an integer") from None


@dataclass(frozen=True)
class GraphOptions:
    """The launch arguments, typed and checked."""

    sim: bool = True
    checkpoint: str = ""
    base_vlm: str = ""
    device: str = ""
    use_grounding: bool = True
    share_model: bool = True
    spatial_prompt_mode: str = ""
    inference_backend: str = ""
    server_uri: str = ""
    enable: bool | None = None
    rviz: bool = True
    replay: str = ""
    episode: int = 0
    replay_cameras: str = ""
    seed: int = 0
    task: str = ""
    run_dir: str = ""

    @classmethod
    def from_arguments(cls, values: Mapping[str, str]) -> GraphOptions:
        """Build from ``name -> string`` launch-argument values; unknown names are an error."""
        known = {a.name: a.default for a in LAUNCH_ARGUMENTS}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise GraphArgumentError(f"unknown launch argument {unknown[0]!r}; known: {', '.join(known)}")
        merged = {**known, **values}
        mode = merged["spatial_prompt_mode"]
        if mode and mode not in SPATIAL_PROMPT_MODES:
            raise GraphArgumentError(
                f"launch argument spatial_prompt_mode:={mode!r}: expected one of "
                f"{', '.join(SPATIAL_PROMPT_MODES)}"
            )
        backend = merged["inference_backend"]
        if backend and backend not in INFERENCE_BACKENDS:
            raise GraphArgumentError(
                f"launch argument inference_backend:={backend!r}: expected {' or '.join(INFERENCE_BACKENDS)}"
            )
        return cls(
            sim=_flag("sim", merged["sim"]),
            checkpoint=merged["checkpoint"],
            base_vlm=merged["base_vlm"],
            device=merged["device"],
            use_grounding=_flag("use_grounding", merged["use_grounding"]),
            share_model=_flag("share_model", merged["share_model"]),
            spatial_prompt_mode=mode,
            inference_backend=backend,
            server_uri=merged["server_uri"],
            enable=_flag("enable", merged["enable"]) if merged["enable"] else None,
            rviz=_flag("rviz", merged["rviz"]),
            replay=merged["replay"],
            episode=_integer("episode", merged["episode"]),
            replay_cameras=merged["replay_cameras"],
            seed=_integer("seed", merged["seed"]),
            task=merged["task"],
            run_dir=merged["run_dir"],
        )


def write_robot_description(profile: RobotProfile, run_dir: Path) -> Path:
    """The profile's URDF as a file (xacro expanded, meshes absolute), for IK and robot_state_publisher."""
    description = profile.robot.description
    if description.endswith((".urdf", ".xacro")):
        source = Path(description).expanduser()
        if not source.is_file():
            raise GraphArgumentError(f"{profile.source}: robot.description: file not found: {source}")
        if source.suffix != ".xacro":
            return source.resolve()
        xml = xacro.process_file(str(source)).toxml()
    else:
        xml = robot_description(description).urdf_xml
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{profile.name}.urdf"
    if not path.is_file() or path.read_text() != xml:
        # Whole or not at all: evaluation workers and graph processes may write and read it at once.
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(xml)
        partial.replace(path)
    return path


def _policy_parameters(
    profile: RobotProfile, options: GraphOptions, urdf_path: Path, checkpoint: str, device: str, dtype: str
) -> dict[str, Any]:
    action, safety, control, model = profile.action, profile.safety, profile.control, profile.model
    robot_driven = options.sim or bool(options.replay)
    return {
        "joint_names": list(profile.robot.joint_names),
        "urdf_path": str(urdf_path),
        "base_frame": profile.robot.base_frame,
        "ee_frame": profile.robot.ee_frame,
        "control_rate_hz": control.rate_hz,
        "camera_max_age_s": safety.max_camera_age,
        "future_stamp_tolerance_s": safety.max_future_stamp,
        "joint_state_max_age_s": safety.max_joint_state_age,
        "spatial_prompt_max_age_s": safety.max_spatial_prompt_age,
        "heartbeat_timeout_s": safety.max_heartbeat_age if safety.heartbeat_topic else 0.0,
        "start_enabled": options.enable
        if options.enable is not None
        else (robot_driven or safety.start_enabled),
        "workspace_min": list(safety.workspace_min),
        "workspace_max": list(safety.workspace_max),
        "max_translation_per_tick_m": safety.max_translation_per_tick,
        "max_rotation_per_tick_rad": safety.max_rotation_per_tick,
        "joint_velocity_scale": safety.joint_velocity_scale,
        "joint_limit_tolerance_rad": safety.joint_limit_tolerance,
        "workspace_tolerance_m": safety.workspace_tolerance,
        "action_frame": action.frame,
        "action_axis_signs": [*action.translation_sign, *action.rotation_sign],
        "action_translation_scale": action.translation_scale,
        "action_rotation_scale": action.rotation_scale,
        "unnorm_key": action.unnorm_key,
        "gripper_mode": profile.gripper.mode,
        "gripper_inverted": profile.gripper.inverted,
        "gripper_binary": profile.gripper.binary,
        "checkpoint": checkpoint,
        "base_vlm": options.base_vlm or model.base_vlm,
        "device": device,
        "dtype": dtype,
        "cfg_scale": model.cfg_scale,
        "ddim_steps": model.ddim_steps,
        "share_model": options.share_model,
        "ensemble_mode": control.ensemble_mode,
        "ensemble_k": control.ensemble_k,
        "ensemble_alpha": control.ensemble_alpha,
        "spatial_prompt_mode": options.spatial_prompt_mode or model.spatial_prompt_mode,
        "inference_backend": options.inference_backend or model.inference_backend,
        "server_uri": options.server_uri or model.server_uri,
    }


def _policy_remappings(profile: RobotProfile, node: str) -> list[tuple[str, str]]:
    pairs = [
        ("/joint_states", profile.robot.joint_state_topic),
        ("/internvla/joint_command", profile.robot.joint_command_topic),
        ("/internvla/gripper_command", profile.gripper.command_topic),
        ("/internvla/estop", profile.safety.estop_topic),
    ]
    if profile.safety.heartbeat_topic:
        pairs.append(("/internvla/heartbeat", profile.safety.heartbeat_topic))
    return [(f"{node}:{source}", target) for source, target in pairs if source != target]


def _grounding_parameters(
    profile: RobotProfile, options: GraphOptions, checkpoint: str, device: str, dtype: str
) -> dict[str, Any]:
    camera = profile.camera(profile.grounding.camera)
    return {
        "checkpoint": checkpoint,
        "base_vlm": options.base_vlm or profile.model.base_vlm,
        "device": device,
        "dtype": dtype,
        "share_model": options.share_model,
        "kind": profile.grounding.kind,
        "rate_hz": profile.grounding.rate_hz,
        "max_new_tokens": profile.grounding.max_new_tokens,
        "image_transport": "compressed" if camera.compressed else "raw",
    }


def _grounding_remappings(profile: RobotProfile, node: str) -> list[tuple[str, str]]:
    camera = profile.camera(profile.grounding.camera)
    pairs = [("image/compressed" if camera.compressed else "image", camera.topic)]
    if camera.depth_topic:
        pairs.append(("depth/image", camera.depth_topic))
    if camera.info_topic:
        pairs.append(("depth/camera_info", camera.info_topic))
    return [(f"{node}:{source}", target) for source, target in pairs]


def describe_graph(profile: RobotProfile, options: GraphOptions, run_dir: Path) -> list[NodeSpec]:
    """Every process of the graph for ``profile`` under ``options``, in start order."""
    urdf_path = write_robot_description(profile, run_dir)
    checkpoint = resolve_checkpoint(options.checkpoint or profile.model.checkpoint)
    device, dtype = resolve_device(options.device or profile.model.device, profile.model.dtype)
    specs: list[NodeSpec] = []

    cameras = profile.cameras
    if options.replay:
        camera_keys = replay_camera_keys(options)[: len(profile.cameras)]
        cameras = profile.cameras[: len(camera_keys)]
        specs.append(
            NodeSpec(
                name="replay",
                package="internvla_bringup",
                executable="replay_node",
                parameters={
                    "replay": {
                        "dataset_path": options.replay,
                        "episode_index": options.episode,
                        "camera_keys": camera_keys,
                        "camera_topics": [c.topic for c in cameras],
                        "joint_names": list(profile.robot.joint_names),
                        "output_dir": str(run_dir / "replay"),
                    }
                },
                respawn=False,
            )
        )
    elif options.sim:
        if not profile.sim_robot:
            raise GraphArgumentError(f"{profile.source}: robot.sim_robot is empty, so sim:=true has no robot")
        specs.append(
            NodeSpec(
                name="sim_robot",
                package="internvla_bringup",
                executable="sim_robot_node",
                parameters={
                    "sim_robot": {"robot": profile.sim_robot, "seed": options.seed, "task": options.task}
                },
                remappings=tuple(
                    (source, target)
                    for source, target in (
                        ("/joint_command", profile.robot.joint_command_topic),
                        ("/internvla/gripper_command", profile.gripper.command_topic),
                    )
                    if source != target
                ),
            )
        )

    policy = _policy_parameters(profile, options, urdf_path, checkpoint, device, dtype)
    policy["camera_topics"] = [c.topic for c in cameras]
    policy["camera_compressed"] = [c.compressed for c in cameras]
    if options.use_grounding:
        grounding = _grounding_parameters(profile, options, checkpoint, device, dtype)
        if options.share_model:
            specs.append(
                NodeSpec(
                    name="inference",
                    package="internvla_bringup",
                    executable="inference_node",
                    parameters={"grounding": grounding, "policy": policy},
                    remappings=tuple(
                        _grounding_remappings(profile, "grounding") + _policy_remappings(profile, "policy")
                    ),
                )
            )
        else:
            specs.append(
                NodeSpec(
                    name="grounding",
                    package="internvla_grounding",
                    executable="grounding_node",
                    parameters={"grounding": grounding},
                    remappings=tuple(_grounding_remappings(profile, "grounding")),
                )
            )
    if not (options.use_grounding and options.share_model):
        specs.append(
            NodeSpec(
                name="policy",
                package="internvla_policy",
                executable="policy_node",
                parameters={"policy": policy},
                remappings=tuple(_policy_remappings(profile, "policy")),
            )
        )

    specs.append(
        NodeSpec(
            name="robot_state_publisher",
            package="robot_state_publisher",
            executable="robot_state_publisher",
            parameters={"robot_state_publisher": {"robot_description": urdf_path.read_text()}},
            optional=True,
        )
    )
    if options.rviz:
        specs.append(
            NodeSpec(
                name="rviz",
                package="rviz2",
                executable="rviz2",
                optional=True,
                respawn=False,
                arguments=("-d", str(rviz_config()), "-f", profile.robot.base_frame),
            )
        )
    return specs


def replay_camera_keys(options: GraphOptions) -> list[str]:
    """The dataset cameras to replay, in order: as given, or every camera with a video for the episode."""
    if options.replay_cameras:
        return [key.strip() for key in options.replay_cameras.split(",") if key.strip()]
    meta = DatasetMeta(Path(options.replay))
    return [
        key
        for key in meta.camera_keys()
        if meta.video_file(options.episode, meta.resolve(key).column).is_file()
    ]


def parameters_document(spec: NodeSpec) -> dict:
    """ROS 2's ``--params-file`` form, ``{/node: {ros__parameters: ...}}``, per hosted node."""
    return {f"/{node}": {"ros__parameters": dict(parameters)} for node, parameters in spec.parameters.items()}


def write_parameters_file(spec: NodeSpec, directory: Path) -> Path | None:
    """The one parameters file both the runner and launch_ros pass; None when there are no parameters."""
    if not spec.parameters:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{spec.name}.params.yaml"
    path.write_text(yaml.safe_dump(parameters_document(spec), sort_keys=False))
    return path


def rviz_config() -> Path:
    return profile_dir().parent / "rviz" / "internvla.rviz"
