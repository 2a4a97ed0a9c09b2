"""Test-session isolation shared by every package's tests.

DDS traffic of one test run must never reach another run (or a real robot on the same
network), so each pytest process picks its own ROS domain and keeps discovery on loopback
before any test imports rclpy. Child processes started by tests inherit the environment.

``INTERNVLA_SHARED_DIR`` (the shared reference fixtures and dataset, ``../shared`` beside the
checkout unless set) is resolved here once; the ``shared_dataset`` and ``shared_reference`` fixtures
skip their tests, naming the path, when it is absent.
"""

import os
from pathlib import Path

import pytest

# Domains 0..101 are safe for Fast DDS port arithmetic; skip 0 (the default a robot uses).
os.environ["ROS_DOMAIN_ID"] = os.environ.get("INTERNVLA_TEST_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("INTERNVLA_SHARED_DIR", str(Path(__file__).resolve().parent.parent / "shared"))


def _shared_path(relative: str) -> Path:
    path = Path(os.environ["INTERNVLA_SHARED_DIR"]) / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (set INTERNVLA_SHARED_DIR to the shared folder)")
    return path


@pytest.fixture(scope="session")
def shared_dataset() -> Path:
    """The shared sim_pick_place LeRobot recording."""
    return _shared_path("data/sim_pick_place/meta/info.json").parents[1]


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """The shared tiny reference checkpoint with outputs recorded from the original implementation."""
    return _shared_path("reference/tiny_a")
