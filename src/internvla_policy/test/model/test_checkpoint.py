"""Loading: both Qwen key layouts, safetensors, dtypes, run-folder resolution, and every refusal."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from internvla_policy.model import CheckpointError, InternVLAM1
from internvla_policy.model.checkpoint import canonical_key, locate_run, read_state_dict

QWEN = "qwen_vl_interface.model."
LM_HEAD = f"{QWEN}lm_head.weight"


def legacy_key(key: str) -> str:
    """The pre-4.52 transformers name of a key (``visual.*`` and ``model.layers``), as HF hub files use."""
    if key.startswith(f"{QWEN}model.visual."):
        return QWEN + key[len(f"{QWEN}model.") :]
    if key.startswith(f"{QWEN}model.language_model."):
        return f"{QWEN}model." + key[len(f"{QWEN}model.language_model.") :]
    return key


def make_run(source_run: Path, destination: Path, state: dict[str, torch.Tensor], name: str) -> Path:
    """A run folder with ``source_run``'s config and statistics and ``state`` saved as ``name``."""
    (destination / "checkpoints").mkdir(parents=True)
    for file in ("config.yaml", "dataset_statistics.json"):
        shutil.copy(source_run / file, destination / file)
    path = destination / "checkpoints" / name
    if path.suffix == ".safetensors":
        save_file({key: value.contiguous() for key, value in state.items()}, path)
    else:
        torch.save(state, path)
    return destination


def tiny_state(run: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(locate_run(run).checkpoint)


# --------------------------------------------------------------------- key layouts (reference checkpoint)


@pytest.mark.parametrize(
    ("layout", "file_name"),
    [
        ("current", "steps_0_pytorch_model.pt"),
        ("legacy", "steps_0_pytorch_model.pt"),
        ("current", "steps_0_pytorch_model.safetensors"),
        ("legacy", "steps_0_pytorch_model.safetensors"),
    ],
)
def test_reference_checkpoint_loads_through_each_layout(
    tmp_path: Path, tiny_a: Path, case0, reference_model: InternVLAM1, layout: str, file_name: str
) -> None:
    state = tiny_state(tiny_a / "run")
    if layout == "legacy" or file_name.endswith(".safetensors"):
        state.pop(LM_HEAD)  # tied: HF hub files and safetensors (no shared tensors) leave it out
    if layout == "legacy":
        state = {legacy_key(key): value for key, value in state.items()}
        assert any(key.startswith(f"{QWEN}visual.") for key in state)
    run = make_run(tiny_a / "run", tmp_path / "run", state, file_name)
    model = InternVLAM1.from_pretrained(run, base_vlm=tiny_a / "base_vlm")

    ours = model.predict_action(case0.images(), case0.meta["instructions"], seed=case0.meta["seed"])
    reference = reference_model.predict_action(
        case0.images(), case0.meta["instructions"], seed=case0.meta["seed"]
    )
    np.testing.assert_array_equal(ours.normalized, reference.normalized)
    np.testing.assert_allclose(
        ours.normalized, case0.array("cfg1.5/normalized_actions.npy"), atol=1e-4, rtol=0
    )


def test_checkpoint_file_path_resolves_its_run(tiny_a: Path, reference_model: InternVLAM1) -> None:
    checkpoint = locate_run(tiny_a / "run").checkpoint
    model = InternVLAM1.from_pretrained(checkpoint)
    assert torch.equal(model.dino_pro.weight, reference_model.dino_pro.weight)


def test_canonical_key_maps_legacy_names_and_keeps_others() -> None:
    assert (
        canonical_key(f"{QWEN}visual.blocks.0.attn.qkv.weight")
        == f"{QWEN}model.visual.blocks.0.attn.qkv.weight"
    )
    assert canonical_key(f"{QWEN}model.layers.3.mlp.up_proj.weight") == (
        f"{QWEN}model.language_model.layers.3.mlp.up_proj.weight"
    )
    assert canonical_key(f"{QWEN}model.norm.weight") == f"{QWEN}model.language_model.norm.weight"
    for unchanged in (
        f"{QWEN}model.language_model.norm.weight",
        f"{QWEN}model.visual.merger.ln_q.weight",
        LM_HEAD,
        "dino_pro.weight",
        "action_model.net.blocks.0.attn.qkv.weight",
    ):
        assert canonical_key(unchanged) == unchanged


# --------------------------------------------------------------------- dtypes and materialisation


def test_bf16_file_loads_exactly_into_float32(tiny_run: Path, tiny_model: InternVLAM1) -> None:
    state = tiny_state(tiny_run)
    assert state["dino_pro.weight"].dtype == torch.bfloat16
    assert tiny_model.dino_pro.weight.dtype == torch.float32
    assert torch.equal(tiny_model.dino_pro.weight, state["dino_pro.weight"].float())
    assert not any(t.is_meta for t in [*tiny_model.parameters(), *tiny_model.buffers()])
    qwen = tiny_model.qwen_vl_interface.model
    assert qwen.lm_head.weight is qwen.model.language_model.embed_tokens.weight
    assert not tiny_model.training


def test_bfloat16_model_keeps_rotary_frequencies_in_float32(tiny_run: Path, rgb: np.ndarray) -> None:
    model = InternVLAM1.from_pretrained(tiny_run, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {b.dtype for b in model.buffers()} == {torch.float32}
    prediction = model.predict_action([[rgb]], ["pick up the red block."], seed=0)
    assert prediction.normalized.dtype == np.float32
    assert np.isfinite(prediction.normalized).all()


def test_newest_step_is_default_and_step_selects(tmp_path: Path, tiny_run: Path) -> None:
    run = make_run(tiny_run, tmp_path / "run", tiny_state(tiny_run), "steps_10_pytorch_model.pt")
    shutil.copy(locate_run(tiny_run).checkpoint, run / "checkpoints" / "steps_2_pytorch_model.pt")
    assert locate_run(run).checkpoint.name == "steps_10_pytorch_model.pt"
    assert locate_run(run, step=2).checkpoint.name == "steps_2_pytorch_model.pt"
    with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 3; steps present: \[2, 10\]"):
        locate_run(run, step=3)


def test_a_dangling_link_to_a_removed_newer_step_is_skipped(tmp_path: Path, tiny_run: Path) -> None:
    """What a symlink install of a retrained run leaves behind: a link to weights that are gone."""
    run = make_run(tiny_run, tmp_path / "run", tiny_state(tiny_run), "steps_10_pytorch_model.pt")
    (run / "checkpoints" / "steps_99_pytorch_model.pt").symlink_to(tmp_path / "removed.pt")
    assert locate_run(run).checkpoint.name == "steps_10_pytorch_model.pt"


# --------------------------------------------------------------------- refusals


def _load_error(run: Path, **kwargs: object) -> str:
    with pytest.raises(CheckpointError) as raised:
        InternVLAM1.from_pretrained(run, **kwargs)
    return str(raised.value)


def test_truncated_checkpoint(tmp_path: Path, tiny_run: Path) -> None:
    run = make_run(tiny_run, tmp_path / "run", {}, "steps_0_pytorch_model.pt")
    checkpoint = run / "checkpoints" / "steps_0_pytorch_model.pt"
    checkpoint.write_bytes(locate_run(tiny_run).checkpoint.read_bytes()[:100_000])
    message = _load_error(run, base_vlm=tiny_run / "base_vlm")
    assert str(checkpoint) in message and "truncated or corrupt" in message


def test_checkpoint_with_code_is_refused(tmp_path: Path, tiny_run: Path) -> None:
    run = make_run(tiny_run, tmp_path / "run", {}, "steps_0_pytorch_model.pt")
    torch.save({"weights": Path("not a tensor")}, run / "checkpoints" / "steps_0_pytorch_model.pt")
    assert "weights_only=True" in _load_error(run, base_vlm=tiny_run / "base_vlm")


def test_checkpoint_that_is_not_a_state_dict(tmp_path: Path, tiny_run: Path) -> None:
    run = make_run(tiny_run, tmp_path / "run", {}, "steps_0_pytorch_model.pt")
    torch.save([torch.zeros(2)], run / "checkpoints" / "steps_0_pytorch_model.pt")
    assert "expected a state_dict" in _load_error(run, base_vlm=tiny_run / "base_vlm")


def test_missing_and_unexpected_keys_are_grouped(tmp_path: Path, tiny_run: Path) -> None:
    state = tiny_state(tiny_run)
    del state["action_model.net.blocks.3.mlp.fc1.weight"]
    state["dino_encoder.body.blocks.7.ls1.gamma"] = torch.ones(384)
    run = make_run(tiny_run, tmp_path / "run", state, "steps_0_pytorch_model.pt")
    message = _load_error(run, base_vlm=tiny_run / "base_vlm")
    assert "does not match the model config.yaml describes" in message
    assert "missing keys (1):\n  action_model [1]: net.blocks.N.mlp.fc1.weight" in message
    assert "unexpected keys (1):\n  dino_encoder [1]: body.blocks.N.ls1.gamma" in message


def _with_config_change(tmp_path: Path, tiny_run: Path, section: str, key: str, value: object) -> Path:
    run = make_run(tiny_run, tmp_path / "run", tiny_state(tiny_run), "steps_0_pytorch_model.pt")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["framework"][section][key] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def test_config_with_more_blocks_than_checkpoint(tmp_path: Path, tiny_run: Path) -> None:
    run = _with_config_change(tmp_path, tiny_run, "dino", "depth", 2)
    message = _load_error(run, base_vlm=tiny_run / "base_vlm")
    assert "missing keys (14):\n  dino_encoder [14]: body.blocks.N.attn.proj.bias, " in message


def test_other_action_space_reports_shape_mismatches(tmp_path: Path, tiny_run: Path) -> None:
    run = _with_config_change(tmp_path, tiny_run, "action_model", "action_dim", 6)
    message = _load_error(run, base_vlm=tiny_run / "base_vlm")
    assert "shape mismatches (4), checkpoint vs model:\n" in message
    assert "  action_model.net.x_embedder.linear.weight: (384, 7) vs (384, 6)" in message


def test_other_architecture_is_named(tmp_path: Path, tiny_run: Path) -> None:
    state = {"encoder.layers.0.weight": torch.zeros(4, 4), "head.bias": torch.zeros(4)}
    run = make_run(tiny_run, tmp_path / "run", state, "steps_0_pytorch_model.pt")
    message = _load_error(run, base_vlm=tiny_run / "base_vlm")
    assert "does not look like an InternVLA-M1 checkpoint" in message
    assert "unexpected keys (2):\n  encoder [1]: layers.N.weight\n  head [1]: bias" in message


def test_mixed_layouts_are_refused(tmp_path: Path, tiny_run: Path) -> None:
    state = tiny_state(tiny_run)
    key = f"{QWEN}model.language_model.norm.weight"
    state[legacy_key(key)] = state[key]
    run = make_run(tiny_run, tmp_path / "run", state, "steps_0_pytorch_model.pt")
    assert f"holds {key} twice" in _load_error(run, base_vlm=tiny_run / "base_vlm")


def test_foreign_framework_is_refused(tmp_path: Path, tiny_run: Path) -> None:
    run = make_run(tiny_run, tmp_path / "run", {}, "steps_0_pytorch_model.pt")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["framework"]["framework_py"] = "QwenGR00T"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert "'QwenGR00T'" in _load_error(run, base_vlm=tiny_run / "base_vlm")


@pytest.mark.parametrize("missing", ["config.yaml", "dataset_statistics.json"])
def test_missing_run_file_is_named(tmp_path: Path, tiny_run: Path, missing: str) -> None:
    run = make_run(tiny_run, tmp_path / "run", {}, "steps_0_pytorch_model.pt")
    (run / missing).unlink()
    with pytest.raises(FileNotFoundError, match=str(run / missing)):
        InternVLAM1.from_pretrained(run)


def test_missing_paths_are_named(tmp_path: Path, tiny_run: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint"):
        InternVLAM1.from_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no checkpoints/steps_<N>_pytorch_model\.pt"):
        InternVLAM1.from_pretrained(empty)
    run = make_run(tiny_run, tmp_path / "run", {}, "steps_0_pytorch_model.pt")
    with pytest.raises(FileNotFoundError, match=r"base VLM folder './base_vlm'.*--base-vlm"):
        InternVLAM1.from_pretrained(run)
    with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
        InternVLAM1.from_pretrained(run, base_vlm=run)
