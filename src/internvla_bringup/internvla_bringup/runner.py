"""Start a described graph as processes where ``ros2 launch`` does not exist (PyPI-wheel installs).

Each node runs as its own process, exactly as launch_ros would start it: the package's
executable, ``--ros-args``, a parameters file and the remappings of its NodeSpec. The runner
owns the lifecycle launch would own: logs per node, a bounded restart of a node that crashed,
and a clean shutdown that forwards SIGINT and escalates only when a node does not exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_prefix

from internvla_bringup.dds import dds_environment
from internvla_bringup.graph import NodeSpec, write_parameters_file

SHUTDOWN_GRACE_S = 10.0
RESTART_BACKOFF_S = 1.0
PR_SET_PDEATHSIG = 1


def executable_path(spec: NodeSpec) -> Path:
    """Where ``ros2 run <package> <executable>`` would find the node's program."""
    try:
        prefix = Path(get_package_prefix(spec.package))
    except PackageNotFoundError:
        raise RuntimeError(
            f"package {spec.package!r} is not in the workspace overlay: run 'make setup' and "
            "'source scripts/env.sh'"
        ) from None
    path = prefix / "lib" / spec.package / spec.executable
    if not path.is_file():
        raise RuntimeError(f"{spec.package} has no executable {spec.executable!r} (looked for {path})")
    return path


def _die_with_parent() -> None:
    """In the child: be sent SIGTERM if the runner dies without stopping the graph (even by SIGKILL)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def package_available(package: str) -> bool:
    """Whether the overlay has ``package``: rviz2 and robot_state_publisher are only in full ROS installs."""
    try:
        get_package_prefix(package)
    except PackageNotFoundError:
        return False
    return True


def command_line(spec: NodeSpec, params_file: Path | None) -> list[str]:
    """The node's command line: what launch_ros runs for the same spec (see launch_support)."""
    command = [sys.executable, str(executable_path(spec)), *spec.arguments, "--ros-args"]
    if len(spec.parameters) == 1:
        command += ["-r", f"__node:={next(iter(spec.parameters))}"]
    if params_file is not None:
        command += ["--params-file", str(params_file)]
    for source, target in spec.remappings:
        command += ["-r", f"{source}:={target}"]
    return command


@dataclass
class _Managed:
    spec: NodeSpec
    command: list[str]
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)


class GraphRunner:
    """Runs NodeSpecs as child processes until stopped; use as a context manager."""

    def __init__(
        self,
        specs: Sequence[NodeSpec],
        log_dir: Path,
        max_restarts: int = 3,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.log_dir = log_dir
        self.max_restarts = max_restarts
        self._echo = echo
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        log_dir.mkdir(parents=True, exist_ok=True)
        self._nodes: list[_Managed] = []
        for spec in specs:
            params_file = write_parameters_file(spec, log_dir)
            self._nodes.append(_Managed(spec, command_line(spec, params_file), log_dir / f"{spec.name}.log"))
        self._monitor = threading.Thread(target=self._watch, name="graph-runner-monitor", daemon=True)

    def __enter__(self) -> GraphRunner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def node_names(self) -> list[str]:
        return [node.spec.name for node in self._nodes]

    def start(self) -> None:
        self._echo(f"internvla: starting {len(self._nodes)} node(s); logs in {self.log_dir}")
        for node in self._nodes:
            self._spawn(node)
            self._echo(
                f"  {node.spec.name:<12} {node.spec.package}/{node.spec.executable} -> {node.log_path}"
            )
        self._monitor.start()

    def _spawn(self, node: _Managed) -> None:
        log = node.log_path.open("ab")
        log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(node.command)}\n".encode())
        log.flush()
        # Own process group: a Ctrl-C in the terminal reaches the runner only, which then
        # shuts the children down in order instead of all of them dying at once.
        node.process = subprocess.Popen(
            node.command,
            preexec_fn=_die_with_parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **dds_environment(os.environ)},
        )
        log.close()

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                for node in self._nodes:
                    code = node.process.poll() if node.process else None
                    if code is None or self._stopping.is_set():
                        continue
                    node.exit_codes.append(code)
                    if code == 0 or node.restarts >= self.max_restarts:
                        reason = "exited" if code == 0 else f"crashed (exit {code}) too often"
                        self._echo(
                            f"internvla: {node.spec.name} {reason}; not restarting (log: {node.log_path})"
                        )
                        node.process = None
                        continue
                    node.restarts += 1
                    self._echo(
                        f"internvla: {node.spec.name} crashed (exit {code}); restart "
                        f"{node.restarts}/{self.max_restarts} (log: {node.log_path})"
                    )
                    time.sleep(RESTART_BACKOFF_S)
                    self._spawn(node)

    def process(self, name: str) -> subprocess.Popen | None:
        """The live process of node ``name`` (None when it is not running)."""
        for node in self._nodes:
            if node.spec.name == name:
                return node.process
        raise KeyError(name)

    def restarts(self, name: str) -> int:
        return next(node.restarts for node in self._nodes if node.spec.name == name)

    def running(self) -> list[str]:
        return [n.spec.name for n in self._nodes if n.process is not None and n.process.poll() is None]

    def stop(self) -> dict[str, int | None]:
        """SIGINT every node, wait, escalate to SIGTERM then SIGKILL; returns exit codes by name."""
        self._stopping.set()
        if self._monitor.is_alive():
            self._monitor.join(timeout=5)
        with self._lock:
            live = [n for n in self._nodes if n.process is not None and n.process.poll() is None]
            for sig, grace in (
                (signal.SIGINT, SHUTDOWN_GRACE_S),
                (signal.SIGTERM, 3.0),
                (signal.SIGKILL, 3.0),
            ):
                for node in live:
                    if node.process.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(node.process.pid, sig)
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and any(n.process.poll() is None for n in live):
                    time.sleep(0.05)
                if all(n.process.poll() is not None for n in live):
                    break
            return {n.spec.name: (n.process.poll() if n.process else None) for n in self._nodes}

    def wait(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Block until SIGINT/SIGTERM or ``should_stop()``; then stop the graph."""
        interrupted = threading.Event()
        previous = {
            sig: signal.signal(sig, lambda *_: interrupted.set()) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while not interrupted.wait(0.2) and not should_stop() and self.running():
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._echo("internvla: shutting down")
        self.stop()
