"""ros2 launch internvla_bringup widowx.launch.py [sim:=true|false] [checkpoint:=...] [rviz:=...]

The graph comes from internvla_bringup.graph, the same description `internvla launch widowx` runs;
`ros2 launch internvla_bringup widowx.launch.py --show-args` lists every argument.
"""

from internvla_bringup.launch_support import generate_launch_description as _describe

ROBOT = "widowx"


def generate_launch_description():
    return _describe(ROBOT)
