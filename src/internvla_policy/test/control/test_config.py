"""Parameter validation: defaults, coercion, and errors that name the parameter."""

from __future__ import annotations

import pytest

from internvla_policy.control.config import ConfigError, PolicyParams

PROFILE = {
    "joint_names": ["panda_joint1", "panda_joint2"],
    "urdf_path": "/robots/panda.urdf",
    "base_frame": "panda_link0",
    "ee_frame": "panda_hand_tcp",
    "camera_topics": ["/scene/image", "/wrist/image/compressed"],
    "workspace_min": [0.2, -0.5, 0.0],
    "workspace_max": [0.8, 0.5, 0.9],
    "checkpoint": "/models/run",
}


def test_profile_values_and_defaults():
    params = PolicyParams.from_mapping(PROFILE)
    assert params.joint_names == ("panda_joint1", "panda_joint2")
    assert params.control_period_s == pytest.approx(0.1)
    assert params.camera_is_compressed == (False, False)
    assert params.start_enabled is False and params.ensemble_mode == "adaptive"


def test_integers_are_accepted_for_doubles():
    params = PolicyParams.from_mapping({**PROFILE, "control_rate_hz": 15, "workspace_min": [0, -1, 0]})
    assert params.control_rate_hz == 15.0 and isinstance(params.control_rate_hz, float)
    assert params.workspace_min == (0.0, -1.0, 0.0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"checkpoint": ""}, "'checkpoint' is required"),
        ({"camera_topics": []}, "'camera_topics' is required"),
        ({"control_rate_hz": "fast"}, "'control_rate_hz': expected float"),
        ({"control_rate_hz": 0}, "'control_rate_hz' must be > 0"),
        ({"start_enabled": 1}, "'start_enabled': expected bool"),
        ({"ddim_steps": 2.5}, "'ddim_steps': expected int"),
        ({"joint_velocity_scale": 1.5}, "'joint_velocity_scale' must be <= 1.0"),
        ({"seed": -2}, "'seed' must be >= -1"),
        ({"spatial_prompt_mode": "image"}, "'spatial_prompt_mode' must be one of"),
        ({"action_axis_signs": [1, 1, 1]}, "'action_axis_signs': expected 6 values"),
        ({"action_axis_signs": [1, 1, 1, 1, 1, 0.5]}, "action_axis_signs must be"),
        ({"workspace_max": [0.8, 0.5, float("nan")]}, "'workspace_max' must be finite"),
        ({"workspace_max": [0.1, 0.5, 0.9]}, "workspace_min .* must be below workspace_max"),
        ({"camera_compressed": [True]}, "camera_compressed has 1 entries"),
        ({"camera_topics": ["/a", "/a"]}, "camera_topics has duplicates"),
        ({"device": "gpu"}, "device must be"),
        ({"kinematics_backend": "moveit"}, "needs moveit_group"),
    ],
)
def test_bad_values_name_the_parameter(override, message):
    with pytest.raises(ConfigError, match=message):
        PolicyParams.from_mapping({**PROFILE, **override})


def test_every_parameter_is_described():
    for spec in PolicyParams.specs():
        assert spec.metadata["description"].strip(), spec.name
        assert spec.metadata["kind"] in {"bool", "int", "float", "str", "str[]", "bool[]", "float[]"}
