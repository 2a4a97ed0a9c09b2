"""Policy node parameters: declared with descriptors, validated at start, and documented."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.parameter import Parameter

from internvla_policy.control.config import ConfigError, PolicyParams
from internvla_policy.control.state import PolicyState
from internvla_policy.ros import policy_node
from internvla_policy.ros.policy_node import PolicyNode

sys.path.insert(0, str(Path(__file__).parents[1] / "control"))
from policy_panda import profile_values


def overrides(**values) -> list[Parameter]:
    profile = profile_values(
        **{"checkpoint": "/nonexistent/run", "camera_topics": ["/camera/image"], **values}
    )
    return [Parameter(name, value=value) for name, value in profile.items()]


@pytest.fixture
def ros_context():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_the_node_docstring_lists_every_parameter():
    missing = [spec.name for spec in PolicyParams.specs() if spec.name not in policy_node.__doc__]
    assert missing == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"control_rate_hz": "fast"}, "parameter 'control_rate_hz': expected float"),
        ({"checkpoint": ""}, "parameter 'checkpoint' is required"),
        ({"ee_frame": "panda_gripper_tip"}, "frame 'panda_gripper_tip' is not in the URDF"),
        ({"urdf_path": "/nonexistent/robot.urdf"}, "urdf_path.*not found"),
    ],
)
def test_bad_values_stop_the_node_with_a_named_error(ros_context, values, message):
    with pytest.raises(ConfigError, match=message):
        PolicyNode(parameter_overrides=overrides(**values))


def test_parameters_are_described_read_only_and_a_missing_model_is_an_error_state(ros_context):
    node = PolicyNode(parameter_overrides=overrides(control_rate_hz=20))
    try:
        (descriptor,) = node.describe_parameters(["control_rate_hz"])
        assert descriptor.read_only and "Control ticks per second" in descriptor.description
        assert node.params.control_rate_hz == 20.0
        deadline = time.monotonic() + 60.0
        while (result := node.controller.tick(time.time())).state is PolicyState.STARTING:
            assert time.monotonic() < deadline, "the model load never finished"
            time.sleep(0.05)
        assert result.state is PolicyState.ERROR and "model could not be loaded" in result.detail
        assert result.command is None
    finally:
        node.shutdown()
        node.destroy_node()
