"""Grounding and policy nodes in one process, sharing one loaded model.

With ``share_model`` both nodes ask the model core's process-wide cache for the same
checkpoint, so the weights are loaded and held once: on a robot computer with one GPU this
halves memory and start-up time. Each node keeps its own parameters and callbacks; one
multi-threaded executor serves both, while inference runs on the nodes' own worker threads.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.logging import get_logger

from internvla_grounding.ros.grounding_node import GroundingNode
from internvla_grounding.settings import SettingsError
from internvla_policy.control.config import ConfigError
from internvla_policy.ros.policy_node import PolicyNode
from internvla_policy.ros.shutdown import interruptible

GROUNDING_NAME = "grounding"
POLICY_NAME = "policy"


def main(args: list[str] | None = None) -> int:
    """Run both nodes until Ctrl-C; 2 when either rejects its parameters."""
    with rclpy.init(args=args):
        try:
            grounding = GroundingNode(node_name=GROUNDING_NAME)
            policy = PolicyNode(node_name=POLICY_NAME)
        except (SettingsError, ConfigError) as error:
            get_logger("inference").fatal(f"cannot start: {error}")
            return 2
        executor = MultiThreadedExecutor(num_threads=6)
        executor.add_node(grounding)
        executor.add_node(policy)
        try:
            with interruptible():
                executor.spin()
        finally:
            policy.shutdown()
            grounding.worker.stop()
            executor.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
