"""ROS 2 nodes of internvla_bringup: thin wrappers that translate messages and own timing."""
