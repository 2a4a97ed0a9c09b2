"""ros2 launch internvla_bringup franka.launch.py [sim:=true|false] [checkpoint:=...] [rviz:=...]

The graph comes from internvla_bringup.graph, the same description `internvla launch franka` runs;
`ros2 launch internvla_bringup franka.launch.py --show-args` lists every argument.
"""

from internvla_bringup.launch_support import generate_launch_description as _describe

ROBOT = "franka"


def generate_launch_description():
    return _describe(ROBOT)
