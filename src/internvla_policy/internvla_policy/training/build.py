"""Models to train: a new small one with the released architecture, or an existing run to fine-tune.

A new model gets the released module graph and key names at chosen dimensions (``ModelDims``), a
tokenizer trained on the texts it will read and write (the task family's instructions and grounding
answers, so sequences stay short), and upstream-style initialisation of the parameters that the
inference modules create as zeros (position tables, learned queries, the "no condition" tokens).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from internvla_policy.model import InternVLAM1, M1Config
from internvla_policy.model.checkpoint import locate_run
from internvla_policy.model.internvla_m1 import resolve_base_vlm
from internvla_policy.model.qwen import QwenProcessor, load_qwen_config
from internvla_policy.model.tiny import ModelDims, tiny_train_config, write_tiny_base_vlm
from internvla_policy.model.tiny_tokenizer import CORPUS, build_tokenizer

BASE_VLM_DIR = "base_vlm"
DEFAULT_MODEL_DIMS = ModelDims(
    qwen_hidden=128,
    qwen_intermediate=256,
    qwen_layers=4,
    qwen_heads=4,
    qwen_kv_heads=2,
    vision_hidden=96,
    vision_intermediate=192,
    vision_depth=2,
    vision_heads=4,
    dino_depth=2,
    dino_width=192,
    dino_heads=3,
    dino_short_side=112,
    num_query_tokens=64,
    action_width=128,
    action_depth=4,
    action_heads=4,
    image_size=112,
    cot_prompt=None,
)
"""The built-in model: the released module graph at widths that train on a CPU within an hour.
112 px views (4x4 Qwen tokens and 8x8 DINO patches each), no chain-of-thought prompt (short inputs),
and upstream's 64 Q-Former queries: enough of them to carry where things are in both views."""
SMALL_MODEL_DIMS = ModelDims(
    qwen_hidden=32,
    qwen_intermediate=64,
    qwen_layers=2,
    qwen_heads=2,
    qwen_kv_heads=1,
    vision_hidden=32,
    vision_intermediate=64,
    vision_depth=1,
    vision_heads=2,
    dino_depth=1,
    dino_width=32,
    dino_heads=2,
    dino_short_side=56,
    num_query_tokens=4,
    action_width=32,
    action_depth=1,
    action_heads=2,
    image_size=56,
    cot_prompt=None,
)
"""The smallest model the builder makes that still exercises every module: 56 px views, widths of 32,
4 queries. Tests train it and run it in closed loop in seconds."""
TOKENIZER_VOCAB = 1024
"""BPE vocabulary asked of the tokenizer trainer; a small corpus stops merging earlier."""
POSITION_STD = 0.02  # upstream's trunc_normal/normal std for position tables, tokens and queries
COORDINATE_EXAMPLES = 8
"""Sentences of every pixel coordinate in the tokenizer corpus, so digits and JSON punctuation merge."""


def tokenizer_corpus(texts: Sequence[str], max_coordinate: int) -> list[str]:
    """The built-in corpus plus ``texts`` (instructions, prompts, answers) and coordinate lists."""
    numbers = " ".join(f"[{v}, {v}]," for v in range(max_coordinate + 1))
    return [*CORPUS, *texts, *[numbers] * COORDINATE_EXAMPLES]


def new_model(
    run_dir: Path,
    dims: ModelDims,
    norm_stats: Mapping[str, Any],
    corpus: Sequence[str],
    seed: int,
) -> tuple[InternVLAM1, dict[str, Any]]:
    """A freshly initialised model and its config tree; its base VLM folder is written to ``run_dir``.

    The config tree is what goes into the run's config.yaml (the loader rebuilds the same model).
    """
    torch.manual_seed(seed)
    base_dir = write_tiny_base_vlm(run_dir / BASE_VLM_DIR, dims, build_tokenizer(TOKENIZER_VOCAB, corpus))
    tree = tiny_train_config(f"./{BASE_VLM_DIR}", dims)
    tree["run_id"] = run_dir.name
    config = M1Config.from_mapping(tree, source="new model config")
    processor = QwenProcessor.from_dir(base_dir)
    model = InternVLAM1(config, load_qwen_config(base_dir), processor, dict(norm_stats))
    initialize_new_parameters(model, torch.Generator().manual_seed(seed))
    return model.train(), tree


@torch.no_grad()
def initialize_new_parameters(model: InternVLAM1, generator: torch.Generator) -> None:
    """Give the tables the inference modules create as zeros their training initialisation.

    DINO's position table: the 2-D sine-cosine table of MAE, so that patch tokens say where they are
    from the first step (a model trained from scratch on little compute cannot wait for a random table
    to become one, and locating the target is most of this task). DINO's class token, the Q-Former
    queries and the DiT position table: normal with std 0.02; the DiT's "no condition" tokens: normal
    scaled by 1/sqrt(width); the DiT's last layer: zero, so the first noise prediction is zero (DiT's
    convention). Qwen initialises itself, except for the scale of its image tokens
    (``match_image_token_scale``).
    """
    net = model.action_model.net
    body = model.dino_encoder.body
    for table in (body.cls_token, model.layer_qformer.query_tokens, net.positional_embedding):
        table.copy_(torch.randn(table.shape, generator=generator) * POSITION_STD)
    grid = math.isqrt(body.pos_embed.shape[1] - 1)
    body.pos_embed[0, 0].zero_()
    body.pos_embed[0, 1:].copy_(sincos_2d(grid, body.pos_embed.shape[-1]))
    uncondition = net.z_embedder.uncondition
    uncondition.copy_(torch.randn(uncondition.shape, generator=generator) / math.sqrt(uncondition.shape[-1]))
    nn.init.zeros_(net.final_layer.linear.weight)
    nn.init.zeros_(net.final_layer.linear.bias)
    match_image_token_scale(model, generator)


@torch.no_grad()
def match_image_token_scale(model: InternVLAM1, generator: torch.Generator) -> None:
    """Scale the vision merger's output layer so that image tokens enter Qwen's decoder at the RMS of
    its text embeddings.

    With transformers' initialisation (every matrix normal with std 0.02) the merger's two layers put
    the image tokens at about four times the text tokens' RMS (0.082 against 0.020 in the built-in
    model); the published model ended its training at 12 against 0.05, where the decoder layers no
    longer change the image tokens (docs/training/README.md). This sets the start only; training keeps
    the scales near each other with a slower merger (``TrainSettings.merger_lr_scale``). The merger's
    output is linear in its last weight (whose bias starts at zero), so one probe image of random
    pixels at the model's view size (new models always set one) measures the factor.
    """
    qwen = model.qwen_vl_interface.model.model
    width, height = model.config.image_size
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    inputs = model.qwen_inputs([[Image.fromarray(pixels.numpy())]], [""])
    tokens = qwen.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output[0]
    text_rms = qwen.language_model.embed_tokens.weight.square().mean().sqrt()
    qwen.visual.merger.mlp[-1].weight.mul_(text_rms / tokens.square().mean().sqrt())


def sincos_2d(grid: int, width: int) -> torch.Tensor:
    """[grid * grid, width] 2-D sine-cosine position table (row-major): half the channels encode the row,
    half the column, each as sines and cosines of geometrically spaced frequencies."""
    quarter = width // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    parts = []
    for coordinate in (rows, columns):
        angles = coordinate.reshape(-1, 1).double() * frequencies
        parts += [angles.sin(), angles.cos()]
    table = torch.cat(parts, dim=1)
    return torch.nn.functional.pad(table, (0, width - table.shape[1])).float()


def pretrained_model(
    source: Path, run_dir: Path, norm_stats: Mapping[str, Any]
) -> tuple[InternVLAM1, dict[str, Any]]:
    """An existing run, to fine-tune into ``run_dir`` with new statistics; returns it and its config tree.

    A base VLM folder inside the source run is copied into the new run (small models keep their own
    tokenizer there); one elsewhere is referenced by its absolute path.
    """
    files = locate_run(source)
    model = InternVLAM1.from_pretrained(files.checkpoint)
    tree = dict(model.config.raw)
    base_dir = resolve_base_vlm(model.config.base_vlm, files.run_dir, None).resolve()
    if base_dir.is_relative_to(files.run_dir.resolve()):
        shutil.copytree(base_dir, run_dir / BASE_VLM_DIR, dirs_exist_ok=True)
        base_vlm = f"./{BASE_VLM_DIR}"
    else:
        base_vlm = str(base_dir)
    tree["framework"] = {**tree["framework"], "qwenvl": {**tree["framework"]["qwenvl"], "base_vlm": base_vlm}}
    tree["run_id"] = run_dir.name
    model.norm_stats = dict(norm_stats)
    return model.requires_grad_(True).train(), tree
