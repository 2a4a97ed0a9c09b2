"""End to end with the remote backend: the simulated Franka graph's policy asks an `internvla-m1 serve`
process for its chunks over the websocket, and the server is killed and restarted mid-run.

Killing the server must stop the joint commands within two control periods (the chunk schedule
alone would play out the current chunk for up to 16), and a restarted server must bring them back
without restarting the node.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from internvla_bringup.checkpoints import tiny_random_run
from internvla_bringup.ros.client import GraphClient
from internvla_msgs.msg import PolicyStatus

sys.path.insert(0, str(Path(__file__).parent))
from test_graph_e2e import GraphObserver, _graph, _run_until_moved, _wait_ready, assert_within_limits

SERVER_START_TIMEOUT_S = 180.0
RESUME_TIMEOUT_S = 240.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(port: int, log: Path) -> subprocess.Popen:
    """`internvla-m1 serve` on the tiny model, ready once /healthz answers."""
    command = [sys.executable, "-m", "internvla_policy.model.cli", "serve", str(tiny_random_run())]
    command += ["--port", str(port), "--threads", "1"]
    with log.open("a") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as health:
                if health.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    server.kill()
    raise AssertionError(f"the server did not answer /healthz:\n{log.read_text()[-3000:]}")


def _stamp(command) -> float:
    return command.header.stamp.sec + command.header.stamp.nanosec * 1e-9


def test_remote_backend_drives_the_arm_and_survives_a_server_restart(tmp_path):
    port = _free_port()
    log = tmp_path / "server.log"
    server = _start_server(port, log)
    profile, runner, urdf = _graph(
        "franka",
        tmp_path,
        use_grounding="false",
        inference_backend="remote",
        server_uri=f"ws://127.0.0.1:{port}",
    )
    period = 1.0 / profile.control.rate_hz
    try:
        with GraphClient(name="e2e_remote") as client, runner:
            observer = GraphObserver(client, profile, urdf)
            _wait_ready(client, runner)
            assert client.latest_status.model == f"ws://127.0.0.1:{port}"
            start = _run_until_moved(client, observer, "pick up the red block")
            assert_within_limits(observer, observer.commands_since(start))

            # Kill the server while commands flow.
            assert client.wait_for(lambda: observer.commands_since(time.monotonic() - 0.3), 60.0)
            node = runner.process("policy")
            before = max(_stamp(c) for c in observer.commands_since(time.monotonic() - 1.0))
            killed_wall, killed = time.time(), time.monotonic()
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
            assert client.wait_for(lambda: client.latest_status.state == PolicyStatus.STATE_ERROR, 10.0), (
                client.describe()
            )
            assert "unreachable" in client.latest_status.detail
            print(f"inference errors counted: {client.latest_status.inference_errors}")
            time.sleep(2.0)
            late = [_stamp(c) - killed_wall for c in observer.commands_since(killed)]
            last = max(late, default=0.0)
            print(
                f"last command before the kill stamped {killed_wall - before:.3f} s before it; "
                f"{len(late)} commands after it, the last {last:.3f} s after it"
            )
            assert last <= 2 * period, f"commands went on {last:.3f} s after the server died"
            quiet_from = time.monotonic()
            time.sleep(1.0)
            assert observer.commands_since(quiet_from) == []

            # Restart it: commands resume, same node process.
            restarted = time.monotonic()
            server = _start_server(port, log)
            assert client.wait_for(
                lambda: len(observer.commands_since(restarted)) >= 5, RESUME_TIMEOUT_S, poll_s=0.5
            ), client.describe()
            print(f"commands resumed {time.monotonic() - restarted:.1f} s after the restart began")
            assert runner.process("policy") is node and node.poll() is None
            assert_within_limits(observer, observer.commands_since(restarted))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
