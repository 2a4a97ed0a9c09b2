"""Test-session isolation shared by every package's tests.

DDS traffic of one test run must never reach another run (or a real robot on the same
network), so each pytest process picks its own ROS domain and keeps discovery on loopback
before any test imports rclpy. Child processes started by tests inherit the environment.

``INTERNVLA_SHARED_DIR`` (the shared reference fixtures and dataset, ``../shared`` beside the
checkout unless set) is resolved here once; tests that need it skip, naming the path, when absent.
"""

import os
from pathlib import Path

# Domains 0..101 are safe for Fast DDS port arithmetic; skip 0 (the default a robot uses).
os.environ["ROS_DOMAIN_ID"] = os.environ.get("INTERNVLA_TEST_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("INTERNVLA_SHARED_DIR", str(Path(__file__).resolve().parent.parent / "shared"))
