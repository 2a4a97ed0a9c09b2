"""ROS-free MuJoCo simulation of the supported robots at a tabletop, with a scripted expert.

Modules: ``assets`` (robot files from registry packages), ``robots`` and ``scene`` (model
assembly), ``servo`` (rate-limited joint targets), ``camera`` (rendering, intrinsics, labels),
``tasks`` (seeded task family, success), ``env`` (``SimEnv``), ``kinematics`` and ``expert``
(IK pick and place), ``record`` (expert datasets, written by internvla_policy.data.LeRobotWriter).
"""

import os

# MuJoCo picks its GL backend when it is first imported. Without a display, GLFW cannot open a
# context, so default to OSMesa (software, always installable) unless the user chose (e.g. egl).
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "osmesa"
