"""The InternVLA-M1 model core as the worker's `ChunkPolicy`: one observation in, one chunk out.

Unnormalisation (DESIGN §2, upstream `unnormalize_actions`) happens inside the model core's
`predict_action`; this adapter only fixes the sampling settings, checks at start that the
checkpoint fits the 7-D delta end-effector action space, and unbatches.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from internvla_policy.control.action import DIMENSION_NAMES
from internvla_policy.control.inference import ChunkPrediction
from internvla_policy.model import InternVLAM1
from internvla_policy.model.normalization import resolve_unnorm_key


def set_torch_threads(requested: int) -> int:
    """Set torch's CPU thread count: `requested`, or for 0 every core this process may use but one.

    The spare core keeps the control timer on time; more threads than free cores makes torch's
    worker threads wait on each other (measured here: 2 threads on 2 busy cores ran the tiny model
    5-15x slower than 1 thread). The setting is process-wide.
    """
    threads = requested if requested > 0 else max(1, len(os.sched_getaffinity(0)) - 1)
    torch.set_num_threads(threads)
    return threads


class ModelChunkPolicy:
    def __init__(
        self,
        model: InternVLAM1,
        *,
        cfg_scale: float,
        ddim_steps: int,
        seed: int | None,
        unnorm_key: str | None,
        prompt_template: bool = True,
    ) -> None:
        if model.action_dim != len(DIMENSION_NAMES):
            raise ValueError(
                f"the checkpoint predicts {model.action_dim}-D actions; the policy node drives the "
                f"{len(DIMENSION_NAMES)}-D delta end-effector space {DIMENSION_NAMES}"
            )
        self.unnorm_key = resolve_unnorm_key(model.norm_stats, unnorm_key)
        self._model = model
        self._cfg_scale = cfg_scale
        self._ddim_steps = ddim_steps
        self._seed = seed
        self._prompt_template = prompt_template

    def view_size(self, width: int, height: int) -> tuple[int, int]:
        image_size = self._model.config.image_size
        if image_size is not None:
            width, height = image_size
        return self._model.processor_image_size(width, height)

    def predict(self, images: list[np.ndarray], instruction: str) -> ChunkPrediction:
        prediction = self._model.predict_action(
            [images],
            [instruction],
            cfg_scale=self._cfg_scale,
            ddim_steps=self._ddim_steps,
            seed=self._seed,
            unnorm_key=self.unnorm_key,
            prompt_template=self._prompt_template,
        )
        return ChunkPrediction(prediction.actions[0], prediction.normalized[0])
