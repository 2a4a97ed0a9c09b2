"""The fast path on a GPU: every stage captured as a CUDA graph, and the same results as the reference.

Skipped without CUDA. It imports nothing beyond the model core, so it runs on the GPU machine from the
source tree with that machine's torch and transformers:

    PYTHONPATH=src/internvla_policy python3 -m pytest -q src/internvla_policy/test/model/test_fast_cuda.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from internvla_policy.model import InternVLAM1
from internvla_policy.model.fast import FastInference
from internvla_policy.model.synthetic import random_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

INSTRUCTION = "Pick up the red block and place it in the bowl."
PROMPT = "Give the bounding box for the red block."


def relative_error(fast: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(fast - reference) / np.linalg.norm(reference))


@pytest.fixture(scope="module")
def cuda_model() -> InternVLAM1:
    return random_model("tiny", device="cuda", seed=0)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)


@pytest.mark.parametrize("mixed", [True, False], ids=["mixed", "pure-bf16"])
def test_bfloat16_graphs_agree_with_autocast_reference(
    cuda_model: InternVLAM1, frame: np.ndarray, mixed: bool
) -> None:
    fast = FastInference(cuda_model, mixed_precision=mixed)
    assert fast.dtype == torch.bfloat16 and fast.cuda_graphs
    results = []
    for seed in (0, 1, 0):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            reference = cuda_model.predict_action([[frame]], [INSTRUCTION], seed=seed).normalized
        results.append(fast.predict_action([[frame]], [INSTRUCTION], seed=seed))
        assert relative_error(results[-1].normalized, reference) < (3e-3 if mixed else 1e-2)
    assert set(fast.stage_modes().values()) == {"cuda graph"}, fast.stage_modes()
    np.testing.assert_array_equal(results[0].normalized, results[2].normalized)  # replays are deterministic
    assert results[1].timings["setup"] < 0.01 and results[1].timings["total"] < results[0].timings["total"]


def test_float32_graphs_equal_eager_and_reference(cuda_model: InternVLAM1, frame: np.ndarray) -> None:
    graphed = FastInference(cuda_model, dtype=torch.float32)
    eager = FastInference(cuda_model, dtype=torch.float32, cuda_graphs=False)
    reference = cuda_model.predict_action([[frame]], [INSTRUCTION], ddim_steps=5, seed=2).normalized
    with_graphs = graphed.predict_action([[frame]], [INSTRUCTION], ddim_steps=5, seed=2).normalized
    without = eager.predict_action([[frame]], [INSTRUCTION], ddim_steps=5, seed=2).normalized
    assert set(graphed.stage_modes().values()) == {"cuda graph"}
    assert set(eager.stage_modes().values()) == {"eager"}
    np.testing.assert_allclose(with_graphs, without, rtol=0, atol=1e-5)
    assert relative_error(with_graphs, reference) < 1e-4


def test_answers_with_graphs_equal_generate(cuda_model: InternVLAM1, frame: np.ndarray) -> None:
    fast = FastInference(cuda_model, dtype=torch.float32)
    for tokens in (1, 13):
        assert fast.generate(frame, PROMPT, max_new_tokens=tokens) == cuda_model.generate(
            frame, PROMPT, max_new_tokens=tokens
        )
    modes = fast.stage_modes()
    assert modes["prefill"] == modes["decode"] == "cuda graph", modes
