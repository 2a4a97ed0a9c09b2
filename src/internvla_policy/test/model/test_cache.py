"""load_model_cached: one model per key, shared across threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from internvla_policy.model import clear_model_cache, load_model_cached
from internvla_policy.model.cache import inference_for


def test_one_model_per_key_across_threads(tiny_run: Path) -> None:
    clear_model_cache()
    with ThreadPoolExecutor(max_workers=4) as pool:
        models = list(pool.map(lambda _: load_model_cached(tiny_run), range(4)))
    assert all(model is models[0] for model in models)
    assert load_model_cached(tiny_run / "checkpoints" / "..", dtype="float32") is models[0]
    assert load_model_cached(tiny_run, dtype=torch.bfloat16) is not models[0]
    clear_model_cache()
    assert load_model_cached(tiny_run) is not models[0]
    clear_model_cache()


def test_shared_model_serves_concurrent_callers(tiny_run: Path, rgb: np.ndarray) -> None:
    clear_model_cache()
    model = load_model_cached(tiny_run)
    with ThreadPoolExecutor(max_workers=2) as pool:
        chunk = pool.submit(model.predict_action, [[rgb]], ["pick up the red block."], seed=1)
        text = pool.submit(model.answer, rgb, "Give the bounding box for the red block.", max_new_tokens=3)
        prediction, answer = chunk.result(), text.result()
    np.testing.assert_array_equal(
        prediction.normalized, model.predict_action([[rgb]], ["pick up the red block."], seed=1).normalized
    )
    assert answer == model.answer(rgb, "Give the bounding box for the red block.", max_new_tokens=3)
    clear_model_cache()


def test_nodes_run_the_reference_path_on_the_cpu(tiny_run: Path) -> None:
    model = load_model_cached(tiny_run)
    assert inference_for(model) is model, "the fast path is for GPUs; on the CPU the model serves"
    clear_model_cache()
