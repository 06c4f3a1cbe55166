"""Installing the package, as `make venv`, the image build and hack/check-image.sh do,
prints no warning of its build backend (setuptools deprecations among them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.controlplane import REPO

pytestmark = pytest.mark.integration


def test_building_the_package_prints_no_build_backend_warning(tmp_path: Path) -> None:
    # What the Dockerfile copies, so that the build leaves nothing in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "operator",
        source / "operator",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )

    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert built.returncode == 0, built.stderr
    output = built.stdout + built.stderr
    assert "Warning" not in output, output
    assert "deprecated" not in output.lower(), output
