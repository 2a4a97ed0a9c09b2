"""Robot profiles: everything robot-specific the graph needs, read from YAML and checked at load.

A profile is the one place a user edits to bring a new arm up, so a mistake in it must be
reported as the field that is wrong and what was expected, before any node starts, rather
than as a stack trace from deep inside a node minutes later.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

CONFIG_DIR_ENV = "INTERNVLA_PROFILE_DIR"
ACTION_FRAMES = ("base", "ee")
SPATIAL_PROMPT_MODES = ("latent", "text", "overlay", "off")
INFERENCE_BACKENDS = ("local", "remote")
DEFAULT_SERVER_URI = "ws://127.0.0.1:10093"  # internvla-m1 serve's default
ENSEMBLE_MODES = ("adaptive", "newest")
GROUNDING_KINDS = ("box", "point", "trace")
GRIPPER_MODES = ("fraction", "none")
ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


_REQUIRED = object()


class ProfileError(ValueError):
    """A profile field is missing or invalid; the message names the file and the field."""


class _Fields:
    """Typed access to one mapping of the YAML document, tracking the path for error messages."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ProfileError(
                f"{source}: {path or 'the document'}: expected a mapping, got {type(data).__name__}"
            )
        self._data = data
        self._path = path
        self._source = source
        self._read: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def fail(self, key: str, message: str) -> ProfileError:
        return ProfileError(f"{self._source}: {self._where(key)}: {message}")

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        if key in self._data:
            return self._data[key]
        if default is _REQUIRED:
            raise self.fail(key, "is required")
        return default

    def section(self, key: str, required: bool = True) -> _Fields:
        value = self._get(key, _REQUIRED if required else {})
        return _Fields(value, self._where(key), self._source)

    def text(self, key: str, default: Any = None, choices: tuple[str, ...] = ()) -> str:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {value!r}")
        if choices and value not in choices:
            raise self.fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def number(
        self,
        key: str,
        default: float | None = None,
        low: float = -math.inf,
        high: float = math.inf,
        strictly_positive: bool = False,
    ) -> float:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        if strictly_positive and value <= 0:
            raise self.fail(key, f"must be > 0, got {value}")
        if not low <= value <= high:
            raise self.fail(key, f"must lie in [{low}, {high}], got {value}")
        return float(value)

    def integer(self, key: str, default: int | None = None, low: int = 0, high: int = 2**31) -> int:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"expected an integer in [{low}, {high}], got {value!r}")
        return value

    def flag(self, key: str, default: bool | None = None) -> bool:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def vector(self, key: str, length: int, default: list[float] | None = None) -> tuple[float, ...]:
        value = self._get(key, _REQUIRED if default is None else default)
        if (
            not isinstance(value, list)
            or len(value) != length
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
            )
        ):
            raise self.fail(key, f"expected a list of {length} finite numbers, got {value!r}")
        return tuple(float(v) for v in value)

    def names(self, key: str, default: list[str] | None = None) -> tuple[str, ...]:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"expected a list of non-empty strings, got {value!r}")
        if len(set(value)) != len(value):
            raise self.fail(key, f"names must be unique, got {value!r}")
        return tuple(value)

    def items(self, key: str) -> list[_Fields]:
        value = self._get(key, _REQUIRED)
        if not isinstance(value, list) or not value:
            raise self.fail(key, "expected a non-empty list")
        return [_Fields(item, f"{self._where(key)}[{i}]", self._source) for i, item in enumerate(value)]

    def done(self) -> None:
        """Reject keys nobody read: a misspelt key must not silently fall back to a default."""
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            raise self.fail(unknown[0], f"unknown key (known here: {', '.join(sorted(self._read))})")


@dataclass(frozen=True)
class Camera:
    """One camera the policy reads, in the order the model sees the views."""

    name: str
    topic: str
    encoding: str
    compressed: bool
    depth_topic: str
    info_topic: str


@dataclass(frozen=True)
class RobotSection:
    """The arm: its description, the joints the policy drives, frames and command topics."""

    description: str
    joint_names: tuple[str, ...]
    base_frame: str
    ee_frame: str
    joint_state_topic: str
    joint_command_topic: str


@dataclass(frozen=True)
class ActionSection:
    """How the model's 7-D delta end-effector action maps onto this robot.

    ``frame`` says whether translations/rotations are expressed in the base frame or the
    current end-effector frame; the signs flip axes whose convention differs between the
    robot the checkpoint was trained on and this one.
    """

    unnorm_key: str
    frame: str
    translation_sign: tuple[float, ...]
    rotation_sign: tuple[float, ...]
    translation_scale: float
    rotation_scale: float


@dataclass(frozen=True)
class GripperSection:
    """Gripper command: an opening fraction published as std_msgs/Float64 (1 = open).

    ``inverted`` publishes 1 - opening for drivers that take a closing fraction; ``binary``
    sends only fully open or closed, as the released models were trained on.
    """

    command_topic: str
    mode: str
    inverted: bool
    binary: bool


@dataclass(frozen=True)
class SafetySection:
    """Limits enforced by the policy node before any command leaves it (REP-103 units)."""

    workspace_min: tuple[float, ...]
    workspace_max: tuple[float, ...]
    max_translation_per_tick: float
    max_rotation_per_tick: float
    joint_velocity_scale: float
    joint_limit_tolerance: float
    workspace_tolerance: float
    max_camera_age: float
    max_future_stamp: float
    max_joint_state_age: float
    max_spatial_prompt_age: float
    start_enabled: bool
    estop_topic: str
    heartbeat_topic: str
    max_heartbeat_age: float


@dataclass(frozen=True)
class ModelSection:
    """Which checkpoint to run and how to sample it."""

    checkpoint: str
    base_vlm: str
    device: str
    dtype: str
    cfg_scale: float
    ddim_steps: int
    spatial_prompt_mode: str
    inference_backend: str
    """'local' (the policy loads the checkpoint) or 'remote' (it asks the server at server_uri)."""
    server_uri: str


@dataclass(frozen=True)
class ControlSection:
    rate_hz: float
    ensemble_mode: str
    ensemble_k: int
    ensemble_alpha: float


@dataclass(frozen=True)
class GroundingSection:
    camera: str
    kind: str
    rate_hz: float
    max_new_tokens: int


@dataclass(frozen=True)
class RobotProfile:
    """A validated robot profile (see config/*.yaml for the documented fields)."""

    name: str
    source: Path
    robot: RobotSection
    cameras: tuple[Camera, ...]
    control: ControlSection
    action: ActionSection
    gripper: GripperSection
    safety: SafetySection
    model: ModelSection
    grounding: GroundingSection
    sim_robot: str

    def camera(self, name: str) -> Camera:
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise KeyError(name)


def _cameras(fields: _Fields) -> tuple[Camera, ...]:
    cameras = []
    for item in fields.items("cameras"):
        name = item.text("name")
        cameras.append(
            Camera(
                name=name,
                topic=item.text("topic"),
                encoding=item.text("encoding", "rgb8", ENCODINGS),
                compressed=item.flag("compressed", False),
                depth_topic=item.text("depth_topic", ""),
                info_topic=item.text("info_topic", ""),
            )
        )
        item.done()
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise fields.fail("cameras", f"camera names must be unique, got {names}")
    return tuple(cameras)


def parse_profile(document: Any, source: str = "<profile>") -> RobotProfile:
    """Validate a loaded YAML document; raises ProfileError naming the first bad field."""
    top = _Fields(document, "", source)
    name = top.text("name")

    robot = top.section("robot")
    robot_section = RobotSection(
        description=robot.text("description"),
        joint_names=robot.names("joint_names"),
        base_frame=robot.text("base_frame"),
        ee_frame=robot.text("ee_frame"),
        joint_state_topic=robot.text("joint_state_topic", "/joint_states"),
        joint_command_topic=robot.text("joint_command_topic", "/joint_command"),
    )
    sim_robot = robot.text("sim_robot", "")
    robot.done()

    cameras = _cameras(top)

    control = top.section("control")
    control_section = ControlSection(
        rate_hz=control.number("rate_hz", low=0.5, high=1000.0),
        ensemble_mode=control.text("ensemble_mode", "adaptive", ENSEMBLE_MODES),
        ensemble_k=control.integer("ensemble_k", 2, low=1, high=64),
        ensemble_alpha=control.number("ensemble_alpha", 0.1, low=0.0, high=100.0),
    )
    control.done()

    action = top.section("action")
    action_section = ActionSection(
        unnorm_key=action.text("unnorm_key"),
        frame=action.text("frame", "base", ACTION_FRAMES),
        translation_sign=action.vector("translation_sign", 3, [1, 1, 1]),
        rotation_sign=action.vector("rotation_sign", 3, [1, 1, 1]),
        translation_scale=action.number("translation_scale", 1.0, strictly_positive=True),
        rotation_scale=action.number("rotation_scale", 1.0, strictly_positive=True),
    )
    for key, signs in (
        ("translation_sign", action_section.translation_sign),
        ("rotation_sign", action_section.rotation_sign),
    ):
        if any(s not in (-1.0, 1.0) for s in signs):
            raise action.fail(key, f"each sign must be 1 or -1, got {list(signs)}")
    action.done()

    gripper = top.section("gripper")
    gripper_section = GripperSection(
        command_topic=gripper.text("command_topic", "/internvla/gripper_command"),
        mode=gripper.text("mode", "fraction", GRIPPER_MODES),
        inverted=gripper.flag("inverted", False),
        binary=gripper.flag("binary", True),
    )
    gripper.done()

    safety = top.section("safety")
    workspace = safety.section("workspace")
    workspace_min, workspace_max = workspace.vector("min", 3), workspace.vector("max", 3)
    if any(lo >= hi for lo, hi in zip(workspace_min, workspace_max, strict=True)):
        raise workspace.fail(
            "max", f"every component must exceed min {list(workspace_min)}, got {list(workspace_max)}"
        )
    workspace.done()
    safety_section = SafetySection(
        workspace_min=workspace_min,
        workspace_max=workspace_max,
        max_translation_per_tick=safety.number("max_translation_per_tick", strictly_positive=True, high=0.5),
        max_rotation_per_tick=safety.number("max_rotation_per_tick", strictly_positive=True, high=math.pi),
        joint_velocity_scale=safety.number("joint_velocity_scale", 0.5, strictly_positive=True, high=1.0),
        joint_limit_tolerance=safety.number("joint_limit_tolerance", 0.05, low=0.0, high=0.5),
        workspace_tolerance=safety.number("workspace_tolerance", 0.05, low=0.0, high=0.5),
        max_camera_age=safety.number("max_camera_age", 0.5, strictly_positive=True),
        max_future_stamp=safety.number("max_future_stamp", 0.1, low=0.0, high=5.0),
        max_joint_state_age=safety.number("max_joint_state_age", 0.25, strictly_positive=True),
        max_spatial_prompt_age=safety.number("max_spatial_prompt_age", 10.0, strictly_positive=True),
        start_enabled=safety.flag("start_enabled", False),
        estop_topic=safety.text("estop_topic", "/internvla/estop"),
        heartbeat_topic=safety.text("heartbeat_topic", ""),
        max_heartbeat_age=safety.number("max_heartbeat_age", 0.5, strictly_positive=True),
    )
    safety.done()

    model = top.section("model")
    model_section = ModelSection(
        checkpoint=model.text("checkpoint", "builtin"),
        base_vlm=model.text("base_vlm", ""),
        device=model.text("device", "auto"),
        dtype=model.text("dtype", "auto", ("auto", "float32", "bfloat16", "float16")),
        cfg_scale=model.number("cfg_scale", 1.5, low=0.0, high=20.0),
        ddim_steps=model.integer("ddim_steps", 10, low=1, high=100),
        spatial_prompt_mode=model.text("spatial_prompt_mode", "latent", SPATIAL_PROMPT_MODES),
        inference_backend=model.text("inference_backend", "local", INFERENCE_BACKENDS),
        server_uri=model.text("server_uri", DEFAULT_SERVER_URI),
    )
    model.done()

    grounding = top.section("grounding")
    grounding_section = GroundingSection(
        camera=grounding.text("camera", cameras[0].name),
        kind=grounding.text("kind", "box", GROUNDING_KINDS),
        rate_hz=grounding.number("rate_hz", 0.5, strictly_positive=True, high=30.0),
        max_new_tokens=grounding.integer("max_new_tokens", 128, low=8, high=2048),
    )
    if grounding_section.camera not in [c.name for c in cameras]:
        raise grounding.fail("camera", f"no camera named {grounding_section.camera!r} in cameras")
    grounding.done()
    top.done()

    return RobotProfile(
        name=name,
        source=Path(source),
        robot=robot_section,
        cameras=cameras,
        control=control_section,
        action=action_section,
        gripper=gripper_section,
        safety=safety_section,
        model=model_section,
        grounding=grounding_section,
        sim_robot=sim_robot,
    )


def profile_dir() -> Path:
    """Profiles live in the package's share folder once installed, beside this file in a checkout."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    try:
        return Path(get_package_share_directory("internvla_bringup")) / "config"
    except PackageNotFoundError:
        return Path(__file__).resolve().parents[1] / "config"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in profile_dir().glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> RobotProfile:
    """Load a profile by name (``franka``) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = profile_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ProfileError(
                f"no robot profile named {name_or_path!r}; available: {', '.join(available_profiles())} "
                f"(or pass a path to a .yaml file)"
            )
    if not path.is_file():
        raise ProfileError(f"profile file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: not valid YAML: {error}") from None
    return parse_profile(document, str(path))
