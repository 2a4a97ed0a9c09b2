"""Ground one instruction in one frame: prompt, model answer, parse. No ROS, no threads.

The node and the Ground service both call Grounder.ground; tests call it with the tiny model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from internvla_policy.vision.geometry import GroundingResult

from .parsing import CoordinateConvention, parse_answer
from .prompts import DEFAULT_TEMPLATES, GroundingKind, render


class AnsweringModel(Protocol):
    """What grounding needs from the model core (internvla_policy.model.InternVLAM1)."""

    def answer(self, image, prompt: str, max_new_tokens: int = 64) -> str: ...

    def processor_image_size(self, width: int, height: int) -> tuple[int, int]: ...


@dataclass(frozen=True)
class Grounding:
    """One grounding: the parsed result plus what produced it, for the SpatialPrompt message."""

    result: GroundingResult
    kind: GroundingKind
    instruction: str
    prompt: str
    raw_answer: str
    inference_s: float


class Grounder:
    def __init__(
        self,
        model: AnsweringModel,
        templates: Mapping[GroundingKind, str] = DEFAULT_TEMPLATES,
        convention: CoordinateConvention = CoordinateConvention.PIXELS,
        max_new_tokens: int = 256,
    ) -> None:
        self.model = model
        self.templates = dict(templates)
        self.convention = convention
        self.max_new_tokens = max_new_tokens

    def ground(self, rgb: np.ndarray, instruction: str, kind: GroundingKind) -> Grounding:
        """Ask the model about an [H, W, 3] uint8 RGB frame and parse its answer into frame pixels."""
        height, width = rgb.shape[:2]
        prompt = render(self.templates[kind], instruction)
        model_size = (
            self.model.processor_image_size(width, height)
            if self.convention is CoordinateConvention.PIXELS
            else None
        )
        start = time.perf_counter()
        answer = self.model.answer(rgb, prompt, max_new_tokens=self.max_new_tokens)
        inference_s = time.perf_counter() - start
        result = parse_answer(answer, (width, height), model_size, self.convention, kind)
        return Grounding(result, kind, instruction, prompt, answer, inference_s)
