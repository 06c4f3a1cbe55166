"""Scheduled KeyBackups against a real vault: successive complete snapshots, bounded history."""

from __future__ import annotations

import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.blob_store import BlobSnapshotStore
from kvbackup.services.ports import read_whole_manifest
from tests.harness.azurite import Azurite
from tests.harness.operator import OperatorProcess
from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import blob_destination, keybackup

pytestmark = pytest.mark.integration


def run_four_times_then_suspend(cluster: Cluster, name: str) -> dict[str, object]:
    cluster.wait_until(
        "four scheduled runs succeeded",
        lambda: cluster.event_count(name, "BackupSucceeded") >= 4,
        timeout=120,
    )
    cluster.plane.kubectl(
        "patch",
        "kb",
        name,
        "-n",
        cluster.namespace,
        "--type=merge",
        "-p",
        '{"spec": {"suspend": true}}',
    )
    # A run already under way finishes and applies retention; then nothing moves.
    cluster.wait_until(
        "no run is in progress",
        lambda: not cluster.status("keybackup", name).get("activeRun"),
        timeout=60,
    )
    status = cluster.status("keybackup", name)
    assert status["phase"] == "Succeeded"
    return status


def test_a_schedule_keeping_two_keeps_the_two_newest_secret_snapshots_and_holds_the_first(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    vault.create_rsa_key("signing", versions=2)
    cluster.apply(
        keybackup(
            "often", vault.url, keys=["signing"], schedule="@every 3s", retention={"keepLast": 2}
        )
    )
    status = run_four_times_then_suspend(cluster, "often")

    manifests = cluster.secrets("kvbackup.io/keybackup=often,kvbackup.io/role=manifest")
    stored = sorted(item["metadata"]["labels"]["kvbackup.io/snapshot"] for item in manifests)
    first, *newest = stored
    assert len(newest) == 2
    listed = status["snapshots"]
    assert isinstance(listed, list)
    assert sorted(entry["id"] for entry in listed) == stored
    assert all(entry["keys"] == 1 for entry in listed)
    # The key never changed: the first snapshot holds its backup for the two newest, which
    # refer to it, so retention holds it instead of deleting it; the others are gone.
    held = {entry["id"]: entry.get("heldBy") for entry in listed}
    assert held == {first: sorted(newest, reverse=True), **dict.fromkeys(newest)}
    kept_for = {entry["id"]: entry.get("keptFor") for entry in listed}
    assert kept_for == {
        newest[1]: ["newest", "newestSuccessful", "keepLast"],
        newest[0]: ["keepLast"],
        first: None,
    }
    artifacts = cluster.secrets("kvbackup.io/keybackup=often,kvbackup.io/role=artifact")
    assert [a["metadata"]["labels"]["kvbackup.io/snapshot"] for a in artifacts] == [first]


async def test_a_schedule_keeping_two_keeps_the_two_newest_blob_snapshots_and_holds_the_first(
    operator: OperatorProcess,
    cluster: Cluster,
    vault: VaultUnderTest,
    azurite: Azurite,
    blob_store: BlobSnapshotStore,
    container: ContainerClient,
) -> None:
    vault.create_rsa_key("signing", versions=2)
    destination = blob_destination(cluster, azurite, container.container_name, "backups")
    cluster.apply(
        keybackup(
            "often",
            vault.url,
            keys=["signing"],
            schedule="@every 3s",
            retention={"keepLast": 2},
            destination=destination,
        )
    )
    status = run_four_times_then_suspend(cluster, "often")

    stored = await blob_store.list_stored(cluster.namespace, "often")
    # The two newest, and the first, held for them: it holds the unchanged key's backup.
    assert [snapshot.complete for snapshot in stored] == [True, True, True]
    listed = status["snapshots"]
    assert isinstance(listed, list)
    assert sorted(entry["id"] for entry in listed) == sorted(s.snapshot_id for s in stored)
    first = stored[-1].snapshot_id
    assert [e["id"] for e in listed if e.get("heldBy")] == [first]
    for summary in await blob_store.list_snapshots(cluster.namespace, "often"):
        manifest = await read_whole_manifest(
            blob_store, cluster.namespace, "often", summary.snapshot_id
        )
        assert [(a.name, a.home(summary.snapshot_id)) for a in manifest.artifacts] == [
            ("signing", first)
        ]
