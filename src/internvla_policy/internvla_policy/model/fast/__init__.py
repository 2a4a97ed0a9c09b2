"""The fast inference path: ``FastInference(model)`` predicts the same actions and answers as
``InternVLAM1`` with preprocessing on the device, static shapes, bfloat16 weights and CUDA graphs on a
GPU (plain eager float32 on the CPU). See engine.py for what changes and why."""

from .engine import FastInference

__all__ = ["FastInference"]
