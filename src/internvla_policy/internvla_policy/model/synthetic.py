"""InternVLA-M1 with random weights, at the released model's real dimensions or the tiny test ones,
built in memory: what the benchmark times when no checkpoint can be downloaded.

Real dimensions: the Qwen2.5-VL-3B-Instruct configuration and the parts of the released run's
``internvla_cotrain_oxe.yaml`` that shape the network (DINOv2 ViT-S/14 with all 12 blocks, the
Q-Former on ``hidden_states[36:37]``, DiT-B), written out here; the state-dict keys and shapes match
the real model's (tested against the reference key table). The tokenizer is the project's offline
Qwen2-shaped BPE with its vocabulary padded so that the special tokens take Qwen2.5's real ids
(``<|endoftext|>`` 151643 ... ``<|image_pad|>`` 151655); trained on the built-in corpus, it splits
the real CoT prompt into about as many tokens as Qwen's tokenizer does (128 with one 224x224 view).
Only the weights are random, so the costs are the real model's and the outputs are noise.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase
from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from .config import M1Config
from .internvla_m1 import InternVLAM1
from .qwen import QwenProcessor
from .tiny import (
    COT_PROMPT,
    QWEN_MAX_PIXELS,
    QWEN_MIN_PIXELS,
    randomize_parameters,
    tiny_norm_stats,
    tiny_qwen_config,
    tiny_train_config,
)
from .tiny_tokenizer import build_tokenizer

Dims = Literal["tiny", "real"]
DIMS: tuple[Dims, ...] = ("tiny", "real")

REAL_BASE_VOCAB = 151643  # Qwen2.5's BPE vocabulary; its added tokens follow
REAL_BPE_MERGES = 4096  # more than the built-in corpus can use: every word in it becomes one token
REAL_VOCAB_SIZE = 151936  # the model's embedding rows (the tokenizer's 151665 rounded up)
REAL_TOKEN_IDS = {
    "bos": 151643,
    "eos": 151645,
    "pad": 151643,
    "image": 151655,
    "video": 151656,
    "vision_start": 151652,
    "vision_end": 151653,
}


def real_tokenizer() -> PreTrainedTokenizerBase:
    """The offline tokenizer with Qwen2.5's vocabulary size and special-token ids."""
    return build_tokenizer(vocab_size=REAL_BPE_MERGES, base_vocab_size=REAL_BASE_VOCAB)


def real_qwen_config() -> Qwen2_5_VLConfig:
    """Qwen2.5-VL-3B-Instruct's architecture (the published config.json's values)."""
    ids = REAL_TOKEN_IDS
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": REAL_VOCAB_SIZE,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 128000,
            "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6},
            "bos_token_id": ids["bos"],
            "eos_token_id": ids["eos"],
            "pad_token_id": ids["pad"],
        },
        vision_config={
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "hidden_act": "silu",
            "out_hidden_size": 2048,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2,
        },
        image_token_id=ids["image"],
        video_token_id=ids["video"],
        vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"],
        tie_word_embeddings=True,
    )


def real_generation_config() -> GenerationConfig:
    """Qwen2.5-VL-3B-Instruct's generation_config.json (top_k=1 sampling: greedy, repetition penalty)."""
    ids = REAL_TOKEN_IDS
    return GenerationConfig(
        bos_token_id=ids["bos"],
        eos_token_id=[ids["eos"], ids["pad"]],
        pad_token_id=ids["pad"],
        do_sample=True,
        repetition_penalty=1.05,
        temperature=0.1,
        top_k=1,
        top_p=0.001,
    )


def real_train_config() -> dict[str, Any]:
    """The keys of the released run's config.yaml that decide the network and its inference."""
    return {
        "framework": {
            "framework_py": "InternVLA-M1",
            "qwenvl": {"base_vlm": "Qwen/Qwen2.5-VL-3B-Instruct", "attn_implementation": "sdpa"},
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
        "datasets": {"vla_data": {"CoT_prompt": COT_PROMPT, "image_size": [224, 224]}},
    }


def model_parts(dims: Dims) -> tuple[M1Config, Qwen2_5_VLConfig, QwenProcessor]:
    """The config, Qwen config and processor of a model of ``dims`` (what ``InternVLAM1`` is built from)."""
    if dims == "real":
        tokenizer, qwen_config, tree = real_tokenizer(), real_qwen_config(), real_train_config()
        generation = real_generation_config()
    elif dims == "tiny":
        tokenizer = build_tokenizer()
        qwen_config, tree = tiny_qwen_config(tokenizer), tiny_train_config()
        text = qwen_config.get_text_config()
        generation = GenerationConfig(
            bos_token_id=text.bos_token_id,
            eos_token_id=[text.eos_token_id, text.pad_token_id],
            pad_token_id=text.pad_token_id,
        )
    else:
        raise ValueError(f"dims must be one of {DIMS}, got {dims!r}")
    tokenizer.padding_side = "left"
    image_processor = Qwen2VLImageProcessorPil(min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS)
    config = M1Config.from_mapping(tree, source=f"{dims} config")
    return config, qwen_config, QwenProcessor(tokenizer, image_processor, generation)


def random_model(dims: Dims, *, device: str | torch.device = "cpu", seed: int = 0) -> InternVLAM1:
    """A float32 InternVLA-M1 of ``dims`` with random weights drawn on ``device`` (seeded), in eval mode.

    Real dimensions take about 15.5 GB in float32.
    """
    config, qwen_config, processor = model_parts(dims)
    device = torch.device(device)
    with torch.device(device):
        model = InternVLAM1(config, qwen_config, processor, tiny_norm_stats())
    randomize_parameters(model, torch.Generator(device).manual_seed(seed))
    return model.requires_grad_(False).eval()
