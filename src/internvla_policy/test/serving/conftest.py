"""A tiny run with two sets of action statistics, its model, and servers on free loopback ports."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from internvla_policy.model import InternVLAM1
from internvla_policy.model.tiny import write_tiny_run
from internvla_policy.serving.server import PolicyServer, ServerSettings, ServerThread

SECOND_KEY = "widowx"


@pytest.fixture(scope="session")
def two_key_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run plus a second unnorm key with other ranges, so per-request keys are visible."""
    run = write_tiny_run(tmp_path_factory.mktemp("serving") / "run", seed=0)
    path = run / "dataset_statistics.json"
    stats = json.loads(path.read_text())
    (first,) = stats.values()
    other = json.loads(json.dumps(first))
    other["action"]["q01"] = [3 * v for v in other["action"]["q01"][:6]] + [0.0]
    other["action"]["q99"] = [3 * v for v in other["action"]["q99"][:6]] + [1.0]
    stats[SECOND_KEY] = other
    path.write_text(json.dumps(stats))
    return run


@pytest.fixture(scope="session")
def second_key() -> str:
    return SECOND_KEY


@pytest.fixture(scope="session")
def model(two_key_run: Path) -> InternVLAM1:
    return InternVLAM1.from_pretrained(two_key_run)


@pytest.fixture
def serve(model: InternVLAM1) -> Iterator[Callable[..., ServerThread]]:
    """Start a server on a free port with the given ServerSettings fields; all are stopped afterwards."""
    started: list[ServerThread] = []

    def start(**settings: object) -> ServerThread:
        server = ServerThread(PolicyServer(model, ServerSettings(port=0, **settings))).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def frame() -> np.ndarray:
    """A 240x320 RGB frame with structure, so different inputs give different actions."""
    rows, cols = np.mgrid[0:240, 0:320]
    image = np.stack([rows, cols // 2, (rows + cols) // 3], axis=-1).astype(np.uint8)
    image[80:140, 120:200] = (200, 30, 30)
    return image
