"""The grounding node and its ROS-only helpers (markers); everything else in the package is ROS-free."""
