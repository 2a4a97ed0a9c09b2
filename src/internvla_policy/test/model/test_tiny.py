"""The tiny model and offline tokenizer the project builds for itself."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoTokenizer

from internvla_policy.model.checkpoint import locate_run, read_state_dict
from internvla_policy.model.tiny import write_tiny_run
from internvla_policy.model.tiny_tokenizer import QWEN25_VL_CHAT_TEMPLATE, build_tokenizer


def test_run_layout(tiny_run: Path) -> None:
    files = locate_run(tiny_run)
    assert files.checkpoint == tiny_run / "checkpoints" / "steps_0_pytorch_model.pt"
    expected = {
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    }
    assert expected <= {p.name for p in (tiny_run / "base_vlm").iterdir()}
    assert json.loads(files.statistics.read_text())["franka"]["action"]["mask"][-1] is False


def test_same_seed_same_weights_and_tokenizer(tmp_path: Path, tiny_run: Path) -> None:
    again = write_tiny_run(tmp_path / "again", seed=0)
    other = write_tiny_run(tmp_path / "other", seed=1)
    first = read_state_dict(locate_run(tiny_run).checkpoint)
    second = read_state_dict(locate_run(again).checkpoint)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not torch.equal(
        first["dino_pro.weight"], read_state_dict(locate_run(other).checkpoint)["dino_pro.weight"]
    )
    assert (tiny_run / "base_vlm" / "tokenizer.json").read_bytes() == (
        again / "base_vlm" / "tokenizer.json"
    ).read_bytes()


def test_tokenizer_has_qwen_special_tokens_in_order(tiny_run: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_run / "base_vlm")
    added = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|image_pad|>",
        "<|file_sep|>",
    ]
    assert tokenizer.convert_tokens_to_ids(added) == [320, 321, 322, 329, 332, 341]
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
    )
    ids = tokenizer("pick up the red block")["input_ids"]
    assert tokenizer.decode(ids) == "pick up the red block" and len(ids) < len("pick up the red block")


def test_tokenizer_matches_reference_added_tokens_and_template(tiny_a: Path) -> None:
    """Same added-token table and chat template as the Qwen2.5-VL-shaped tokenizer of the fixture."""
    ours = build_tokenizer()
    reference_added = json.loads((tiny_a / "base_vlm" / "added_tokens.json").read_text())
    assert {token: ours.convert_tokens_to_ids(token) for token in reference_added} == reference_added
    assert (tiny_a / "base_vlm" / "chat_template.jinja").read_text() == QWEN25_VL_CHAT_TEMPLATE
