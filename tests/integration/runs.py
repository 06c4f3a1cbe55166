"""Runs as the integration tests start and await them: a KeyBackup's run by applying it
or by backup-now, and the kvbackup command line as a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kvbackup.api import BACKUP_NOW_ANNOTATION
from tests.integration.conftest import Cluster


def kvbackup(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``kvbackup ARGS`` as a process of its own, with the emulators' hosts allowed."""
    return subprocess.run(
        [sys.executable, "-m", "kvbackup.cli", *args],
        env={
            **os.environ,
            "KVBACKUP_VAULT_HOSTS": "127.0.0.1:*",
            "KVBACKUP_BLOB_HOSTS": "127.0.0.1:*",
            **(env or {}),
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def next_second() -> None:
    """Waits into the next whole second: whatever was done before is in an earlier one."""
    time.sleep(1.02 - time.time() % 1.0)


def succeeded(status: dict[str, Any]) -> dict[str, Any]:
    assert status.get("phase") == "Succeeded", {k: status.get(k) for k in ("phase", "lastRun")}
    return status


def applied(cluster: Cluster, name: str, manifest: str) -> dict[str, Any]:
    """The status once the run that applying ``manifest`` (a new generation) starts ended."""
    next_second()
    cluster.apply(manifest)
    return succeeded(cluster.wait_for_phase("keybackup", name, "Succeeded", "PartiallyFailed"))


def ask_backup_now(cluster: Cluster, name: str, value: str) -> None:
    cluster.plane.kubectl(
        "annotate", "--overwrite", "keybackup", name, "-n", cluster.namespace,
        f"{BACKUP_NOW_ANNOTATION}={value}",
    )  # fmt: skip


def handled(cluster: Cluster, name: str, value: str) -> dict[str, Any]:
    """The status once the run that backup-now ``value`` asked for ended."""
    cluster.wait_until(
        f"backup-now value {value} of {name} is handled",
        lambda: cluster.status("keybackup", name).get("lastHandledTrigger") == value,
    )
    return succeeded(cluster.status("keybackup", name))


def run_now(cluster: Cluster, name: str, value: str) -> dict[str, Any]:
    """The status once a run asked for by backup-now ``value`` ended; a value that starts
    with ``full`` asks for a full run."""
    next_second()
    ask_backup_now(cluster, name, value)
    return handled(cluster, name, value)
