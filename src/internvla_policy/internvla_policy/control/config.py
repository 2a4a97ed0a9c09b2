"""Every policy-node parameter, described once: name, type, default, unit, allowed values.

`PolicyParams` is the typed result; its fields carry the descriptions the node declares as ROS
parameter descriptors, so `ros2 param describe` and the README table come from the same place.
`PolicyParams.from_mapping` validates raw parameter values and raises `ConfigError` naming the
parameter and what to do, never a stack trace. Robot-specific values (joints, frames, cameras,
workspace, checkpoint) have no usable default: the robot profile must set them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from internvla_policy.control.action import FRAMES, ROTATION_FORMATS
from internvla_policy.control.ensembler import MODES as ENSEMBLE_MODES
from internvla_policy.control.instruction import MAX_INSTRUCTION_LENGTH
from internvla_policy.control.kinematics import BACKENDS
from internvla_policy.control.spatial_prompt import MODES as PROMPT_MODES

GRIPPER_MODES = ("fraction", "none")
INFERENCE_BACKENDS = ("local", "remote")
DTYPES = ("float32", "bfloat16", "float16")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


class ConfigError(ValueError):
    """A parameter value the node cannot start with; the message names the parameter."""


def _param(default: Any, kind: str, description: str, **checks: Any) -> Any:
    """A dataclass field with its parameter metadata.

    kind: "bool", "int", "float", "str", "str[]", "bool[]" or "float[]".
    checks: choices (tuple), minimum / maximum (inclusive), positive (bool), required (bool),
    length (exact length of an array).
    """
    return field(default=default, metadata={"kind": kind, "description": description, **checks})


@dataclass(frozen=True)
class PolicyParams:
    # Robot ---------------------------------------------------------------------------------------
    joint_names: tuple[str, ...] = _param(
        (), "str[]", "Controlled arm joints (URDF names), in command order.", required=True
    )
    urdf_path: str = _param(
        "", "str", "Path to the robot's URDF file (kinematics and joint limits).", required=True
    )
    base_frame: str = _param(
        "", "str", "URDF frame the end-effector target and workspace box are expressed in.", required=True
    )
    ee_frame: str = _param("", "str", "URDF frame of the end effector (tool centre point).", required=True)
    camera_topics: tuple[str, ...] = _param(
        (), "str[]", "Camera image topics, in the view order the checkpoint was trained with.", required=True
    )
    camera_compressed: tuple[bool, ...] = _param(
        (),
        "bool[]",
        "Per camera: true = sensor_msgs/CompressedImage (JPEG/PNG), false = sensor_msgs/Image. "
        "Empty = all raw. Raw pixel encodings rgb8, bgr8, rgba8, bgra8, mono8 are read from each message.",
    )
    control_rate_hz: float = _param(
        10.0, "float", "Control ticks per second; one action per tick.", positive=True
    )
    # Input freshness -----------------------------------------------------------------------------
    camera_max_age_s: float = _param(
        0.5, "float", "Hold when a camera's newest frame stamp is older than this (s).", positive=True
    )
    joint_state_max_age_s: float = _param(
        0.25, "float", "Hold when the newest joint state is older than this (s).", positive=True
    )
    instruction_max_age_s: float = _param(
        0.0, "float", "Forget the instruction after this long (s); 0 = keep until replaced.", minimum=0.0
    )
    spatial_prompt_max_age_s: float = _param(
        0.0,
        "float",
        "Ignore a spatial prompt older than this (s); 0 = valid until the instruction changes.",
        minimum=0.0,
    )
    future_stamp_tolerance_s: float = _param(
        0.1,
        "float",
        "Refuse camera frames and joint states stamped further than this ahead of the node's clock (s).",
        minimum=0.0,
    )
    heartbeat_timeout_s: float = _param(
        0.0,
        "float",
        "Deadman: command only while a true heartbeat arrived within this time (s); 0 = off.",
        minimum=0.0,
    )
    start_enabled: bool = _param(
        False, "bool", "Command from start; real robots: false (enable via ~/enable)."
    )
    max_instruction_length: int = _param(
        MAX_INSTRUCTION_LENGTH,
        "int",
        "Longer instructions are refused and the robot holds until a valid one (characters).",
        positive=True,
    )
    # Action space --------------------------------------------------------------------------------
    action_frame: str = _param(
        "base",
        "str",
        "Frame of the delta: 'base' (robot base axes) or 'ee' (current end-effector axes).",
        choices=FRAMES,
    )
    action_rotation_format: str = _param(
        "rpy",
        "str",
        "Rotation delta: 'rpy' (roll-pitch-yaw about fixed X, Y, Z) or 'rotvec' (axis-angle).",
        choices=ROTATION_FORMATS,
    )
    action_axis_signs: tuple[float, ...] = _param(
        (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
        "float[]",
        "Sign (+1/-1) per delta axis dx, dy, dz, droll, dpitch, dyaw.",
        length=6,
    )
    action_translation_scale: float = _param(
        1.0, "float", "Multiplier on the translation delta.", positive=True
    )
    action_rotation_scale: float = _param(1.0, "float", "Multiplier on the rotation delta.", positive=True)
    unnorm_key: str = _param(
        "", "str", "Dataset key of the action statistics; empty = the checkpoint's only key."
    )
    # Gripper -------------------------------------------------------------------------------------
    gripper_mode: str = _param(
        "fraction",
        "str",
        "'fraction': std_msgs/Float64 opening in [0, 1] (1 = open) on "
        "/internvla/gripper_command; 'none': no gripper command.",
        choices=GRIPPER_MODES,
    )
    gripper_inverted: bool = _param(False, "bool", "The model's gripper value means closed (1 = closed).")
    gripper_binary: bool = _param(True, "bool", "Threshold the gripper at 0.5 (released behaviour).")
    # Safety --------------------------------------------------------------------------------------
    workspace_min: tuple[float, ...] = _param(
        (), "float[]", "Workspace box lower corner x, y, z in base_frame (m).", required=True, length=3
    )
    workspace_max: tuple[float, ...] = _param(
        (), "float[]", "Workspace box upper corner x, y, z in base_frame (m).", required=True, length=3
    )
    max_translation_per_tick_m: float = _param(
        0.02, "float", "Largest end-effector move per tick (m).", positive=True
    )
    max_rotation_per_tick_rad: float = _param(
        0.1, "float", "Largest end-effector rotation per tick (rad).", positive=True
    )
    joint_position_margin_rad: float = _param(
        0.01, "float", "Keep joint commands this far inside the URDF position limits (rad or m).", minimum=0.0
    )
    joint_limit_tolerance_rad: float = _param(
        0.05,
        "float",
        "A joint measured further than this outside its URDF position limits is a fault: hold (rad or m).",
        minimum=0.0,
    )
    workspace_tolerance_m: float = _param(
        0.05,
        "float",
        "An end effector measured further than this outside the workspace box is a fault: hold (m).",
        minimum=0.0,
    )
    joint_velocity_scale: float = _param(
        0.5, "float", "Fraction of the URDF velocity limits a command may use.", positive=True, maximum=1.0
    )
    # Kinematics ----------------------------------------------------------------------------------
    kinematics_backend: str = _param(
        "pinocchio",
        "str",
        "'pinocchio' (default) or 'moveit' (needs moveit_py and moveit_group).",
        choices=BACKENDS,
    )
    moveit_group: str = _param("", "str", "MoveIt planning group (kinematics_backend 'moveit').")
    ik_max_iterations: int = _param(
        200, "int", "Damped least squares iterations per IK query.", positive=True
    )
    ik_damping: float = _param(0.01, "float", "Damped least squares damping (lambda).", positive=True)
    # Model ---------------------------------------------------------------------------------------
    checkpoint: str = _param(
        "", "str", "Run folder, .pt or .safetensors of an InternVLA-M1 checkpoint.", required=True
    )
    base_vlm: str = _param("", "str", "Qwen2.5-VL folder; empty = the path in the checkpoint's config.")
    device: str = _param("cpu", "str", "Torch device: 'cpu', 'cuda' or 'cuda:N'.")
    dtype: str = _param("float32", "str", "Weights dtype.", choices=DTYPES)
    cfg_scale: float = _param(
        1.5, "float", "Classifier-free guidance scale; <= 1 disables guidance.", minimum=0.0
    )
    ddim_steps: int = _param(10, "int", "DDIM sampling steps per chunk.", positive=True)
    seed: int = _param(-1, "int", "Noise seed for every chunk; -1 = fresh noise each time.", minimum=-1)
    torch_threads: int = _param(
        0,
        "int",
        "Torch CPU threads (process-wide); 0 = all cores but one, kept for the control timer.",
        minimum=0,
    )
    share_model: bool = _param(
        True, "bool", "Share one loaded model with other nodes of this process (same checkpoint and device)."
    )
    inference_backend: str = _param(
        "local",
        "str",
        "'local': load the checkpoint in this process; 'remote': ask the inference server at server_uri "
        "(internvla-m1 serve) and load nothing here.",
        choices=INFERENCE_BACKENDS,
    )
    server_uri: str = _param(
        "ws://127.0.0.1:10093",
        "str",
        "Inference server for inference_backend 'remote' (ws:// or wss://); its token, if it needs one, "
        "comes from the environment variable INTERNVLA_M1_TOKEN, never from a parameter.",
    )
    server_timeout_s: float = _param(
        1.0,
        "float",
        "Remote backend: a server silent this long (keepalive unanswered) counts as gone and the robot "
        "holds until it is back; a closed connection holds at once (s).",
        positive=True,
    )
    # Action selection ----------------------------------------------------------------------------
    ensemble_mode: str = _param(
        "adaptive",
        "str",
        "'adaptive' (CogACT ensembler over the last K chunks) or 'newest' (newest chunk).",
        choices=ENSEMBLE_MODES,
    )
    ensemble_k: int = _param(2, "int", "Chunks kept for the adaptive ensemble (K).", positive=True)
    ensemble_alpha: float = _param(0.1, "float", "Adaptive ensemble sharpness (alpha).")
    spatial_prompt_mode: str = _param(
        "latent",
        "str",
        "'latent', 'text', 'overlay' or 'off' (see the policy node README).",
        choices=PROMPT_MODES,
    )
    status_rate_hz: float = _param(
        2.0, "float", "PolicyStatus publish rate (also sent on state changes).", positive=True
    )

    @classmethod
    def specs(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PolicyParams:
        """Validate raw parameter values (missing names take their defaults)."""
        parsed = {f.name: _convert(f, values.get(f.name, f.default)) for f in cls.specs()}
        params = cls(**parsed)
        params._check_consistency()
        return params

    def _check_consistency(self) -> None:
        if self.camera_compressed and len(self.camera_compressed) != len(self.camera_topics):
            raise ConfigError(
                f"camera_compressed has {len(self.camera_compressed)} entries but camera_topics has "
                f"{len(self.camera_topics)}: give one flag per camera, or none for all raw"
            )
        if len(set(self.camera_topics)) != len(self.camera_topics):
            raise ConfigError(f"camera_topics has duplicates: {list(self.camera_topics)}")
        if any(lo >= hi for lo, hi in zip(self.workspace_min, self.workspace_max, strict=True)):
            raise ConfigError(
                f"workspace_min {list(self.workspace_min)} must be below workspace_max "
                f"{list(self.workspace_max)} on every axis"
            )
        if any(abs(abs(s) - 1.0) > 1e-9 for s in self.action_axis_signs):
            raise ConfigError(f"action_axis_signs must be +1 or -1 each, got {list(self.action_axis_signs)}")
        if not _DEVICE.match(self.device):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.inference_backend == "remote" and not self.server_uri.startswith(("ws://", "wss://")):
            raise ConfigError(f"server_uri must start with ws:// or wss://, got {self.server_uri!r}")
        if self.kinematics_backend == "moveit" and not self.moveit_group:
            raise ConfigError("kinematics_backend 'moveit' needs moveit_group (the MoveIt planning group)")

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def camera_is_compressed(self) -> tuple[bool, ...]:
        return self.camera_compressed or (False,) * len(self.camera_topics)


def _convert(f: dataclasses.Field, raw: Any) -> Any:
    kind, meta, name = f.metadata["kind"], f.metadata, f.name
    try:
        value = _as_kind(kind, raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"parameter '{name}': expected {kind}, got {raw!r} ({meta['description']})"
        ) from None
    if meta.get("required") and value in ("", ()):
        raise ConfigError(
            f"parameter '{name}' is required: {meta['description']} Set it in the robot profile."
        )
    if "length" in meta and value != () and len(value) != meta["length"]:
        raise ConfigError(f"parameter '{name}': expected {meta['length']} values, got {len(value)}")
    for item in value if isinstance(value, tuple) else (value,):
        _check_bounds(name, item, meta)
    return value


def _check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"parameter '{name}' must be finite, got {value}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"parameter '{name}' must be one of {list(meta['choices'])}, got {value!r}")
    if meta.get("positive") and value <= 0:
        raise ConfigError(f"parameter '{name}' must be > 0, got {value}")
    if "minimum" in meta and value < meta["minimum"]:
        raise ConfigError(f"parameter '{name}' must be >= {meta['minimum']}, got {value}")
    if "maximum" in meta and value > meta["maximum"]:
        raise ConfigError(f"parameter '{name}' must be <= {meta['maximum']}, got {value}")


def _as_kind(kind: str, raw: Any) -> Any:
    """Coerce a ROS parameter value: ints are accepted for floats (YAML `10` for 10.0), nothing else."""
    scalar = kind.removesuffix("[]")
    if kind.endswith("[]"):
        if isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__"):
            raise TypeError(kind)
        return tuple(_as_scalar(scalar, item) for item in raw)
    return _as_scalar(scalar, raw)


def _as_scalar(kind: str, raw: Any) -> Any:
    if kind == "bool" and isinstance(raw, bool):
        return raw
    if kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind == "float" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if kind == "str" and isinstance(raw, str):
        return raw.strip()
    raise TypeError(kind)
