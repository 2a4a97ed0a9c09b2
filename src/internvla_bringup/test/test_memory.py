"""The soak's judgement with plain numbers: RSS read from /proc, process trees, flatness, gaps.

The soak itself (test/ros/test_soak.py) takes ten minutes; these say in a second that a leak would
be caught and that noise, a warm-up or a helper process would not fool the verdict.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from internvla_bringup.memory import (
    MIB,
    FlatnessRule,
    judge,
    judge_node,
    process_tree,
    rss_bytes,
    tree_rss_bytes,
)
from internvla_bringup.soak import SoakSettings, longest_gap_s

RULE = FlatnessRule(bound_mib=50.0, warmup_s=120.0, window_s=30.0)


def _series(
    mib_at: Callable[[float], float], duration_s: float = 600.0, period_s: float = 2.0
) -> list[tuple[float, int]]:
    return [(t * period_s, int(mib_at(t * period_s) * MIB)) for t in range(int(duration_s / period_s) + 1)]


def test_a_flat_node_passes_whatever_it_did_in_the_warm_up():
    # 300 MiB of model loading and first inferences, then flat with +-5 MiB of allocator noise.
    growth = judge_node(_series(lambda t: 300 + min(t, 100) * 3 + (5 if int(t) % 4 else -5)), RULE)
    assert growth.flat
    assert abs(growth.growth_mib) <= 10 and growth.start_mib == pytest.approx(600, abs=5)
    assert growth.samples == 241  # 120 s .. 600 s every 2 s


def test_a_steady_leak_beyond_the_bound_fails():
    # 8 MiB a minute: 64 MiB over the judged 480 s, which an hour would make 480 MiB.
    growth = judge_node(_series(lambda t: 500 + t * 8 / 60), RULE)
    assert not growth.flat
    assert growth.growth_mib == pytest.approx(60, abs=3)  # medians of the first and last 30 s
    assert growth.slope_mib_per_h == pytest.approx(480, rel=0.01)


def test_one_spike_at_either_end_decides_nothing():
    spikes = {120.0: 400, 600.0: 400}  # the first judged sample and the last
    growth = judge_node(_series(lambda t: 500 + spikes.get(t, 0)), RULE)
    assert growth.flat and growth.growth_mib == 0 and growth.peak_mib == 900


def test_judge_names_every_node_and_a_run_too_short_is_an_error():
    result = judge({"sim_robot": _series(lambda t: 250), "inference": _series(lambda t: 570 + t)}, RULE)
    assert result["sim_robot"].flat and not result["inference"].flat
    with pytest.raises(ValueError, match="too short"):
        judge_node(_series(lambda t: 250, duration_s=100.0), RULE)


def test_the_warm_up_is_a_fifth_of_the_run():
    assert SoakSettings(out_dir=Path(), duration_s=600).rule == RULE
    assert SoakSettings(out_dir=Path(), duration_s=3600).rule.warmup_s == 720


def test_longest_gap_counts_the_edges_and_an_empty_span():
    assert longest_gap_s([12.0, 13.0, 30.0], 10.0, 40.0) == 17.0
    assert longest_gap_s([11.0, 39.0], 10.0, 40.0) == 28.0
    assert longest_gap_s([1.0, 50.0], 10.0, 40.0) == 30.0, "events outside the span do not count"


def _fake_proc(root: Path, processes: dict[int, tuple[int, str, int | None]]) -> Path:
    """A /proc with ``pid: (parent, command name, VmRSS kB or None for a zombie)``."""
    for pid, (parent, name, rss_kb) in processes.items():
        folder = root / str(pid)
        folder.mkdir(parents=True)
        (folder / "stat").write_text(f"{pid} ({name}) S {parent} {pid} {pid} 0 -1 4194560 0 0\n")
        rss = f"VmRSS:\t{rss_kb} kB\n" if rss_kb is not None else ""
        (folder / "status").write_text(f"Name:\t{name}\nState:\tS\n{rss}Threads:\t4\n")
    (root / "self").mkdir()
    return root


def test_a_node_is_charged_for_the_processes_it_started(tmp_path):
    proc = _fake_proc(
        tmp_path,
        {
            100: (1, "python", 1000),
            101: (100, "a) b (helper", 200),  # a name with ") " must not shift the parent field
            102: (101, "worker", 30),
            103: (100, "zombie", None),
            200: (1, "other node", 5000),
        },
    )
    assert sorted(process_tree(100, proc)) == [100, 101, 102, 103]
    assert rss_bytes(103, proc) is None and rss_bytes(999, proc) is None
    assert tree_rss_bytes(100, proc) == (1000 + 200 + 30) * 1024
    assert tree_rss_bytes(999, proc) is None


def test_the_real_proc_sees_a_child_of_this_process():
    command = [sys.executable, "-c", "print('ready', flush=True); import time; time.sleep(30)"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout.readline() == "ready\n"
            assert child.pid in process_tree(os.getpid())
            assert tree_rss_bytes(child.pid) == rss_bytes(child.pid) > 0
            assert tree_rss_bytes(os.getpid()) > rss_bytes(os.getpid())
        finally:
            child.kill()
