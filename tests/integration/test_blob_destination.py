"""KeyBackups and KeyRestores that use Azure Blob Storage, with the operator as a real process
and Azurite as the storage service. No Key Vault is reachable: these tests prove everything
the operator does with storage before and around the vault."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.blob_store import BlobSnapshotStore
from kvbackup.api.keybackup import KeyBackupRef
from tests.harness.azurite import Azurite
from tests.harness.controlplane import free_port
from tests.harness.operator import OperatorProcess
from tests.integration.conftest import SNAPSHOT, Cluster, store_snapshot
from tests.integration.objects import credentials_secret

pytestmark = pytest.mark.integration


def _storage_secret(cluster: Cluster, name: str, connection_string: str) -> None:
    cluster.apply(credentials_secret(name, connectionString=connection_string))


def _blob(azurite: Azurite, container: str, secret: str = "storage") -> dict[str, object]:
    return {
        "accountUrl": azurite.blob_endpoint,
        "container": container,
        "credentials": {"name": secret},
    }


def _keybackup(name: str, destination: Mapping[str, object], **extra: object) -> str:
    return json.dumps(
        {
            "apiVersion": "kvbackup.io/v1alpha1",
            "kind": "KeyBackup",
            "metadata": {"name": name},
            "spec": {
                "vaultUrl": f"https://127.0.0.1:{free_port()}",
                "keys": {"names": ["app-key"]},
                "destination": destination,
                **extra,
            },
        }
    )


def _keyrestore(name: str, source: dict[str, object]) -> str:
    return json.dumps(
        {
            "apiVersion": "kvbackup.io/v1alpha1",
            "kind": "KeyRestore",
            "metadata": {"name": name},
            "spec": {"vaultUrl": f"https://127.0.0.1:{free_port()}", "source": source},
        }
    )


def _reason(cluster: Cluster, kind: str, name: str) -> str:
    return str(cluster.ready_condition(kind, name).get("reason", ""))


def test_a_missing_container_is_named_before_the_vault_is_touched(
    operator: OperatorProcess, cluster: Cluster, azurite: Azurite
) -> None:
    _storage_secret(cluster, "storage", azurite.connection_string())
    cluster.apply(_keybackup("to-nowhere", {"blob": _blob(azurite, "no-such-container")}))
    cluster.wait_until(
        "Ready=False naming the container",
        lambda: _reason(cluster, "keybackup", "to-nowhere") == "ContainerNotFound",
    )
    condition = cluster.ready_condition("keybackup", "to-nowhere")
    assert "no-such-container" in condition["message"]
    assert "retrying in" in condition["message"]
    assert operator.running


def test_a_wrong_storage_key_is_reported_as_access_denied(
    operator: OperatorProcess, cluster: Cluster, azurite: Azurite, container: ContainerClient
) -> None:
    wrong_key = base64.b64encode(b"not the account key").decode()
    _storage_secret(cluster, "wrong", azurite.connection_string(account_key=wrong_key))
    cluster.apply(_keybackup("denied", {"blob": _blob(azurite, container.container_name, "wrong")}))
    cluster.wait_until(
        "Ready=False with AccessDenied",
        lambda: _reason(cluster, "keybackup", "denied") == "AccessDenied",
    )
    assert wrong_key not in json.dumps(cluster.get("keybackup", "denied"))


def test_a_storage_secret_without_a_connection_string_or_sas_token_is_named(
    operator: OperatorProcess, cluster: Cluster, azurite: Azurite, container: ContainerClient
) -> None:
    cluster.apply(credentials_secret("empty", accountKey="x"))
    cluster.apply(
        _keybackup("no-auth", {"blob": _blob(azurite, container.container_name, "empty")})
    )
    cluster.wait_until(
        "Ready=False with InvalidCredentials",
        lambda: _reason(cluster, "keybackup", "no-auth") == "InvalidCredentials",
    )
    assert (
        "needs connectionString or sasToken"
        in cluster.ready_condition("keybackup", "no-auth")["message"]
    )


def test_a_malformed_connection_string_is_named_and_not_retried(
    operator: OperatorProcess, cluster: Cluster, azurite: Azurite, container: ContainerClient
) -> None:
    _storage_secret(cluster, "garbled", "AccountKey=s3cr3t-value")
    cluster.apply(
        _keybackup("garbled", {"blob": _blob(azurite, container.container_name, "garbled")})
    )

    status = cluster.wait_for_phase("keybackup", "garbled", "Failed")

    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["reason"] == "InvalidCredentials"  # not an internal error retried for ever
    assert (
        "blob credentials Secret garbled: its connectionString is malformed" in (ready["message"])
    )
    assert "s3cr3t-value" not in json.dumps(cluster.get("keybackup", "garbled"))


async def test_a_restore_finds_a_snapshot_by_its_blob_path_alone(
    operator: OperatorProcess,
    cluster: Cluster,
    azurite: Azurite,
    container: ContainerClient,
    blob_store: BlobSnapshotStore,
) -> None:
    await store_snapshot(
        blob_store, KeyBackupRef("gone-namespace", "gone", ""), SNAPSHOT, {"app-key": b"bytes"}
    )
    _storage_secret(cluster, "storage", azurite.connection_string())
    path = f"backups/gone-namespace/gone/{SNAPSHOT}"
    cluster.apply(
        _keyrestore(
            "from-path", {"blob": {**_blob(azurite, container.container_name), "path": path}}
        )
    )
    cluster.wait_until(
        "the snapshot is read and the restore goes on to the vault",
        lambda: _reason(cluster, "keyrestore", "from-path") == "VaultUnreachable",
    )
    started = [
        e["message"] for e in cluster.events_for("from-path") if e["reason"] == "RestoreStarted"
    ]
    assert started == [f"restoring from snapshot {SNAPSHOT}"]

    cluster.apply(
        _keyrestore(
            "wrong-path",
            {"blob": {**_blob(azurite, container.container_name), "path": "backups/nothing/here"}},
        )
    )
    cluster.wait_until(
        "a missing snapshot path is SourceNotFound",
        lambda: _reason(cluster, "keyrestore", "wrong-path") == "SourceNotFound",
    )


async def test_a_restore_by_keybackup_reference_reads_the_keybackups_blob_destination(
    operator: OperatorProcess,
    cluster: Cluster,
    azurite: Azurite,
    container: ContainerClient,
    blob_store: BlobSnapshotStore,
) -> None:
    _storage_secret(cluster, "storage", azurite.connection_string())
    destination = {"blob": {**_blob(azurite, container.container_name), "prefix": "backups"}}
    cluster.apply(_keybackup("offsite", destination))
    await store_snapshot(
        blob_store, KeyBackupRef(cluster.namespace, "offsite", ""), SNAPSHOT, {"app-key": b"b"}
    )
    cluster.apply(_keyrestore("from-offsite", {"keyBackupRef": {"name": "offsite"}}))
    cluster.wait_until(
        "the blob snapshot is chosen as latest",
        lambda: _reason(cluster, "keyrestore", "from-offsite") == "VaultUnreachable",
    )
    assert any(
        e["message"] == f"restoring from snapshot {SNAPSHOT}"
        for e in cluster.events_for("from-offsite")
    )


async def test_deleting_a_delete_policy_keybackup_removes_its_blobs(
    operator: OperatorProcess,
    cluster: Cluster,
    azurite: Azurite,
    container: ContainerClient,
    blob_store: BlobSnapshotStore,
) -> None:
    _storage_secret(cluster, "storage", azurite.connection_string())
    destination = {"blob": {**_blob(azurite, container.container_name), "prefix": "backups"}}
    cluster.apply(_keybackup("short-lived", destination, deletionPolicy="Delete"))
    await store_snapshot(
        blob_store, KeyBackupRef(cluster.namespace, "short-lived", ""), SNAPSHOT, {"app-key": b"b"}
    )
    cluster.wait_until(
        "the operator has seen the KeyBackup",
        lambda: bool(cluster.ready_condition("keybackup", "short-lived")),
    )
    cluster.plane.kubectl("delete", "kb", "short-lived", "-n", cluster.namespace, "--timeout=60s")
    assert await blob_store.list_stored(cluster.namespace, "short-lived") == []
    assert "BackupsDeleted" in {e["reason"] for e in cluster.events_for("short-lived")}
