"""`internvla-ground parse`: the parser on stdin, JSON on stdout."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from internvla_grounding import cli

ANSWER = '```json\n[{"bbox_2d": [10, 20, 110, 120], "label": "red block"}, {"point_2d": [5,'


def run_main(monkeypatch, capsys, argv: list[str], stdin: str) -> tuple[int, dict]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_parse_prints_source_pixels_and_status(monkeypatch, capsys):
    code, out = run_main(
        monkeypatch, capsys, ["parse", "--source-size", "640", "480", "--model-size", "320", "240"], ANSWER
    )
    assert code == 0
    assert out["boxes"] == [
        {"label": "red block", "score": 1.0, "x_min": 20.0, "y_min": 40.0, "x_max": 220.0, "y_max": 240.0}
    ]
    assert out["points"] == [] and out["traces"] == []
    assert out["status"] == "partial"
    assert "truncated" in out["status_message"]


def test_normalized_coordinates_need_no_model_size(monkeypatch, capsys):
    code, out = run_main(
        monkeypatch,
        capsys,
        ["parse", "--source-size", "640", "480", "--normalized-1000"],
        '{"point_2d": [500, 500], "label": "cup"}',
    )
    assert code == 0
    assert out["points"] == [{"label": "cup", "score": 1.0, "x": 320.0, "y": 240.0}]
    assert out["status"] == "ok"


def test_kind_decides_how_pairs_are_read(monkeypatch, capsys):
    argv = ["parse", "--source-size", "100", "100", "--model-size", "100", "100", "--kind", "trace"]
    _, out = run_main(monkeypatch, capsys, argv, "[[1, 2], [3, 4]]")
    assert out["traces"] == [{"label": "", "score": 1.0, "points": [[1.0, 2.0], [3.0, 4.0]]}]


@pytest.mark.parametrize(
    "argv",
    [
        ["parse", "--source-size", "640", "480"],  # no model size, pixel coordinates
        ["parse", "--source-size", "0", "480", "--model-size", "320", "240"],
        ["parse", "--source-size", "640", "--model-size", "320", "240"],
        [],
    ],
)
def test_bad_arguments_exit_2(monkeypatch, capsys, argv):
    monkeypatch.setattr(sys, "stdin", io.StringIO("[]"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_module_runs_as_a_program():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "internvla_grounding.cli",
            "parse",
            "--source-size",
            "640",
            "480",
            "--model-size",
            "640",
            "480",
        ],
        input="I see nothing.",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["status"] == "failed"
    assert out["status_message"] == "no JSON or coordinate list found in the answer"
