"""A node's spin loop ends quietly when the process is stopped, and only then."""

import pytest
import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException

from internvla_policy.ros.shutdown import interruptible


@pytest.fixture
def context():
    context = Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


@pytest.mark.parametrize("error", [KeyboardInterrupt, ExternalShutdownException])
def test_stop_signals_are_swallowed(context, error):
    with interruptible(context):
        raise error()


def test_rcl_error_after_shutdown_is_a_stop(context):
    rclpy.shutdown(context=context)
    with interruptible(context):
        raise RCLError("Failed to publish: publisher's context is invalid")


def test_rcl_error_while_running_is_raised(context):
    with pytest.raises(RCLError, match="invalid"), interruptible(context):
        raise RCLError("publisher is invalid")


def test_other_errors_are_raised(context):
    with pytest.raises(ValueError, match="a bug"), interruptible(context):
        raise ValueError("a bug")
