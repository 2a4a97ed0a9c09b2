"""ros2 launch internvla_bringup humanoid.launch.py [sim:=true|false] [checkpoint:=...] [rviz:=...]

The graph comes from internvla_bringup.graph, the same description `internvla launch humanoid` runs;
`ros2 launch internvla_bringup humanoid.launch.py --show-args` lists every argument.
"""

from internvla_bringup.launch_support import generate_launch_description as _describe

ROBOT = "humanoid"


def generate_launch_description():
    return _describe(ROBOT)
