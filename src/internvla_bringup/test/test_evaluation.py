"""Closed-loop evaluation through the policy core and the simulator (no DDS), and its command line."""

from __future__ import annotations

import json

import pytest

from internvla_bringup.eval_cli import main
from internvla_bringup.evaluation import (
    EpisodeResult,
    EvalSettings,
    approach,
    box_iou,
    evaluate,
    grounding_iou,
    summarize,
)
from internvla_policy.vision.geometry import Box2D, GroundingResult


def test_box_iou_by_hand() -> None:
    a = Box2D(0, 0, 10, 10, "a")
    assert box_iou(a, a) == 1.0
    assert box_iou(a, Box2D(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou(a, Box2D(10, 10, 20, 20)) == 0.0
    answer = GroundingResult(100, 100, boxes=(Box2D(0, 0, 10, 10, "Red Block"), Box2D(50, 50, 60, 60, "cup")))
    truth = {"red block": Box2D(0, 0, 10, 20, "red block"), "bowl": Box2D(40, 40, 80, 80, "bowl")}
    assert grounding_iou(answer, truth) == pytest.approx((0.5 + 0.0) / 2)  # labels match case-free; no bowl


def test_summary_separates_guidance_and_task_kinds() -> None:
    settings = EvalSettings(checkpoint="x", episodes=2, seed=5)
    results = [
        EpisodeResult(5, "overlay", "pick up the red block", "pick", True, 40, "[]", 0.5),
        EpisodeResult(5, "off", "pick up the red block", "pick", False, 200, None, None),
        EpisodeResult(6, "overlay", "put the red block in the bowl", "place_in_bowl", True, 90, "[]", 0.25),
        EpisodeResult(6, "off", "put the red block in the bowl", "place_in_bowl", True, 80, None, None),
    ]
    report = summarize(results, settings, 1.0)
    assert (report["success_rate"], report["success_rate_no_guidance"]) == (1.0, 0.5)
    assert report["per_task"]["pick"] == {"episodes": 1, "success_rate": 1.0, "success_rate_no_guidance": 0.0}
    assert report["episode_lengths"]["guidance"] == [40, 90] and report["grounding_iou"] == 0.375
    assert report["episode_lengths"]["mean_successful_no_guidance"] == 80.0 and report["seeds"] == [5, 6]


def test_approach_measures_by_hand() -> None:
    def run(move, offset, closest):
        task = "pick up the red block"
        return EpisodeResult(1, "off", task, "pick", False, 9, None, None, move, offset, closest)

    straight = run([0.02, 0.01], [0.2, 0.1], 0.05)
    sideways = run([0.0, 0.03], [0.1, 0.0], 0.15)
    backwards = run([0.02, 0.01], [-0.1, -0.2], 0.25)
    assert straight.heading_cos == pytest.approx(1.0) and sideways.heading_cos == pytest.approx(0.0)
    assert backwards.heading_cos == pytest.approx(-0.8)
    summary = approach([straight, sideways, backwards])
    assert summary["heading_cos"] == pytest.approx(0.2 / 3)
    assert summary["closest_approach_m"] == pytest.approx(0.15)
    # first-move y (0.01, 0.03, 0.01) against offset y (0.1, 0, -0.2): by hand, r = 0.1890
    assert summary["lateral_correlation"] == pytest.approx(0.1890, abs=1e-4)
    assert approach([]) == {"heading_cos": None, "lateral_correlation": None, "closest_approach_m": None}


def test_two_short_episodes_write_eval_json(tmp_path, small_run) -> None:
    out = tmp_path / "eval_out"
    args = ["--checkpoint", str(small_run), "--episodes", "1", "--max-steps", "3", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["episodes"] == 1 and report["guidance_mode"] == "overlay"
    assert [(r["mode"], r["steps"]) for r in report["runs"]] == [("overlay", 3), ("off", 3)]
    assert report["success_rate"] == 0.0 and report["success_rate_no_guidance"] == 0.0  # random weights
    assert (
        report["runs"][0]["task"] == "pick up the blue block" and report["runs"][1]["grounding_iou"] is None
    )
    assert 0.0 <= report["grounding_iou"] <= 1.0 and isinstance(report["runs"][0]["grounding_answer"], str)
    first = report["runs"][0]
    assert len(first["first_move_m"]) == 2 and len(first["target_offset_m"]) == 2
    assert 0.0 < first["closest_approach_m"] < 1.0
    assert -1.0 <= report["approach"]["guidance"]["heading_cos"] <= 1.0


def test_guidance_off_only_and_bad_arguments(tmp_path, small_run, capsys) -> None:
    out = tmp_path / "off_only"
    args = ["--checkpoint", str(small_run), "--episodes", "1", "--max-steps", "2", "--guidance", "off"]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["success_rate"] is None and report["success_rate_no_guidance"] == 0.0
    assert report["grounding_iou"] is None
    assert main(["--checkpoint", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "missing" in capsys.readouterr().err


def test_workers_split_the_seeds_and_agree_with_one_process(tmp_path, small_run) -> None:
    settings = EvalSettings(checkpoint=str(small_run), episodes=2, seed=3, max_steps=3, modes=("off",))
    alone = evaluate(settings, tmp_path / "one")
    shared = evaluate(settings, tmp_path / "two", workers=2)
    assert [r["seed"] for r in shared["runs"]] == [3, 4]
    strip = ("wall_time_s",)
    assert {k: v for k, v in shared.items() if k not in strip} == {
        k: v for k, v in alone.items() if k not in strip
    }
    assert json.loads((tmp_path / "two" / "eval.json").read_text())["runs"] == shared["runs"]
