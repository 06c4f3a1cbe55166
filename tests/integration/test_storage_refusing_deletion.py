"""Storage that refuses deletion (an immutability policy or a legal hold on the container):
retention keeps what it may not delete, says so, and asks again on the next run; the backup
itself succeeds. The refusal is Blob Storage's own documented answer, sent by a proxy in
front of Azurite (which has no immutability policies) and read by the real Blob SDK."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.blob_store import BlobSnapshotStore
from tests.harness.azurite import Azurite
from tests.harness.fault_proxy import IMMUTABLE_BLOB_CODE, FaultProxy, Faults, blob_fault_proxy_for
from tests.harness.operator import OperatorProcess
from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import blob_destination, keybackup
from tests.integration.runs import applied, run_now

pytestmark = pytest.mark.integration


@pytest.fixture
def worm_proxy(azurite: Azurite, tmp_path: Path) -> Iterator[FaultProxy]:
    proxy = blob_fault_proxy_for(azurite, tmp_path)
    yield proxy
    proxy.stop()


async def test_a_snapshot_whose_blobs_storage_refuses_to_delete_is_kept_reported_and_retried(
    operator: OperatorProcess,
    cluster: Cluster,
    vault: VaultUnderTest,
    azurite: Azurite,
    container: ContainerClient,
    blob_store: BlobSnapshotStore,
    worm_proxy: FaultProxy,
) -> None:
    vault.create_rsa_key("signing")
    through_proxy = dataclasses.replace(azurite, port=worm_proxy.port)
    destination = blob_destination(cluster, through_proxy, container.container_name, "backups")
    first = applied(
        cluster,
        "worm",
        keybackup(
            "worm", vault.url, keys=["signing"], retention={"keepLast": 1}, destination=destination
        ),
    )["lastRun"]["snapshotId"]

    worm_proxy.set_faults(Faults(refuse_deletes=True))
    refused = run_now(cluster, "worm", "full-refused")

    second = refused["lastRun"]["snapshotId"]
    assert refused["phase"] == "Succeeded"
    by_id = {entry["id"]: entry for entry in refused["snapshots"]}
    assert list(by_id) == [second, first]
    assert "deletionRefused" not in by_id[second]
    assert IMMUTABLE_BLOB_CODE in by_id[first]["deletionRefused"]
    assert "keptFor" not in by_id[first]
    answered = worm_proxy.counts().answered
    assert (
        sum(n for what, n in answered.items() if what.startswith("DELETE "))
        == sum(
            n
            for what, n in answered.items()
            if what.startswith("DELETE ") and what.endswith(" 409")
        )
        > 0
    )
    assert cluster.event_count("worm", "DeletionRefused") == 1
    stored = [s.snapshot_id for s in await blob_store.list_snapshots(cluster.namespace, "worm")]
    assert stored == [second, first]

    worm_proxy.set_faults(Faults())
    allowed = run_now(cluster, "worm", "full-allowed")

    third = allowed["lastRun"]["snapshotId"]
    assert [entry["id"] for entry in allowed["snapshots"]] == [third]
    stored = [s.snapshot_id for s in await blob_store.list_snapshots(cluster.namespace, "worm")]
    assert stored == [third]
