"""The internvla-m1 console script: info, predict, answer, tiny, and user errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from internvla_policy.model import InternVLAM1
from internvla_policy.model.cli import main


def test_info(tiny_run: Path, tiny_model: InternVLAM1, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    for name, count in tiny_model.parameter_counts().items():
        assert f"{name}" in out and f"{count:,}" in out
    assert "unnorm keys:  franka" in out
    assert "tensors in bfloat16, keys and shapes match the config" in out
    assert "DiT-S, 7-D actions, 16-step chunks" in out


def test_predict_writes_the_api_result(
    tmp_path: Path,
    tiny_run: Path,
    tiny_model: InternVLAM1,
    rgb: np.ndarray,
    capsys: pytest.CaptureFixture[str],
) -> None:
    png, npy = tmp_path / "view.png", tmp_path / "wrist.npy"
    Image.fromarray(rgb).save(png)
    np.save(npy, rgb[::2, ::2].copy())
    out = tmp_path / "out" / "chunk.json"
    argv = [
        "predict",
        str(tiny_run),
        "--image",
        str(png),
        "--image",
        str(npy),
        "--instruction",
        "Open the drawer.",
        "--seed",
        "7",
        "--cfg-scale",
        "1.0",
        "--ddim-steps",
        "5",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    expected = tiny_model.predict_action(
        [[rgb, rgb[::2, ::2].copy()]], ["Open the drawer."], seed=7, cfg_scale=1.0, ddim_steps=5
    )
    np.testing.assert_array_equal(
        np.array(result["normalized_actions"], dtype=np.float32), expected.normalized[0]
    )
    np.testing.assert_array_equal(np.array(result["actions"]), expected.actions[0])
    assert result["unnorm_key"] == "franka" and result["seed"] == 7 and result["ddim_steps"] == 5
    assert set(result["timings_s"]) >= {"vlm", "dino", "qformer", "dit"}


def test_predict_reproduces_reference_case(tmp_path: Path, tiny_a: Path, case0) -> None:
    out = tmp_path / "chunk.json"
    image = case0.folder / case0.meta["image_files"][0][0]
    argv = [
        "predict",
        str(tiny_a / "run"),
        "--image",
        str(image),
        "--instruction",
        case0.meta["instructions"][0],
        "--seed",
        str(case0.meta["seed"]),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    np.testing.assert_allclose(
        result["normalized_actions"], case0.array("cfg1.5/normalized_actions.npy")[0], atol=1e-4
    )


def test_answer_and_tiny(
    tmp_path: Path, tiny_model: InternVLAM1, rgb: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tiny", str(tmp_path / "run"), "--seed", "0"]) == 0
    capsys.readouterr()
    png = tmp_path / "view.png"
    Image.fromarray(rgb).save(png)
    assert (
        main(
            [
                "answer",
                str(tmp_path / "run"),
                "--image",
                str(png),
                "--prompt",
                "Point to the cup.",
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == tiny_model.answer(rgb, "Point to the cup.", max_new_tokens=4) + "\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--image", "missing.png"], "image not found: missing.png"),
        (["--image", "{npy}"], "expected a uint8 RGB array of shape (H, W, 3), got a float32"),
        (["--image", "{png}", "--unnorm-key", "bridge"], "unknown unnorm_key 'bridge'; available: franka"),
        (
            ["--image", "{png}", "--device", "cuda:7"]
            if not torch.cuda.is_available()
            else ["--image", "missing.png"],
            "not available" if not torch.cuda.is_available() else "image not found",
        ),
    ],
    ids=["missing-image", "float-npy", "unnorm-key", "device"],
)
def test_user_errors_exit_1_with_one_line(
    tmp_path: Path,
    tiny_run: Path,
    rgb: np.ndarray,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    np.save(tmp_path / "float.npy", rgb.astype(np.float32))
    Image.fromarray(rgb).save(tmp_path / "view.png")
    extra = [arg.format(npy=tmp_path / "float.npy", png=tmp_path / "view.png") for arg in extra]
    argv = ["predict", str(tiny_run), *extra, "--instruction", "x", "--out", str(tmp_path / "o.json")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("internvla-m1: error: ") and message in err


def test_corrupt_checkpoint_in_a_real_process(tmp_path: Path, tiny_run: Path) -> None:
    """The console script's behaviour as a process: status 1, the file named, no traceback."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "dataset_statistics.json"):
        (run / name).write_bytes((tiny_run / name).read_bytes())
    checkpoint = run / "checkpoints" / "steps_3_pytorch_model.pt"
    checkpoint.write_bytes((tiny_run / "checkpoints" / "steps_0_pytorch_model.pt").read_bytes()[:50_000])
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "internvla_policy.model.cli",
            "info",
            str(run),
            "--base-vlm",
            str(tiny_run / "base_vlm"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert completed.stderr.startswith(
        f"internvla-m1: error: {checkpoint}: cannot read the checkpoint (truncated"
    )
