"""The policy's ROS 2 layer: nodes and message conversions; everything below it is ROS-free."""
