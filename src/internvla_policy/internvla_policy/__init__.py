"""InternVLA-M1 on a robot: the ROS-free model and control cores, and the thin policy node around them."""
