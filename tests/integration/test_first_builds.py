"""A first-time build says what it builds and about how long it takes, keeps the Go
toolchain's chatter in a log, and shows that log only when the build fails. Run against
a stand-in for `go` that answers as the real one does, at once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness.controlplane import REPO

pytestmark = pytest.mark.integration

FAKE_GO = """#!/usr/bin/env bash
# Says what go says while it fetches modules; "builds" an executable at once.
case "$1 $2" in
  "mod init") echo "module $3" > go.mod ;;
  "mod download")
    mkdir -p "$FAKE_GO_MODULE" && echo "module k8s.io/kubernetes" > "$FAKE_GO_MODULE/go.mod"
    echo "{\\"Dir\\": \\"$FAKE_GO_MODULE\\"}" ;;
  "mod tidy") for i in $(seq 300); do echo "go: downloading example.com/m$i v1.0.$i" >&2; done ;;
  "mod edit") ;;
  "build -o")
    [ -z "${FAKE_GO_FAILS:-}" ] || { echo "compile: out of memory" >&2; exit 2; }
    printf '#!/bin/sh\\n' > "$3" && chmod +x "$3" ;;
esac
"""


def _build_control_plane(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "go").write_text(FAKE_GO)
    (fake_bin / "go").chmod(0o755)
    return subprocess.run(
        ["bash", str(REPO / "hack" / "build-control-plane.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PATH": f"{fake_bin}:{os.environ['PATH']}",
            "KVBACKUP_CACHE": str(tmp_path / "cache"),
            "FAKE_GO_MODULE": str(tmp_path / "module"),
            **env,
        },
    )


def test_a_first_build_says_what_it_builds_and_keeps_the_go_chatter_in_a_log(
    tmp_path: Path,
) -> None:
    built = _build_control_plane(tmp_path)

    assert built.returncode == 0, built.stderr
    assert built.stdout.strip().endswith("/bin/k8s-v1.36.3-etcd-v3.6.16")
    said = built.stderr.splitlines()
    assert said[0].startswith(
        "building etcd v3.6.16 from the Go module proxy: first time only, about 3 minutes"
    )
    assert any(
        line.startswith("building etcd v3.6.16 from the Go module proxy: done in") for line in said
    )
    assert any(
        "kube-apiserver and kubectl v1.36.3" in line and "about 10 minutes" in line for line in said
    )
    assert len(said) == 4, built.stderr
    assert "go: downloading" in (tmp_path / "cache" / "src" / "etcd-v3.6.16.log").read_text()

    again = _build_control_plane(tmp_path)

    assert (again.returncode, again.stderr) == (0, "")


def test_a_failed_first_build_shows_the_end_of_its_log(tmp_path: Path) -> None:
    built = _build_control_plane(tmp_path, FAKE_GO_FAILS="1")

    assert built.returncode != 0
    assert "compile: out of memory" in built.stderr
    assert "building etcd v3.6.16 from the Go module proxy failed after" in built.stderr
    assert built.stderr.count("go: downloading") <= 25
