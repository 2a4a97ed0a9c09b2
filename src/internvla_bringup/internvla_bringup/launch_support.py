"""Turn the shared graph description into a launch_ros LaunchDescription.

Only real ROS 2 installs have ``launch`` and ``launch_ros``; the imports stay inside the
functions so the rest of the package (and the test that compares launch files with the
runner) works where only the PyPI wheels exist.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from internvla_bringup.dds import dds_environment
from internvla_bringup.graph import (
    LAUNCH_ARGUMENTS,
    GraphOptions,
    NodeSpec,
    describe_graph,
    write_parameters_file,
)
from internvla_bringup.profiles import load_profile


def node_action_arguments(spec: NodeSpec, params_dir: Path) -> dict:
    """The keyword arguments of ``launch_ros.actions.Node`` for one process of the graph.

    Parameters go through a file in ROS 2's ``{node: {ros__parameters}}`` form, as the runner
    passes them, so a process hosting two nodes gives each its own parameters.
    """
    arguments: dict = {
        "package": spec.package,
        "executable": spec.executable,
        "remappings": list(spec.remappings),
        "arguments": list(spec.arguments),
        "respawn": spec.respawn,
        "output": "screen",
    }
    if len(spec.parameters) == 1:
        arguments["name"] = next(iter(spec.parameters))
    params_file = write_parameters_file(spec, params_dir)
    if params_file is not None:
        arguments["parameters"] = [str(params_file)]
    return arguments


def _nodes(context, robot: str) -> list:
    """The graph's environment settings, then its nodes (launch runs them in this order)."""
    from launch.actions import SetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS}
    run_dir = Path(values["run_dir"] or tempfile.mkdtemp(prefix=f"internvla-{robot}-"))
    values["run_dir"] = str(run_dir)
    specs = describe_graph(load_profile(robot), GraphOptions.from_arguments(values), run_dir)
    current = getattr(context, "environment", os.environ)  # launch before Humble edits os.environ itself
    environment = [SetEnvironmentVariable(k, v) for k, v in dds_environment(current).items()]
    return [*environment, *(Node(**node_action_arguments(spec, run_dir)) for spec in specs)]


def generate_launch_description(robot: str):
    """The LaunchDescription of ``<robot>.launch.py``: its arguments, then the described graph."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
        for a in LAUNCH_ARGUMENTS
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes, args=[robot])])
