"""Serving the model core over a websocket: ``internvla-m1 serve`` and the policy node's remote backend.

ROS-free. ``wire`` encodes msgpack frames with numpy arrays as openpi-client does, ``protocol`` routes
and validates requests and shapes replies as upstream InternVLA-M1's server does, ``batching`` merges
requests from several clients into one forward, and ``server`` runs the websocket endpoint. The
policy node's client is ``internvla_policy.control.remote_policy``.
"""
