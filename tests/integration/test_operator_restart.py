"""The operator is killed with SIGKILL and started again, as a crashed or evicted pod would be."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api.keybackup import KeyBackupRef
from tests.harness.controlplane import ControlPlane, free_port
from tests.harness.operator import OperatorProcess, start_operator
from tests.integration.conftest import Cluster, store_snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def own_namespace(control_plane: ControlPlane) -> Cluster:
    name = f"restart-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    return Cluster(control_plane, name)


def _operator(cluster: Cluster, log: Path) -> OperatorProcess:
    return start_operator(
        cluster.plane.kubeconfig, log, {"KVBACKUP_WATCH_NAMESPACES": cluster.namespace}
    )


def _started(cluster: Cluster, name: str, reason: str) -> list[str]:
    """One message per occurrence (Events of the same message are counted, not repeated)."""
    return [
        e["message"]
        for e in cluster.events_for(name)
        if e["reason"] == reason
        for _ in range(e.get("count", 1))
    ]


def test_a_backup_run_interrupted_by_a_crash_is_redone_into_the_same_snapshot(
    own_namespace: Cluster, tmp_path: Path
) -> None:
    cluster = own_namespace
    operator = _operator(cluster, tmp_path / "first.log")
    try:
        cluster.apply(
            json.dumps(
                {
                    "apiVersion": "kvbackup.io/v1alpha1",
                    "kind": "KeyBackup",
                    "metadata": {"name": "crashy"},
                    "spec": {
                        "vaultUrl": f"https://127.0.0.1:{free_port()}",
                        "keys": {"names": ["app-key"]},
                    },
                }
            )
        )
        cluster.wait_until(
            "a run is in progress",
            lambda: bool(cluster.status("keybackup", "crashy").get("activeRun")),
        )
        snapshot_id = cluster.status("keybackup", "crashy")["activeRun"]["snapshotId"]
        runs_before_crash = len(_started(cluster, "crashy", "BackupStarted"))
    finally:
        operator.kill()

    restarted = _operator(cluster, tmp_path / "second.log")
    try:
        cluster.wait_until(
            "the restarted operator redoes the run",
            lambda: len(_started(cluster, "crashy", "BackupStarted")) > runs_before_crash,
        )
        messages = set(_started(cluster, "crashy", "BackupStarted"))
        assert messages == {f"backing up into {snapshot_id}"}
        assert not cluster.plane.kubectl(
            "get",
            "secrets",
            "-n",
            cluster.namespace,
            "-l",
            "kvbackup.io/keybackup=crashy,kvbackup.io/role=manifest",
            "-o",
            "name",
        ).stdout.split()
    finally:
        restarted.stop()


async def test_a_finished_keyrestore_is_not_run_again_after_a_crash(
    own_namespace: Cluster, secret_store: SecretSnapshotStore, tmp_path: Path
) -> None:
    cluster = own_namespace
    ref = KeyBackupRef(cluster.namespace, "nightly", "")
    await store_snapshot(secret_store, ref, "20261128-000000-abcd", {"app-key": b"bytes"})
    operator = _operator(cluster, tmp_path / "first.log")
    try:
        # A key the snapshot lacks fails before any vault is contacted: a finished restore.
        cluster.apply(
            json.dumps(
                {
                    "apiVersion": "kvbackup.io/v1alpha1",
                    "kind": "KeyRestore",
                    "metadata": {"name": "once"},
                    "spec": {
                        "vaultUrl": f"https://127.0.0.1:{free_port()}",
                        "source": {"keyBackupRef": {"name": "nightly"}},
                        "keys": ["other-key"],
                    },
                }
            )
        )
        cluster.wait_until(
            "the restore finishes",
            lambda: cluster.status("keyrestore", "once").get("observedGeneration") == 1,
        )
        finished = cluster.status("keyrestore", "once")
    finally:
        operator.kill()
    assert finished["keys"][0]["reason"] == "KeyNotInSnapshot"

    restarted = _operator(cluster, tmp_path / "second.log")
    try:
        await asyncio.sleep(5)  # time enough for a restarted operator to (wrongly) redo it
        assert cluster.status("keyrestore", "once") == finished
        assert len(_started(cluster, "once", "RestoreStarted")) == 1
    finally:
        restarted.stop()
