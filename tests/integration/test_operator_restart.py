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
from tests.harness.fault_proxy import FaultProxy
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess, start_operator
from tests.harness.vault import Vault, purge_keys
from tests.integration.conftest import Cluster, VaultUnderTest, store_snapshot
from tests.integration.objects import key_results, keybackup, keyrestore, keys_counted

pytestmark = pytest.mark.integration


@pytest.fixture
def own_namespace(control_plane: ControlPlane) -> Cluster:
    name = f"restart-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    return Cluster(control_plane, name)


def _operator(
    cluster: Cluster, log: Path, lowkey: Lowkey | None = None, **settings: str
) -> OperatorProcess:
    return start_operator(
        cluster.plane.kubeconfig,
        log,
        {
            "KVBACKUP_WATCH_NAMESPACES": cluster.namespace,
            **(lowkey.operator_env() if lowkey else {}),
            **settings,
        },
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


KEYS = [f"key-{index:03d}" for index in range(200)]
#: Slow enough (Key Vault calls per second) for the kill to land in the middle of a run.
SLOW = "25"


def test_a_200_key_backup_killed_midway_resumes_into_one_snapshot_after_restart(
    own_namespace: Cluster, proxy: FaultProxy, lowkey: Lowkey, tmp_path: Path
) -> None:
    cluster = own_namespace
    Vault(proxy.url, lowkey.certificate).create_ec_keys(KEYS)
    operator = _operator(cluster, tmp_path / "first.log", lowkey, KVBACKUP_VAULT_RATE_LIMIT=SLOW)
    try:
        cluster.apply(keybackup("big", proxy.url))
        cluster.wait_until(
            "some keys are stored",
            lambda: len(cluster.secrets("kvbackup.io/keybackup=big")) >= 2,
        )
        snapshot_id = cluster.status("keybackup", "big")["activeRun"]["snapshotId"]
    finally:
        operator.kill()
    sent_before = proxy.counts().by_operation["POST /keys/*/backup"]
    stored_before = sum(
        len(pack["data"]) - 1  # every entry but the pack's index
        for pack in cluster.secrets("kvbackup.io/keybackup=big,kvbackup.io/role=artifact")
    )
    assert 0 < stored_before < len(KEYS)

    restarted = _operator(cluster, tmp_path / "second.log", lowkey)
    try:
        status = cluster.wait_for_phase("keybackup", "big", "Succeeded")
    finally:
        restarted.stop()
    assert status["lastSnapshot"]["id"] == snapshot_id
    assert status["lastRun"]["keysSucceeded"] == len(KEYS)
    assert len(cluster.secrets("kvbackup.io/keybackup=big,kvbackup.io/role=manifest")) == 1
    # Resumed, not redone: the restarted operator backed up only the keys not yet stored.
    sent_after = proxy.counts().by_operation["POST /keys/*/backup"] - sent_before
    assert sent_after == len(KEYS) - stored_before


def test_a_200_key_restore_killed_midway_restores_every_key_exactly_once_after_restart(
    own_namespace: Cluster, vault: VaultUnderTest, lowkey: Lowkey, tmp_path: Path
) -> None:
    cluster = own_namespace
    vault.create_ec_keys(KEYS)
    backup = _operator(cluster, tmp_path / "backup.log", lowkey)
    try:
        cluster.apply(keybackup("big", vault.url))
        cluster.wait_for_phase("keybackup", "big", "Succeeded")
    finally:
        backup.stop()
    purge_keys(vault, KEYS)

    operator = _operator(cluster, tmp_path / "first.log", lowkey, KVBACKUP_VAULT_RATE_LIMIT=SLOW)
    try:
        cluster.apply(keyrestore("all-back", vault.url, keybackup="big", onConflict="Fail"))
        cluster.wait_until("some keys are back", lambda: len(vault.key_names()) >= 20)
    finally:
        operator.kill()
    assert len(vault.key_names()) < len(KEYS)

    restarted = _operator(cluster, tmp_path / "second.log", lowkey)
    try:
        status = cluster.wait_for_phase("keyrestore", "all-back", "Succeeded")
    finally:
        restarted.stop()
    assert status["counts"] == keys_counted(restored=len(KEYS), recovered=0, skipped=0, failed=0)
    assert set(key_results(status).values()) == {"Restored"}
    assert vault.key_names() == set(KEYS)
