"""A tiny random InternVLA-M1 in the released run layout, built from code alone.

Tests and the default demo need a model without downloads or files from elsewhere. This writes
one with the real architecture at small widths (Qwen2.5-VL with 4 layers of width 64, one DINOv2
ViT-S block, DiT-S), through exactly the files and code paths a released run uses::

    <out>/config.yaml  dataset_statistics.json  checkpoints/steps_0_pytorch_model.pt
    <out>/base_vlm/    config.json, tokenizer, preprocessor_config.json, chat template, generation_config.json

Its actions are random but deterministic for a seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from transformers import GenerationConfig, PreTrainedTokenizerBase
from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from .config import M1Config
from .internvla_m1 import InternVLAM1
from .qwen import QwenProcessor, load_qwen_config
from .tiny_tokenizer import build_tokenizer

CHECKPOINT_STEP = 0
QWEN_MIN_PIXELS = 56 * 56  # Qwen2.5-VL's released processor limits
QWEN_MAX_PIXELS = 28 * 28 * 16384
COT_PROMPT = (
    "Your task is {instruction}. To identify the key objects for your task. "
    "Locate their bounding boxes in [x1,y1,x2,y2] format."
)
UNNORM_KEY = "franka"


@dataclass(frozen=True)
class ModelDims:
    """The sizes of a small model with the released architecture; the defaults are the tiny test model.

    ``None`` keeps the released value (DINOv2 ViT-S widths, DiT-S depth and heads, DINO input 224 px),
    so the default config carries exactly the keys a released one has.
    """

    qwen_hidden: int = 64
    qwen_intermediate: int = 128
    qwen_layers: int = 4
    qwen_heads: int = 4
    qwen_kv_heads: int = 2
    vision_hidden: int = 64
    vision_intermediate: int = 128
    vision_depth: int = 2
    vision_heads: int = 4
    dino_depth: int = 1
    dino_width: int | None = None
    dino_heads: int | None = None
    dino_short_side: int | None = None
    num_query_tokens: int = 64
    action_width: int = 384
    action_depth: int | None = None
    action_heads: int | None = None
    image_size: int = 224
    cot_prompt: str | None = COT_PROMPT

    def mrope_section(self) -> list[int]:
        """Qwen2.5-VL's temporal/height/width split of the rotary half-dimension (16/24/24 of 64)."""
        half = self.qwen_hidden // self.qwen_heads // 2
        temporal = half // 4
        height = (half - temporal) // 2
        return [temporal, height, half - temporal - height]


def tiny_train_config(base_vlm: str = "./base_vlm", dims: ModelDims = ModelDims()) -> dict[str, Any]:
    """config.yaml of the tiny run, shaped like a released one (only the keys the loader reads)."""
    dino: dict[str, Any] = {"dino_backbone": "dinov2_vits14", "depth": dims.dino_depth}
    optional_dino = {
        "embed_dim": dims.dino_width,
        "num_heads": dims.dino_heads,
        "short_side": dims.dino_short_side,
    }
    dino |= {key: value for key, value in optional_dino.items() if value is not None}
    action: dict[str, Any] = {
        "action_model_type": "DiT-S",
        "action_hidden_dim": dims.action_width,
        "action_dim": 7,
        "future_action_window_size": 15,
        "past_action_window_size": 0,
    }
    optional_action = {"num_blocks": dims.action_depth, "num_heads": dims.action_heads}
    action |= {key: value for key, value in optional_action.items() if value is not None}
    vla_data: dict[str, Any] = {"image_size": [dims.image_size, dims.image_size], "obs": ["image_0"]}
    if dims.cot_prompt is not None:
        vla_data = {"CoT_prompt": dims.cot_prompt, **vla_data}
    return {
        "run_id": "internvla_m1_tiny",
        "framework": {
            "framework_py": "InternVLA-M1",
            "qwenvl": {
                "base_vlm": base_vlm,
                "attn_implementation": "sdpa",
                "vl_hidden_dim": dims.qwen_hidden,
            },
            "dino": dino,
            "layer_qformer": {
                "qformer_start_layer": dims.qwen_layers,
                "qformer_end_layer": dims.qwen_layers + 1,
                "num_query_tokens": dims.num_query_tokens,
                "input_dim": dims.qwen_hidden,
                "ouptput_dim": dims.action_width,
            },
            "action_model": action,
        },
        "datasets": {"vla_data": vla_data},
    }


def tiny_qwen_config(tokenizer: Any, dims: ModelDims = ModelDims()) -> Qwen2_5_VLConfig:
    """A small Qwen2.5-VL (by default 4 layers, 64 wide) whose special token ids come from ``tokenizer``."""
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in _QWEN_TOKENS.items()}
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 64 * math.ceil(len(tokenizer) / 64),  # padded like the real 151936 > 151665
            "hidden_size": dims.qwen_hidden,
            "intermediate_size": dims.qwen_intermediate,
            "num_hidden_layers": dims.qwen_layers,
            "num_attention_heads": dims.qwen_heads,
            "num_key_value_heads": dims.qwen_kv_heads,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": dims.mrope_section(),
                "rope_theta": 1e6,
            },
            "bos_token_id": ids["endoftext"],
            "eos_token_id": ids["im_end"],
            "pad_token_id": ids["endoftext"],
        },
        vision_config={
            "depth": dims.vision_depth,
            "hidden_size": dims.vision_hidden,
            "intermediate_size": dims.vision_intermediate,
            "num_heads": dims.vision_heads,
            "out_hidden_size": dims.qwen_hidden,
            "window_size": 112,
            "fullatt_block_indexes": [dims.vision_depth - 1],
        },
        image_token_id=ids["image_pad"],
        video_token_id=ids["video_pad"],
        vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"],
        tie_word_embeddings=True,
    )


_QWEN_TOKENS = {
    "endoftext": "<|endoftext|>",
    "im_end": "<|im_end|>",
    "image_pad": "<|image_pad|>",
    "video_pad": "<|video_pad|>",
    "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>",
}


def tiny_norm_stats() -> dict[str, Any]:
    """Plausible 7-D delta end-effector statistics (metres, radians, gripper 0/1) under one key."""
    q01 = [-0.01, -0.01, -0.01, -0.05, -0.05, -0.05, 0.0]
    q99 = [0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 1.0]
    return {
        UNNORM_KEY: {
            "action": {
                "mean": [0.0] * 6 + [0.5],
                "std": [0.005] * 3 + [0.02] * 3 + [0.5],
                "min": [2 * v for v in q01[:6]] + [0.0],
                "max": [2 * v for v in q99[:6]] + [1.0],
                "q01": q01,
                "q99": q99,
                "mask": [True] * 6 + [False],
            },
            "num_transitions": 0,
            "num_trajectories": 0,
        }
    }


def write_tiny_base_vlm(
    out_dir: str | Path, dims: ModelDims = ModelDims(), tokenizer: PreTrainedTokenizerBase | None = None
) -> Path:
    """Write the tiny Qwen2.5-VL folder (no weights: the run's checkpoint holds them all).

    ``tokenizer`` defaults to the offline tiny tokenizer (``build_tokenizer()``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or build_tokenizer()
    tokenizer.save_pretrained(out_dir)
    config = tiny_qwen_config(tokenizer, dims)
    config.save_pretrained(out_dir)
    Qwen2VLImageProcessorPil(min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS).save_pretrained(out_dir)
    text = config.get_text_config()
    GenerationConfig(
        bos_token_id=text.bos_token_id,
        eos_token_id=[text.eos_token_id, text.pad_token_id],
        pad_token_id=text.pad_token_id,
    ).save_pretrained(out_dir)
    return out_dir


def write_tiny_run(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random run (config, statistics, bf16 checkpoint, base VLM folder); return its folder."""
    run_dir = Path(out_dir)
    base_dir = write_tiny_base_vlm(run_dir / "base_vlm")
    tree = tiny_train_config()
    config = M1Config.from_mapping(tree, source="tiny config")
    model = InternVLAM1(
        config, load_qwen_config(base_dir), QwenProcessor.from_dir(base_dir), tiny_norm_stats()
    )
    randomize_parameters(model, torch.Generator().manual_seed(seed))
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    (run_dir / "dataset_statistics.json").write_text(json.dumps(tiny_norm_stats(), indent=2))
    state = {key: value.to(torch.bfloat16) for key, value in model.state_dict().items()}
    torch.save(state, run_dir / "checkpoints" / f"steps_{CHECKPOINT_STEP}_pytorch_model.pt")
    return run_dir


@torch.no_grad()
def randomize_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Redraw every parameter so no path is inert (upstream zero-initialises parts of the DiT).

    Matrices N(0, 1/fan_in); vectors that start at one (norm scales, LayerScale) 1 + 0.1 N(0, 1);
    other vectors (biases) 0.05 N(0, 1). Tied parameters are drawn once. The noise is drawn on the
    generator's device (a CUDA generator fills a full-size model on the GPU in seconds).
    """
    for _, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        noise = torch.randn(param.shape, generator=generator, device=generator.device)
        if param.ndim == 1:
            param.copy_(1 + 0.1 * noise if bool((param == 1).all()) else 0.05 * noise)
        else:
            fan_in = param.shape[-1] if param.shape[0] == 1 else param[0].numel()
            param.copy_(noise / math.sqrt(fan_in))
