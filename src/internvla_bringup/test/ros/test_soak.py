"""The soak over real DDS: the simulated Franka graph, cameras at 30 Hz, memory of every node flat.

``internvla_bringup.soak`` does the work (it is also the by-hand command, ``python -m
internvla_bringup.soak``); this test runs it for ``INTERNVLA_SOAK_DURATION_S`` (600 s by default:
ten 60 s episodes, each a simulator reset and the next instruction) and asserts its verdict: no node
exits, the cameras deliver at least 20 Hz of the 30 asked, chunks come at least every 30 s and joint
commands at least once an episode, the policy never errs or latches, and after the warm-up (the first
20%) no node's RSS grows by more than 50 MiB. soak.json and the node logs land in the test's tmp_path."""

from __future__ import annotations

import pytest

from internvla_bringup.soak import STARTUP_TIMEOUT_S, SoakSettings, default_duration_s, run_soak, summary

DURATION_S = default_duration_s()
SHUTDOWN_MARGIN_S = 120.0


@pytest.mark.timeout(DURATION_S + STARTUP_TIMEOUT_S + SHUTDOWN_MARGIN_S)
def test_every_node_keeps_working_with_flat_memory_at_30_hz(tmp_path):
    report = run_soak(SoakSettings(out_dir=tmp_path, duration_s=DURATION_S))
    assert report["verdict"]["passed"], summary(report)
    assert set(report["nodes"]) >= {"sim_robot", "inference"}
