"""Bringup for internvla-ros: robot profiles, launch, the simulated robot and dataset tools.

The ``sim`` subpackage is ROS-free (MuJoCo only) so the simulator, the scripted expert and the
dataset recorder run and test without DDS; ``ros`` holds the thin nodes that wrap them.
"""
