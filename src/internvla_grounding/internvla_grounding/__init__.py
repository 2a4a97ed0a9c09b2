"""Spatial grounding with InternVLA-M1: prompts, the answer parser, and the grounding node.

parsing.parse_answer turns the model's text into boxes/points/traces in source-image pixels;
prompts holds the templates; cli is `internvla-ground parse`; ros.grounding_node is the node.
"""
