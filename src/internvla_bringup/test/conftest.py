"""A small untrained model in the released layout, built once per session by the training builder
(so closed-loop tests run fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from internvla_policy.data import DatasetStatistics
from internvla_policy.model.tiny import tiny_norm_stats
from internvla_policy.training.build import SMALL_MODEL_DIMS, new_model, tokenizer_corpus
from internvla_policy.training.run_files import save_weights, write_run_metadata


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small model in the released layout (the training builder's, so it runs fast)."""
    run = tmp_path_factory.mktemp("eval") / "small"
    statistics = {"franka": DatasetStatistics.from_json(tiny_norm_stats()["franka"], "tiny statistics")}
    model, tree = new_model(
        run, SMALL_MODEL_DIMS, {}, tokenizer_corpus(["pick up the blue block"], 224), seed=0
    )
    write_run_metadata(run, tree, statistics)
    save_weights(run, model.state_dict(), step=0)
    return run
