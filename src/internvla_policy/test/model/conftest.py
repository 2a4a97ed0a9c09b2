"""Shared fixtures: the reference fixture folder (when present) and models built once per session.

The reference fixture lives outside the repository (``<repo>/../shared/reference`` by default, or
``$INTERNVLA_SHARED_DIR/reference``). Tests that need it skip, saying where they looked, when absent.
Tests that take ``reference_case`` / ``cfg_name`` are parametrised over the recorded cases found there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from internvla_policy.model import InternVLAM1
from internvla_policy.model.tiny import write_tiny_run


def reference_root() -> Path:
    shared = Path(os.environ["INTERNVLA_SHARED_DIR"])
    return shared / "reference"


def _missing_reason() -> str:
    return (
        f"reference fixtures not found at {reference_root()} (set INTERNVLA_SHARED_DIR to the shared folder)"
    )


@dataclass(frozen=True)
class ReferenceCase:
    """One recorded ``predict_action`` case of tiny_a: inputs, seed and the arrays upstream produced."""

    folder: Path

    @property
    def meta(self) -> dict:
        return json.loads((self.folder / "meta.json").read_text())

    def images(self) -> list[list[Image.Image]]:
        return [
            [Image.open(self.folder / name).convert("RGB") for name in views]
            for views in self.meta["image_files"]
        ]

    def array(self, name: str) -> np.ndarray:
        return np.load(self.folder / name)

    def cfg_names(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("cfg*") if p.is_dir())


def _cases() -> list[ReferenceCase]:
    folder = reference_root() / "tiny_a" / "cases"
    return [ReferenceCase(p) for p in sorted(folder.iterdir()) if p.is_dir()] if folder.is_dir() else []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise over the recorded cases (and their cfg runs) present in the fixture folder."""
    skip = [pytest.param(None, marks=pytest.mark.skip(reason=_missing_reason()))]
    if "cfg_name" in metafunc.fixturenames:
        pairs = [(case, cfg) for case in _cases() for cfg in case.cfg_names()]
        params = [pytest.param(case, cfg, id=f"{case.folder.name}-{cfg}") for case, cfg in pairs]
        metafunc.parametrize(
            ("reference_case", "cfg_name"), params or [pytest.param(None, None, marks=skip[0].marks)]
        )
    elif "reference_case" in metafunc.fixturenames:
        params = [pytest.param(case, id=case.folder.name) for case in _cases()]
        metafunc.parametrize("reference_case", params or skip)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    reference = reference_root()
    if not (reference / "tiny_a").is_dir():
        pytest.skip(_missing_reason())
    return reference


@pytest.fixture(scope="session")
def tiny_a(reference_dir: Path) -> Path:
    return reference_dir / "tiny_a"


@pytest.fixture(scope="session")
def case0(tiny_a: Path) -> ReferenceCase:
    """The single-sample recorded case, for tests about one prediction rather than every case."""
    return ReferenceCase(tiny_a / "cases" / "case0")


@pytest.fixture(scope="session")
def reference_model(tiny_a: Path) -> InternVLAM1:
    """The recorded tiny_a checkpoint, loaded as a user would (its config names ./base_vlm)."""
    return InternVLAM1.from_pretrained(tiny_a / "run")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random run written by the project itself (no shared files needed)."""
    return write_tiny_run(tmp_path_factory.mktemp("tiny") / "run", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_run: Path) -> InternVLAM1:
    return InternVLAM1.from_pretrained(tiny_run)


@pytest.fixture
def rgb() -> np.ndarray:
    """A deterministic 240x320 RGB frame with structure (gradients plus a block), not flat noise."""
    rows, cols = np.mgrid[0:240, 0:320]
    image = np.stack([rows * 255 // 239, cols * 255 // 319, (rows + cols) * 255 // 558], axis=-1).astype(
        np.uint8
    )
    image[80:140, 120:200] = (200, 30, 30)
    return image
