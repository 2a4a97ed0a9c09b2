"""``internvla-m1 bench`` in a short mode, and the real-size model it builds without a download."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from internvla_policy.model import InternVLAM1
from internvla_policy.model.cli import main
from internvla_policy.model.synthetic import REAL_TOKEN_IDS, model_parts, real_tokenizer
from internvla_policy.model.tiny import tiny_norm_stats

SHORT = ["--repeats", "2", "--warmup", "0", "--answer-tokens", "3", "--answer-repeats", "1"]
PATH_KEYS = {"p50", "p95", "first_call"}


def test_short_cpu_benchmark_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench_out"
    assert main(["bench", "--out", str(out), *SHORT]) == 0
    result = json.loads((out / "bench.json").read_text())
    assert result["device"].startswith("cpu") and result["dims"] == "tiny"
    for path in ("reference_ms", "fast_ms"):
        assert set(result[path]) == PATH_KEYS and all(value > 0 for value in result[path].values())
        assert result[path]["p50"] <= result[path]["p95"]
    assert result["speedup"] == pytest.approx(result["reference_ms"]["p50"] / result["fast_ms"]["p50"])
    # float32 on the CPU: the two paths agree to rounding, over every call made (first, then 2 timed)
    assert result["max_rel_err"] < 1e-5 and result["agreement_ok"] and result["calls"]["seeds_compared"] == 3
    for path in ("reference", "fast"):
        assert set(result["stages_ms"][path]) == {
            "preprocess",
            "vlm",
            "dino",
            "qformer",
            "dit",
            "postprocess",
        }
        assert result["stages_ms"][path]["dit"]["p50"] > 0
    assert result["input"]["prompt_tokens"] > 64 and result["input"]["ddim_steps"] == 10
    answer = result["answer"]
    assert answer["max_new_tokens"] == 3 and answer["token_ids_match"]
    assert set(answer["reference_ms"]) == set(answer["fast_ms"]) == PATH_KEYS
    assert result["versions"]["torch"] == torch.__version__ and result["model"]["fast_dtype"] == "float32"
    printed = capsys.readouterr().out
    assert "agreement: max relative error" in printed and "PASS" in printed and "end to end" in printed


def test_benchmark_of_a_run_folder_reports_loading_memory(tmp_path: Path, tiny_run: Path) -> None:
    out = tmp_path / "bench_out"
    assert main(["bench", str(tiny_run), "--out", str(out), *SHORT, "--answer-tokens", "0"]) == 0
    result = json.loads((out / "bench.json").read_text())
    assert result["dims"] == "checkpoint" and "answer" not in result and result["agreement_ok"]
    load = result["load"]
    # The weights must show up in the loader's own peak, and loading must not hold them several times.
    assert load["weights_in_memory_mb"] <= load["peak_rss_added_by_load_mb"]
    assert load["peak_rss_added_by_load_mb"] < 2 * load["weights_in_memory_mb"] + result["checkpoint_mb"] + 64


def test_benchmark_arguments_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--out", str(tmp_path), "--repeats", "0"]) == 1
    assert "--repeats" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["bench", "--out", str(tmp_path), "--device", "cuda"]) == 1
        assert "CUDA is not available" in capsys.readouterr().err


def test_real_size_model_has_the_released_keys_and_shapes(reference_dir: Path) -> None:
    config, qwen_config, processor = model_parts("real")
    with torch.device("meta"):
        model = InternVLAM1(config, qwen_config, processor, tiny_norm_stats())
    table = {}
    for line in (reference_dir / "m1_real_state_dict.tsv").read_text().splitlines()[1:]:
        key, shape, _, _ = line.split("\t")
        table[key] = json.loads(shape)
    assert {key: list(value.shape) for key, value in model.state_dict().items()} == table
    assert sum(p.numel() for p in model.parameters()) == 3_872_703_111  # m1_module_params.txt, unique


def test_real_tokenizer_has_qwen_ids_and_prompt_length() -> None:
    tokenizer = real_tokenizer()
    assert len(tokenizer) == 151665
    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in (
            ("bos", "<|endoftext|>"),
            ("eos", "<|im_end|>"),
            ("image", "<|image_pad|>"),
            ("video", "<|video_pad|>"),
            ("vision_start", "<|vision_start|>"),
            ("vision_end", "<|vision_end|>"),
        )
    }
    assert ids == {name: REAL_TOKEN_IDS[name] for name in ids}
    config, _, processor = model_parts("real")
    prompt = processor.render_prompt(1, config.cot_prompt.replace("{instruction}", "pick up the red block."))
    # the real Qwen tokenizer gives about 64 text tokens for this prompt (plus 64 image tokens at 224 px)
    assert 55 <= len(tokenizer(prompt)["input_ids"]) <= 75
