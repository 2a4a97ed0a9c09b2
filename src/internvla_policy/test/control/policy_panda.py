"""The Franka Panda description from example-robot-data (installed with --no-deps by make setup).

Located through the install prefix, not imported: the package is assets only.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

from internvla_policy.control.config import PolicyParams

PANDA_URDF = (
    Path(sysconfig.get_paths()["purelib"])
    / "cmeel.prefix/share/example-robot-data/robots/panda_description/urdf/panda.urdf"
)
JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
BASE, EE = "panda_link0", "panda_hand_tcp"
HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
# Straight from the URDF's <limit> tags.
LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
UPPER = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
VELOCITY = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])


def panda_urdf() -> str:
    if not PANDA_URDF.is_file():
        pytest.skip(
            "example-robot-data is not installed (make setup, or pip install --no-deps example-robot-data)"
        )
    return str(PANDA_URDF)


def profile_values(**overrides) -> dict:
    """Node parameter values of a Franka profile; the rest at their defaults (10 Hz, 2 cm and 0.1 rad
    per tick, half the URDF velocities)."""
    values = {
        "joint_names": list(JOINTS),
        "urdf_path": panda_urdf(),
        "base_frame": BASE,
        "ee_frame": EE,
        "camera_topics": ["scene"],
        "workspace_min": [0.2, -0.5, 0.05],
        "workspace_max": [0.8, 0.5, 0.9],
        "checkpoint": "(not loaded by the control core)",
        "start_enabled": True,
    }
    return {**values, **overrides}


def profile(**overrides) -> PolicyParams:
    return PolicyParams.from_mapping(profile_values(**overrides))
