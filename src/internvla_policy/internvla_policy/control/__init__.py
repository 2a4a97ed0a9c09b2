"""The ROS-free control core of the policy node.

observation (joint matching, freshness) -> inference (worker thread, model_policy adapter) ->
ensembler (chunk scheduling, CogACT adaptive ensemble) -> action (delta end-effector convention)
-> kinematics (FK / damped least squares IK) -> safety (gate and clamps), tied together by
controller.PolicyController; config.PolicyParams describes every node parameter.
"""
