"""Retention applied to real storage: Secrets on the API server and blobs on Azurite."""

from __future__ import annotations

import datetime

import pytest

from kvbackup.adapters.blob_store import BlobSnapshotStore
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api.keybackup import KeyBackupRef, Retention
from kvbackup.api.kinds import ItemKind, ItemRef
from kvbackup.services.ports import SnapshotStore, StoredSnapshot, read_whole_manifest
from kvbackup.services.retention import collect_garbage
from tests.integration.conftest import (
    Cluster,
    leave_leftover,
    store_changes,
    store_items,
    store_snapshot,
)

pytestmark = pytest.mark.integration

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
GRACE = datetime.timedelta(hours=1)


@pytest.fixture(params=["secrets", "blob"])
def store(
    request: pytest.FixtureRequest,
    secret_store: SecretSnapshotStore,
    blob_store: BlobSnapshotStore,
) -> SnapshotStore:
    return secret_store if request.param == "secrets" else blob_store


async def test_keep_last_two_leaves_exactly_the_two_newest_and_cleans_crash_leftovers(
    store: SnapshotStore, cluster: Cluster
) -> None:
    ref = KeyBackupRef(cluster.namespace, "nightly", "")
    for snapshot_id in ("20261128-080000-aaaa", "20261128-090000-bbbb", "20261128-100000-cccc"):
        await store_snapshot(store, ref, snapshot_id, {"app-key": snapshot_id.encode()})
    # A run killed mid-upload long ago, and one that may still be resumed.
    await leave_leftover(store, ref, "20261128-070000-dead")
    await leave_leftover(store, ref, "20261128-115900-face")

    kept = await collect_garbage(
        store, cluster.namespace, "nightly", Retention(keep_last=2), NOW, GRACE
    )

    assert [r.summary.snapshot_id for r in kept] == ["20261128-100000-cccc", "20261128-090000-bbbb"]
    assert await store.list_stored(cluster.namespace, "nightly") == [
        StoredSnapshot("20261128-115900-face", complete=False),
        StoredSnapshot("20261128-100000-cccc", complete=True),
        StoredSnapshot("20261128-090000-bbbb", complete=True),
    ]
    manifest = await store.read_manifest(cluster.namespace, "nightly", "20261128-090000-bbbb")
    remaining = await store.read_artifact(
        cluster.namespace,
        "nightly",
        "20261128-090000-bbbb",
        manifest.artifact(ItemKind.KEY, "app-key"),
    )
    assert remaining == b"20261128-090000-bbbb"


async def test_max_age_never_removes_the_newest_snapshot(
    store: SnapshotStore, cluster: Cluster
) -> None:
    ref = KeyBackupRef(cluster.namespace, "stale", "")
    # Completed hours before NOW, so past the hour of maxAge; but it is the only one.
    await store_snapshot(store, ref, "20261120-000000-aaaa", {"app-key": b"old"})
    await leave_leftover(store, ref, "20261121-000000-dead")

    kept = await collect_garbage(
        store,
        cluster.namespace,
        "stale",
        Retention(max_age=datetime.timedelta(hours=1)),
        NOW,
        GRACE,
    )

    assert [r.summary.snapshot_id for r in kept] == ["20261120-000000-aaaa"]
    assert await store.list_stored(cluster.namespace, "stale") == [
        StoredSnapshot("20261120-000000-aaaa", complete=True)
    ]


async def test_a_snapshot_a_kept_one_needs_is_held_and_goes_once_no_kept_one_needs_it(
    store: SnapshotStore, cluster: Cluster
) -> None:
    ref = KeyBackupRef(cluster.namespace, "hourly", "")
    first, second, third = "20261128-080000-aaaa", "20261128-090000-bbbb", "20261128-100000-cccc"
    items = {
        ItemRef(ItemKind.KEY, "app-key"): b"app-key as first backed up",
        ItemRef(ItemKind.SECRET, "db-password"): b"db-password as first backed up",
    }
    base = await store_items(store, ref, first, items)
    whole = await store_changes(
        store, ref, base, second, {ItemRef(ItemKind.KEY, "app-key"): b"app-key changed"}
    )
    await store.write_manifest(whole.differences_from(base), whole.summary)

    kept = await collect_garbage(
        store, cluster.namespace, "hourly", Retention(keep_last=1), NOW, GRACE
    )

    assert [(r.summary.snapshot_id, r.held_by) for r in kept] == [(second, ()), (first, (second,))]
    manifest = await read_whole_manifest(store, cluster.namespace, "hourly", second)
    for artifact in manifest.artifacts:
        artifact.verify(await store.read_artifact(cluster.namespace, "hourly", second, artifact))

    # A whole snapshot of its own: nothing kept needs the two before it any more.
    await store_items(store, ref, third, items)
    kept = await collect_garbage(
        store, cluster.namespace, "hourly", Retention(keep_last=1), NOW, GRACE
    )

    assert [(r.summary.snapshot_id, r.held_by) for r in kept] == [(third, ())]
    assert await store.list_stored(cluster.namespace, "hourly") == [StoredSnapshot(third, True)]
