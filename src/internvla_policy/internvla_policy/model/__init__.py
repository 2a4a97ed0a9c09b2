"""The ROS-free InternVLA-M1 model core: load released checkpoints, predict action chunks, answer prompts.

Typical use::

    from internvla_policy.model import InternVLAM1
    model = InternVLAM1.from_pretrained("path/to/run")
    prediction = model.predict_action([[rgb_image]], ["pick up the red block."])
    prediction.actions  # [1, 16, 7] in robot units
"""

from .cache import clear_model_cache, load_for_inference, load_model_cached
from .config import M1Config
from .errors import CheckpointError
from .internvla_m1 import ActionPrediction, Answer, InternVLAM1
from .normalization import unnormalize_actions

__all__ = [
    "ActionPrediction",
    "Answer",
    "CheckpointError",
    "InternVLAM1",
    "M1Config",
    "clear_model_cache",
    "load_for_inference",
    "load_model_cached",
    "unnormalize_actions",
]
