"""The launch files and the pip-only runner start the same graph from the one description."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from internvla_bringup.graph import (
    LAUNCH_ARGUMENTS,
    GraphArgumentError,
    GraphOptions,
    describe_graph,
    write_parameters_file,
)
from internvla_bringup.launch_support import node_action_arguments
from internvla_bringup.profiles import load_profile, profile_dir
from internvla_bringup.runner import command_line, executable_path

LAUNCH_DIR = profile_dir().parent / "launch"
ROBOTS = ("franka", "widowx", "humanoid")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    # An explicit path keeps these tests off the model: describing a graph never loads it.
    return str(tmp_path_factory.mktemp("run"))


def _options(checkpoint: str, **values: str) -> GraphOptions:
    return GraphOptions.from_arguments({"checkpoint": checkpoint, "device": "cpu", **values})


def test_sim_graph_shares_one_inference_process(tmp_path, checkpoint):
    specs = describe_graph(load_profile("franka"), _options(checkpoint), tmp_path)
    assert [s.name for s in specs] == ["sim_robot", "inference", "robot_state_publisher", "rviz"]
    inference = specs[1]
    assert set(inference.parameters) == {"grounding", "policy"}
    policy = inference.parameters["policy"]
    assert policy["joint_names"] == [f"panda_joint{i}" for i in range(1, 8)]
    assert policy["camera_topics"] == ["/scene_camera/image_raw", "/wrist_camera/image_raw"]
    assert policy["start_enabled"] is True, "the simulated robot starts enabled"
    assert policy["checkpoint"] == inference.parameters["grounding"]["checkpoint"] == checkpoint
    assert Path(policy["urdf_path"]).read_text().startswith("<")
    assert ("grounding:image", "/scene_camera/image_raw") in inference.remappings
    assert ("policy:/internvla/joint_command", "/joint_command") in inference.remappings
    assert specs[0].parameters["sim_robot"]["robot"] == "franka"
    assert all(s.optional for s in specs[2:]), "rviz and robot_state_publisher are optional"


def test_real_robot_graph_starts_disabled(tmp_path, checkpoint):
    specs = describe_graph(load_profile("franka"), _options(checkpoint, sim="false", rviz="false"), tmp_path)
    assert [s.name for s in specs] == ["inference", "robot_state_publisher"]
    assert specs[0].parameters["policy"]["start_enabled"] is False


def test_separate_processes_and_no_grounding(tmp_path, checkpoint):
    profile = load_profile("widowx")
    separate = describe_graph(profile, _options(checkpoint, share_model="false", rviz="false"), tmp_path)
    assert [s.name for s in separate] == ["sim_robot", "grounding", "policy", "robot_state_publisher"]
    assert separate[1].parameters["grounding"]["share_model"] is False
    alone = describe_graph(profile, _options(checkpoint, use_grounding="false", rviz="false"), tmp_path)
    assert [s.name for s in alone] == ["sim_robot", "policy", "robot_state_publisher"]


def test_inference_backend_reaches_the_policy(tmp_path, checkpoint):
    profile = load_profile("franka")
    local = describe_graph(profile, _options(checkpoint, use_grounding="false"), tmp_path)[1]
    assert local.parameters["policy"]["inference_backend"] == "local"
    options = _options(checkpoint, inference_backend="remote", server_uri="ws://gpu-box:10093")
    policy = describe_graph(profile, options, tmp_path)[1].parameters["policy"]
    assert (policy["inference_backend"], policy["server_uri"]) == ("remote", "ws://gpu-box:10093")


def test_replay_replaces_the_robot(tmp_path, checkpoint):
    options = _options(checkpoint, replay="/data/set", episode="2", replay_cameras="video.ego_view")
    specs = describe_graph(load_profile("franka"), options, tmp_path)
    replay = specs[0].parameters["replay"]
    assert specs[0].name == "replay" and "sim_robot" not in [s.name for s in specs]
    assert replay["dataset_path"] == "/data/set" and replay["episode_index"] == 2
    assert replay["camera_keys"] == ["video.ego_view"]
    assert replay["camera_topics"] == ["/scene_camera/image_raw"]
    assert specs[1].parameters["policy"]["camera_topics"] == ["/scene_camera/image_raw"], "one view replayed"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sim": "maybe"}, "sim:='maybe': expected true or false"),
        ({"episode": "two"}, "episode:='two': expected an integer"),
        ({"spatial_prompt_mode": "loud"}, "spatial_prompt_mode:='loud'"),
        ({"inference_backend": "cloud"}, "inference_backend:='cloud': expected local or remote"),
        ({"simulate": "true"}, "unknown launch argument 'simulate'"),
    ],
)
def test_bad_launch_arguments_are_named(values, message):
    with pytest.raises(GraphArgumentError, match=message.replace("(", r"\(")):
        GraphOptions.from_arguments(values)


@pytest.mark.parametrize("robot", ROBOTS)
def test_launch_file_delegates_to_the_shared_description(robot):
    path = LAUNCH_DIR / f"{robot}.launch.py"
    spec = importlib.util.spec_from_file_location(f"{robot}_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert robot == module.ROBOT and load_profile(module.ROBOT).name == robot
    function = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef))
    call = function.body[-1].value
    assert function.name == "generate_launch_description"
    assert isinstance(call, ast.Call) and call.func.id == "_describe" and call.args[0].id == "ROBOT"


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize(
    "arguments", [{}, {"share_model": "false"}, {"sim": "false", "use_grounding": "false"}]
)
def test_runner_and_launch_start_the_same_processes(tmp_path, checkpoint, robot, arguments):
    specs = describe_graph(load_profile(robot), _options(checkpoint, **arguments), tmp_path)
    for spec in specs:
        if spec.optional:
            continue
        launch = node_action_arguments(spec, tmp_path / "launch")
        params_file = write_parameters_file(spec, tmp_path / "runner")
        command = command_line(spec, params_file)
        assert command[1] == str(executable_path(spec))
        assert Path(command[1]).parts[-2:] == (launch["package"], launch["executable"])
        ros_args = command[command.index("--ros-args") + 1 :]
        remaps = [
            ros_args[i + 1] for i, a in enumerate(ros_args) if a == "-r" and "__node" not in ros_args[i + 1]
        ]
        assert remaps == [f"{a}:={b}" for a, b in launch["remappings"]]
        assert command[2 : command.index("--ros-args")] == launch["arguments"]
        if "name" in launch:
            assert f"__node:={launch['name']}" in ros_args
        assert yaml.safe_load(Path(launch["parameters"][0]).read_text()) == yaml.safe_load(
            params_file.read_text()
        )


def test_every_launch_argument_is_documented():
    assert len({a.name for a in LAUNCH_ARGUMENTS}) == len(LAUNCH_ARGUMENTS)
    assert all(a.description for a in LAUNCH_ARGUMENTS)
