"""Shared simulator fixtures: one environment per robot for the whole session (models compile once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from internvla_bringup.sim.env import SimEnv


@pytest.fixture(scope="session")
def franka_env() -> Iterator[SimEnv]:
    with SimEnv("franka", seed=0) as env:
        yield env


@pytest.fixture(scope="session")
def widowx_env() -> Iterator[SimEnv]:
    with SimEnv("widowx", seed=0) as env:
        yield env


@pytest.fixture(scope="session")
def humanoid_env() -> Iterator[SimEnv]:
    with SimEnv("humanoid", seed=0) as env:
        yield env


@pytest.fixture(params=["franka", "widowx", "humanoid"])
def any_env(request: pytest.FixtureRequest) -> SimEnv:
    """Each robot's session environment, reset to seed 0 with the default task."""
    env = request.getfixturevalue(f"{request.param}_env")
    env.reset(0)
    return env
