"""Starting the node: parameter errors name the parameter; share_model decides who holds the model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import rclpy
from rclpy.parameter import Parameter

from internvla_grounding.ros.grounding_node import GroundingNode
from internvla_policy.model import load_model_cached


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ([], "parameter 'checkpoint': not set"),
        (["checkpoint:=/nonexistent/run"], "parameter 'checkpoint': /nonexistent/run does not exist"),
        (["checkpoint:=/tmp", "rate_hz:=-2.0"], "parameter 'rate_hz': must be >= 0.0, got -2.0"),
        (
            ["checkpoint:=/tmp", "kind:=polygon"],
            "parameter 'kind': 'polygon' is not one of box, point, trace",
        ),
    ],
)
def test_a_bad_parameter_stops_the_node_with_exit_status_2_and_its_name(parameters, message):
    command = [sys.executable, "-m", "internvla_grounding.ros.grounding_node", "--ros-args"]
    for parameter in parameters:
        command += ["-p", parameter]
    env = {**os.environ, "RCUTILS_COLORIZED_OUTPUT": "0"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("share_model", [True, False])
def test_share_model_uses_the_process_wide_cache_or_a_private_copy(tiny_run, share_model):
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = GroundingNode(
            context=context,
            parameter_overrides=[
                Parameter("checkpoint", value=str(tiny_run)),
                Parameter("share_model", value=share_model),
            ],
        )
        try:
            assert node.worker.ready.wait(60) and node.worker.setup_error is None
            shared = load_model_cached(tiny_run)
            assert (node.model is shared) is share_model
        finally:
            node.worker.stop()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
