"""ROS-free image handling shared by the grounding and policy nodes.

geometry: grounded boxes/points/traces in source-image pixels; imaging: sensor image payloads
<-> numpy; annotate: drawing grounding results on frames; projection: pixels + depth -> 3-D.
"""
