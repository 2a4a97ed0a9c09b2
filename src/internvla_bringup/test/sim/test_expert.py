"""The scripted expert solves the task family on seeded episodes at its measured rate.

Measured on seeds 0..99 (drawn pick / put-in-bowl tasks): Franka 100/100, about 0.5 s of CPU per
episode without rendering; stacking, seeds 0..29: 30/30. The test runs a smaller sample.
"""

from __future__ import annotations

import numpy as np
import pytest

from internvla_bringup.sim.env import SimEnv
from internvla_bringup.sim.expert import ScriptedExpert

CONTROL_PERIOD = 0.1
MAX_STEPS = 250


def run_expert(env: SimEnv, seed: int, task: str | None = None) -> tuple[bool, int, ScriptedExpert]:
    """One episode under expert control; returns (success, control steps, expert)."""
    env.reset(seed, task)
    expert = ScriptedExpert(env, CONTROL_PERIOD)
    steps = 0
    while not expert.done and steps < MAX_STEPS:
        action = expert.act()
        env.command_joints(env.config.arm_joints, action.arm_target)
        env.command_gripper(action.gripper)
        env.step(CONTROL_PERIOD)
        steps += 1
    return env.status().success, steps, expert


def test_franka_expert_success_rate(franka_env: SimEnv) -> None:
    results = [run_expert(franka_env, seed) for seed in range(100, 112)]
    successes = sum(ok for ok, _, _ in results)
    assert successes >= 11  # measured 100 %; allow one miss in 12
    assert all(expert.ik_failures == 0 for _, _, expert in results)
    assert all(40 <= steps <= 150 for _, steps, _ in results)  # 4 to 15 s episodes at 10 Hz


@pytest.mark.parametrize("task", ["put the red block on the blue block", "pick up the yellow block"])
def test_franka_expert_named_tasks(franka_env: SimEnv, task: str) -> None:
    ok, _, _ = run_expert(franka_env, 3, task)
    assert ok
    assert franka_env.task.instruction == task


def test_widowx_expert(widowx_env: SimEnv) -> None:
    assert sum(run_expert(widowx_env, seed)[0] for seed in range(4)) >= 3


def test_expert_tool_follows_its_plan(franka_env: SimEnv) -> None:
    """Each commanded tool pose is reached: IK and servo agree with the plan within a few millimetres."""
    env = franka_env
    env.reset(2)
    expert = ScriptedExpert(env, CONTROL_PERIOD)
    errors = []
    for _ in range(30):
        action = expert.act()
        env.command_joints(env.config.arm_joints, action.arm_target)
        env.command_gripper(action.gripper)
        env.step(CONTROL_PERIOD)
        errors.append(np.linalg.norm(env.tcp_pose()[0] - action.tcp_pos))
    assert np.median(errors) < 0.01


def test_expert_refuses_the_humanoid(humanoid_env: SimEnv) -> None:
    with pytest.raises(ValueError, match="no top-down grasp"):
        ScriptedExpert(humanoid_env)
