"""A KeyBackup with a second copy (spec.copies): the same snapshot, read once from the
vault, is kept in Secrets and in an Azurite container; a restore falls back to the copy
when the Secrets lose a backup; a copy that fails fails no backup, and says so in its
condition and its metric. With the operator as a real process and Lowkey Vault."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.blob_store import BlobSnapshotStore
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api import KEYBACKUP_LABEL, ROLE_LABEL
from kvbackup.services.ports import SnapshotStore, read_whole_manifest
from tests.harness.azurite import Azurite
from tests.harness.fault_proxy import FaultProxy
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import Vault
from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import blob_destination, key_results, keybackup, keyrestore
from tests.integration.runs import applied, run_now
from tests.integration.test_metrics import wait_for_metrics

pytestmark = pytest.mark.integration


def offsite(cluster: Cluster, azurite: Azurite, container: str, **extra: Any) -> dict[str, Any]:
    """A copy named "offsite" in ``container`` under prefix "backups"."""
    return {"name": "offsite", **blob_destination(cluster, azurite, container, "backups"), **extra}


def copy_entry(status: dict[str, Any], name: str = "offsite") -> dict[str, Any]:
    return next(entry for entry in status["copies"] if entry["name"] == name)


def condition(cluster: Cluster, name: str, kind: str) -> dict[str, Any]:
    status = cluster.status("keybackup", name)
    return next(c for c in status["conditions"] if c["type"] == kind)


async def stored(store: SnapshotStore, cluster: Cluster, name: str) -> dict[str, Any]:
    """Each snapshot a store holds, with what its whole manifest says of each item."""
    snapshots = {}
    for summary in await store.list_snapshots(cluster.namespace, name):
        manifest = await read_whole_manifest(store, cluster.namespace, name, summary.snapshot_id)
        snapshots[summary.snapshot_id] = {
            (a.kind, a.name): (a.sha256, a.size, a.versions) for a in manifest.artifacts
        }
    return snapshots


def backups_asked(proxy: FaultProxy) -> int:
    return proxy.counts().by_operation.get("POST /keys/*/backup", 0)


async def test_one_run_writes_the_same_snapshot_to_secrets_and_to_the_blob_copy(
    operator: OperatorProcess,
    cluster: Cluster,
    lowkey: Lowkey,
    proxy: FaultProxy,
    azurite: Azurite,
    container: ContainerClient,
    blob_store: BlobSnapshotStore,
    secret_store: SecretSnapshotStore,
) -> None:
    vault = Vault(proxy.url, lowkey.certificate)
    for name in ("signing", "wrapping", "tokens"):
        vault.create_rsa_key(name)
    copy = offsite(cluster, azurite, container.container_name)
    manifest = keybackup("twice", proxy.url, copies=[copy])

    first = applied(cluster, "twice", manifest)

    snapshot_id = first["lastRun"]["snapshotId"]
    entry = copy_entry(first)
    assert (entry["phase"], entry["snapshotId"], entry["written"]) == ("Complete", snapshot_id, 3)
    assert entry["location"].endswith(f"/backups/{cluster.namespace}/twice/{snapshot_id}/")
    in_secrets = await stored(secret_store, cluster, "twice")
    in_blob = await stored(blob_store, cluster, "twice")
    assert list(in_secrets) == list(in_blob) == [snapshot_id]
    assert in_secrets == in_blob
    shas = {name: sha for (_, name), (sha, _, _) in in_secrets[snapshot_id].items()}
    assert shas == {e["name"]: e["sha256"] for e in first["keys"]}
    complete = condition(cluster, "twice", "CopiesComplete")
    assert (complete["status"], complete["reason"]) == ("True", "Complete")
    assert backups_asked(proxy) == 3  # the vault is read once, not once per copy

    vault.create_rsa_key("signing")  # a new version: only it is backed up again
    second = run_now(cluster, "twice", "second")

    entry = copy_entry(second)
    assert (entry["phase"], entry["written"], entry["carried"]) == ("Complete", 1, 2)
    in_secrets = await stored(secret_store, cluster, "twice")
    assert in_secrets == await stored(blob_store, cluster, "twice")
    assert len(in_secrets) == 2
    assert backups_asked(proxy) == 4


def test_a_restore_reads_the_blob_copy_when_the_secrets_lost_their_backups(
    operator: OperatorProcess,
    cluster: Cluster,
    vault: VaultUnderTest,
    azurite: Azurite,
    container: ContainerClient,
) -> None:
    versions = vault.create_rsa_key("signing", versions=2)
    vault.create_rsa_key("wrapping")
    copy = offsite(cluster, azurite, container.container_name)
    applied(cluster, "guarded", keybackup("guarded", vault.url, copies=[copy]))
    cluster.plane.kubectl(
        "delete", "secret", "-n", cluster.namespace,
        "-l", f"{KEYBACKUP_LABEL}=guarded,{ROLE_LABEL}=artifact",
    )  # fmt: skip
    vault.delete_and_purge("signing")
    vault.delete_and_purge("wrapping")

    cluster.apply(keyrestore("back", vault.url, keybackup="guarded"))
    status = cluster.wait_for_phase("keyrestore", "back", "Succeeded", "Failed")

    assert key_results(status) == {"signing": "Restored", "wrapping": "Restored"}
    assert vault.version_ids("signing") == versions
    source = status["source"]
    assert source["copy"] == "primary"
    assert len(source["fellBack"]) == 2
    assert all("in copy primary" in why and "is missing" in why for why in source["fellBack"]), (
        source
    )
    assert cluster.event_count("back", "ReadFromOtherCopy") == 1


def test_a_restore_names_the_copy_to_read(
    operator: OperatorProcess,
    cluster: Cluster,
    vault: VaultUnderTest,
    azurite: Azurite,
    container: ContainerClient,
) -> None:
    vault.create_rsa_key("signing")
    copy = offsite(cluster, azurite, container.container_name)
    applied(cluster, "named", keybackup("named", vault.url, copies=[copy]))
    vault.delete_and_purge("signing")

    source = {"keyBackupRef": {"name": "named", "copy": "offsite"}}
    cluster.apply(keyrestore("from-offsite", vault.url, source=source))
    status = cluster.wait_for_phase("keyrestore", "from-offsite", "Succeeded", "Failed")

    assert key_results(status) == {"signing": "Restored"}
    assert status["source"]["copy"] == "offsite"
    assert "fellBack" not in status["source"]


async def test_a_copy_whose_container_was_deleted_fails_alone_and_raises_its_alert_metric(
    own_operator: Callable[..., Cluster],
    lowkey: Lowkey,
    proxy: FaultProxy,
    azurite: Azurite,
    container: ContainerClient,
) -> None:
    cluster = own_operator("copy-failing")
    Vault(proxy.url, lowkey.certificate).create_ec_keys(["signing"])
    manifest = keybackup(
        "lonely", proxy.url, copies=[offsite(cluster, azurite, container.container_name)]
    )
    completed = copy_entry(applied(cluster, "lonely", manifest))["lastCompleteTime"]
    await container.delete_container()

    status = run_now(cluster, "lonely", "after-the-container-went")

    assert status["phase"] == "Succeeded"
    assert cluster.ready_condition("keybackup", "lonely")["status"] == "True"
    entry = copy_entry(status)
    assert (entry["phase"], entry["reason"]) == ("Failed", "ContainerNotFound")
    assert container.container_name in entry["message"]
    assert entry["lastCompleteTime"] == completed
    complete = condition(cluster, "lonely", "CopiesComplete")
    assert (complete["status"], complete["reason"]) == ("False", "CopyFailed")
    assert "offsite" in complete["message"]
    assert cluster.event_count("lonely", "CopyFailed") == 1
    ours = {"namespace": cluster.namespace, "name": "lonely", "copy": "offsite"}
    wait_for_metrics(
        cluster,
        "the copy is flagged as failing",
        lambda samples: samples.get("kvbackup_keybackup_copy_failing", **ours) == 1,
    )

    await container.create_container()
    status = run_now(cluster, "lonely", "after-the-container-came-back")

    entry = copy_entry(status)
    assert (entry["phase"], entry["written"]) == ("Complete", 1)  # caught up in full
    wait_for_metrics(
        cluster,
        "the copy is no longer failing",
        lambda samples: samples.get("kvbackup_keybackup_copy_failing", **ours) == 0,
    )
