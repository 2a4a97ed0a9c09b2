"""The task family: instructions parse, layouts are seeded and clear, success is judged from ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_bringup.sim.env import SimEnv
from internvla_bringup.sim.robots import robot_config
from internvla_bringup.sim.scene import BOWL, BOWL_HEIGHT, OBJECT_NAMES
from internvla_bringup.sim.tasks import (
    TASK_KINDS,
    ObjectState,
    Task,
    judge,
    parse_instruction,
    sample_layout,
    sample_task,
)

WS = robot_config("franka").workspace


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("pick up the red block", Task("pick", "red_block")),
        ("Pick up the RED block.", Task("pick", "red_block")),
        ("lift the yellow cube", Task("pick", "yellow_block")),
        ("put the green block in the bowl", Task("place_in_bowl", "green_block", BOWL)),
        ("Place the blue cube into the bowl!", Task("place_in_bowl", "blue_block", BOWL)),
        ("put the red block on the blue block", Task("stack", "red_block", "blue_block")),
        ("stack the yellow block on top of the green block", Task("stack", "yellow_block", "green_block")),
    ],
)
def test_instructions_parse(text: str, task: Task) -> None:
    assert parse_instruction(text) == task
    assert parse_instruction(task.instruction) == task


@pytest.mark.parametrize(
    "text", ["dance", "pick up the purple block", "put the red block on the red block", ""]
)
def test_other_text_is_not_a_task(text: str) -> None:
    assert parse_instruction(text) is None


def test_sampling_is_seeded_and_covers_the_family() -> None:
    draws = [sample_task(np.random.default_rng(seed), TASK_KINDS) for seed in range(200)]
    assert draws == [sample_task(np.random.default_rng(seed), TASK_KINDS) for seed in range(200)]
    assert {t.kind for t in draws} == set(TASK_KINDS)
    assert len({t.instruction for t in draws}) >= 16
    with pytest.raises(ValueError, match="subset"):
        sample_task(np.random.default_rng(0), ("juggle",))


def test_layouts_are_seeded_inside_the_workspace_and_apart() -> None:
    for seed in range(100):
        layout = sample_layout(np.random.default_rng(seed), WS)
        assert layout.keys() == set(OBJECT_NAMES)
        xy = np.array([v[:2] for v in layout.values()])
        assert np.all(xy >= [WS.x_range[0], WS.y_range[0]]) and np.all(xy <= [WS.x_range[1], WS.y_range[1]])
        blocks = [layout[n][:2] for n in OBJECT_NAMES if n != BOWL]
        gaps = [np.linalg.norm(a - b) for i, a in enumerate(blocks) for b in blocks[i + 1 :]]
        assert min(gaps) >= 2.25 * WS.block_size
        assert min(np.linalg.norm(b - layout[BOWL][:2]) for b in blocks) > WS.bowl_radius + WS.block_size
    first = sample_layout(np.random.default_rng(3), WS)
    again = sample_layout(np.random.default_rng(3), WS)
    assert all(np.array_equal(first[n], again[n]) for n in OBJECT_NAMES)


def _states(**overrides: tuple[list[float], bool]) -> dict[str, ObjectState]:
    half = WS.block_size / 2
    states = {
        "red_block": ObjectState(np.array([0.45, 0.1, half]), False),
        "green_block": ObjectState(np.array([0.5, -0.1, half]), False),
        "blue_block": ObjectState(np.array([0.6, 0.1, half]), False),
        "yellow_block": ObjectState(np.array([0.6, -0.1, half]), False),
        BOWL: ObjectState(np.array([0.5, 0.0, 0.0]), False),
    }
    states.update({name: ObjectState(np.array(pos), touching) for name, (pos, touching) in overrides.items()})
    return states


def test_judging_pick() -> None:
    task = Task("pick", "red_block")
    lifted = [0.45, 0.1, WS.block_size / 2 + 0.06]
    assert not judge(task, _states(), WS)
    assert judge(task, _states(red_block=(lifted, True)), WS)
    assert not judge(task, _states(red_block=(lifted, False)), WS)  # not held: thrown or resting on something
    assert not judge(task, _states(red_block=([0.45, 0.1, WS.block_size / 2 + 0.03], True)), WS)


def test_judging_place_in_bowl_and_stack() -> None:
    in_bowl = ([0.51, 0.01, 0.004 + WS.block_size / 2], False)
    task = Task("place_in_bowl", "green_block", BOWL)
    assert judge(task, _states(green_block=in_bowl), WS)
    assert not judge(task, _states(green_block=(in_bowl[0], True)), WS)  # still in the gripper
    assert not judge(task, _states(green_block=([0.51, 0.01, BOWL_HEIGHT + 0.05], False)), WS)  # above it
    assert not judge(task, _states(green_block=([0.5, 0.09, WS.block_size / 2], False)), WS)  # beside it
    stack = Task("stack", "red_block", "blue_block")
    on_blue = ([0.605, 0.1, 1.5 * WS.block_size], False)
    assert judge(stack, _states(red_block=on_blue), WS)
    assert not judge(stack, _states(red_block=([0.64, 0.1, 1.5 * WS.block_size], False)), WS)


def test_env_judges_the_real_scene(franka_env: SimEnv) -> None:
    env = franka_env
    env.reset(5, "put the yellow block in the bowl")
    assert env.status().success is False
    bowl = env.object_position(BOWL)
    env.data.joint("yellow_block_joint").qpos[:3] = [bowl[0], bowl[1], 0.06]  # drop it into the bowl
    env.step(0.8)
    status = env.status()
    assert status.success and status.success_now
    assert status.to_json()["task"] == "put the yellow block in the bowl"
    env.set_task("pick up the red block")  # a new instruction: judged afresh, nothing moves
    assert env.status().success is False
    env.reset(5)
