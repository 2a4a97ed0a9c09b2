"""Robot profiles load, and every kind of mistake names the field that is wrong."""

from __future__ import annotations

import copy

import pytest
import yaml

from internvla_bringup.profiles import (
    ProfileError,
    available_profiles,
    load_profile,
    parse_profile,
    profile_dir,
)


@pytest.fixture(scope="module")
def franka_document() -> dict:
    return yaml.safe_load((profile_dir() / "franka.yaml").read_text())


def test_shipped_profiles_load():
    assert {"franka", "widowx", "humanoid"} <= set(available_profiles())
    franka = load_profile("franka")
    assert franka.robot.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert [c.name for c in franka.cameras] == ["scene", "wrist"]
    assert franka.safety.start_enabled is False, "a real arm must start disabled"
    widowx = load_profile("widowx")
    assert len(widowx.robot.joint_names) == 6 and widowx.control.ensemble_k == 7
    humanoid = load_profile("humanoid")
    assert humanoid.robot.joint_names[0] == "left_shoulder_pitch_joint"


def _mutated(document: dict, path: str, value) -> dict:
    document = copy.deepcopy(document)
    *parents, leaf = path.split(".")
    target = document
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return document


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("name", _DELETE, "name: is required"),
        ("robot.joint_names", ["a", "a"], "robot.joint_names: names must be unique"),
        ("robot.joint_names", "panda_joint1", "robot.joint_names: expected a list"),
        ("control.rate_hz", 0, "control.rate_hz: must lie in"),
        ("control.rate_hz", "fast", "control.rate_hz: expected a finite number"),
        ("control.ensemble_mode", "mean", "control.ensemble_mode: expected one of adaptive, newest"),
        ("action.translation_sign", [1, 1], "action.translation_sign: expected a list of 3"),
        ("action.rotation_sign", [1, 2, 1], "action.rotation_sign: each sign must be 1 or -1"),
        ("safety.workspace.max", [0.1, 0.45, 0.7], "safety.workspace.max: every component must exceed min"),
        ("safety.max_translation_per_tick", -0.1, "safety.max_translation_per_tick: must be > 0"),
        ("safety.start_enabled", "no", "safety.start_enabled: expected true or false"),
        ("safety.max_joint_velocity", 1.0, "safety.max_joint_velocity: unknown key"),
        ("model.dtype", "int8", "model.dtype: expected one of"),
        ("model.ddim_steps", 0, "model.ddim_steps: expected an integer in [1, 100]"),
        ("grounding.camera", "left", "grounding.camera: no camera named 'left'"),
        ("cameras.1.encoding", "yuv422", "cameras[1].encoding: expected one of"),
    ],
)
def test_errors_name_the_field(franka_document, path, value, message):
    with pytest.raises(ProfileError) as error:
        parse_profile(_mutated(franka_document, path, value), "franka.yaml")
    assert str(error.value).startswith("franka.yaml: ")
    assert message in str(error.value)


def test_unknown_profile_lists_available():
    with pytest.raises(ProfileError, match=r"available: .*franka"):
        load_profile("ur5")


def test_invalid_yaml_is_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(bad)
