"""The network at the released size has upstream's exact state-dict keys, shapes and parameter counts.

Built on the meta device (no memory), from the real Qwen2.5-VL-3B-Instruct shape and the real
training config's values (DESIGN.md §2), and compared with the key table recorded from upstream.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig

from internvla_policy.model import InternVLAM1, M1Config
from internvla_policy.model.qwen import QwenProcessor

REAL_TRAIN_CONFIG = {
    "framework": {
        "framework_py": "InternVLA-M1",
        "qwenvl": {"base_vlm": "./playground/Pretrained_models/Qwen2.5-VL-3B-Instruct"},
        "dino": {"dino_backbone": "dinov2_vits14"},
        "layer_qformer": {
            "qformer_start_layer": 36,
            "qformer_end_layer": 37,
            "num_query_tokens": 64,
            "input_dim": 2048,
            "ouptput_dim": 768,
        },
        "action_model": {
            "action_model_type": "DiT-B",
            "action_hidden_dim": 768,
            "action_dim": 7,
            "future_action_window_size": 15,
            "past_action_window_size": 0,
        },
    },
    "datasets": {"vla_data": {"image_size": [224, 224]}},
}

QWEN25_VL_3B = Qwen2_5_VLConfig(
    text_config={
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6},
    },
    vision_config={
        "depth": 32,
        "hidden_size": 1280,
        "num_heads": 16,
        "intermediate_size": 3420,
        "out_hidden_size": 2048,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
    },
    tie_word_embeddings=True,
)


@pytest.fixture(scope="module")
def real_skeleton(tiny_run: Path) -> InternVLAM1:
    processor = QwenProcessor.from_dir(tiny_run / "base_vlm")  # only stored; shapes come from the configs
    with torch.device("meta"):
        return InternVLAM1(M1Config.from_mapping(REAL_TRAIN_CONFIG), QWEN25_VL_3B, processor, {})


def _recorded_table(reference_dir: Path) -> dict[str, tuple[int, ...]]:
    lines = (reference_dir / "m1_real_state_dict.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line.strip()]
    return {row["key"]: tuple(json.loads(row["shape"])) for row in rows}


def test_state_dict_keys_and_shapes_match_upstream(real_skeleton: InternVLAM1, reference_dir: Path) -> None:
    recorded = _recorded_table(reference_dir)
    ours = {key: tuple(value.shape) for key, value in real_skeleton.state_dict().items()}
    assert sorted(ours.keys() - recorded.keys()) == []
    assert sorted(recorded.keys() - ours.keys()) == []
    assert {key: shape for key, shape in ours.items() if recorded[key] != shape} == {}


def test_parameter_counts_match_upstream(real_skeleton: InternVLAM1, reference_dir: Path) -> None:
    recorded = {}
    for line in (reference_dir / "m1_module_params.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[2].isdigit() and fields[0] != "TOTAL":
            recorded[fields[0]] = int(fields[2])  # unique parameters (tied lm_head counted once)
    assert real_skeleton.parameter_counts() == recorded
