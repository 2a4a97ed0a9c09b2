"""Resident memory of a graph's processes, and whether it stayed flat: the soak's ROS-free half.

A node that leaks a little per message (a growing queue, a cache keyed by stamp, a tensor kept per
chunk) looks healthy in a one-minute test and falls over after hours on a robot. The soak
(``internvla_bringup.soak``) samples each node's RSS while the graph runs at full camera rate; this
module reads the numbers from ``/proc`` and judges them, so the judgement is unit-tested with
plain numbers and no graph.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
MIB = 1024 * 1024


def _children_by_parent(proc: Path) -> dict[int, list[int]]:
    """Every live process's children, from ``/proc/<pid>/stat`` (field 4 is the parent's pid)."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended between the listing and the read
            continue
        # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(pid: int, proc: Path = PROC) -> list[int]:
    """``pid`` and every process below it: a node that starts helpers is charged for their memory too."""
    children = _children_by_parent(proc)
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, ()))
    return tree


def rss_bytes(pid: int, proc: Path = PROC) -> int | None:
    """``VmRSS`` of one process in bytes; None once it has exited (or is a zombie, which has none)."""
    try:
        lines = (proc / str(pid) / "status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            assert unit == "kB", line
            return int(value) * 1024
    return None


def tree_rss_bytes(pid: int, proc: Path = PROC) -> int | None:
    """RSS of ``pid`` and its descendants, summed; None when ``pid`` itself has exited."""
    own = rss_bytes(pid, proc)
    if own is None:
        return None
    return own + sum(rss_bytes(child, proc) or 0 for child in process_tree(pid, proc)[1:])


@dataclass(frozen=True)
class FlatnessRule:
    """What "flat" means: after ``warmup_s``, RSS grows by at most ``bound_mib``.

    Start and end are medians over ``window_s`` (the first samples after the warm-up, the last
    samples of the run), so one sample taken during a garbage-collection swing or an allocator's
    burst decides neither.
    """

    bound_mib: float
    warmup_s: float
    window_s: float


@dataclass(frozen=True)
class NodeGrowth:
    """One node's memory over the judged part of the run, in MiB."""

    start_mib: float
    end_mib: float
    growth_mib: float
    peak_mib: float
    slope_mib_per_h: float
    samples: int
    flat: bool


def judge_node(samples: Sequence[tuple[float, int]], rule: FlatnessRule) -> NodeGrowth:
    """The growth of one node's ``(seconds since start, rss bytes)`` samples under ``rule``.

    The least-squares slope is reported beside the growth because a long run's steady leak shows
    there as a number an hour-long soak can be compared with; the verdict is the growth alone.
    """
    judged = [(t, rss / MIB) for t, rss in samples if t >= rule.warmup_s]
    if len(judged) < 2:
        raise ValueError(
            f"{len(judged)} sample(s) after the {rule.warmup_s:.0f} s warm-up: the run was too short to judge"
        )
    first, last = judged[0][0], judged[-1][0]
    start = statistics.median(m for t, m in judged if t <= first + rule.window_s)
    end = statistics.median(m for t, m in judged if t >= last - rule.window_s)
    times = [t for t, _ in judged]
    slope = (
        statistics.linear_regression(times, [m for _, m in judged]).slope * 3600.0
        if len(set(times)) > 1
        else 0.0
    )
    growth = end - start
    return NodeGrowth(
        start_mib=round(start, 1),
        end_mib=round(end, 1),
        growth_mib=round(growth, 1),
        peak_mib=round(max(m for _, m in judged), 1),
        slope_mib_per_h=round(slope, 1),
        samples=len(judged),
        flat=growth <= rule.bound_mib,
    )


def judge(samples: Mapping[str, Sequence[tuple[float, int]]], rule: FlatnessRule) -> dict[str, NodeGrowth]:
    """Every node's growth under ``rule``, by node name."""
    return {name: judge_node(series, rule) for name, series in samples.items()}
