"""What every snapshot store does alike: the unit tests' in-memory store, Secrets on the
real API server and blobs on Azurite, each held to the same cases. A store's layout, its
bounds and its checks of what it reads back are tested in its own module."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.blob_store import BlobSnapshotStore, artifact_blob
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.errors import IntegrityError, NotFoundError
from kvbackup.services.ports import SnapshotStore, StoredSnapshot
from kvbackup.services.snapshot import KeyArtifact, Manifest
from tests.integration.conftest import SNAPSHOT, Cluster, leave_leftover, store_snapshot
from tests.unit.fakes import InMemoryStore

pytestmark = pytest.mark.integration

#: A key the manifest lists but the store never received.
GONE = KeyArtifact("gone", ("v1",), "0" * 64, 1)


@dataclass(frozen=True)
class StoreUnderTest:
    store: SnapshotStore
    #: Where the store keeps the tests' snapshots: a namespace of the API server for Secrets.
    namespace: str
    #: Overwrites one key's stored backup in a snapshot behind the store's back.
    tamper: Callable[[Manifest, str, bytes], Awaitable[None]]

    def ref(self, keybackup: str = "payments") -> KeyBackupRef:
        return KeyBackupRef(self.namespace, keybackup, "uid-1")


def _in_memory(_: pytest.FixtureRequest) -> StoreUnderTest:
    store = InMemoryStore()

    async def tamper(_: Manifest, key_name: str, data: bytes) -> None:
        store.replace_artifact(key_name, data)

    return StoreUnderTest(store, "payments", tamper)


def _in_secrets(request: pytest.FixtureRequest) -> StoreUnderTest:
    cluster: Cluster = request.getfixturevalue("cluster")
    store: SecretSnapshotStore = request.getfixturevalue("secret_store")

    async def tamper(manifest: Manifest, key_name: str, data: bytes) -> None:
        cluster.patch_secret_data(manifest.artifact(key_name).location, key_name, data)

    return StoreUnderTest(store, cluster.namespace, tamper)


def _in_blobs(request: pytest.FixtureRequest) -> StoreUnderTest:
    store: BlobSnapshotStore = request.getfixturevalue("blob_store")
    container: ContainerClient = request.getfixturevalue("container")

    async def tamper(manifest: Manifest, key_name: str, data: bytes) -> None:
        ref = manifest.keybackup
        folder = store.folder(ref.namespace, ref.name, manifest.snapshot_id)
        await container.upload_blob(artifact_blob(folder, key_name), data, overwrite=True)

    return StoreUnderTest(store, "payments", tamper)


STORES = {"in memory": _in_memory, "Secrets": _in_secrets, "blobs": _in_blobs}


@pytest.fixture(params=list(STORES))
def under_test(request: pytest.FixtureRequest) -> StoreUnderTest:
    """Each store, starting only the services it needs."""
    return STORES[request.param](request)


async def test_a_snapshot_written_is_listed_and_read_back_byte_exact(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    artifacts = {"signing-key": os.urandom(9000), "Wrapping-Key": os.urandom(12000)}
    written = await store_snapshot(store, ref, SNAPSHOT, artifacts)

    assert await store.list_snapshots(ref.namespace, ref.name) == [written.summary]
    assert await store.list_stored(ref.namespace, ref.name) == [StoredSnapshot(SNAPSHOT, True)]
    manifest = await store.read_manifest(ref.namespace, ref.name, SNAPSHOT)
    assert manifest == written
    for name, data in artifacts.items():
        artifact = manifest.artifact(name.upper())  # key names are case-insensitive
        stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, artifact)
        assert stored == data
        artifact.verify(stored)


async def test_an_empty_key_backup_reads_back_as_no_bytes(under_test: StoreUnderTest) -> None:
    store, ref = under_test.store, under_test.ref()
    manifest = await store_snapshot(store, ref, SNAPSHOT, {"empty": b""})

    stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, manifest.keys[0])
    assert stored == b""


async def test_snapshots_are_listed_newest_first(under_test: StoreUnderTest) -> None:
    store, ref = under_test.store, under_test.ref()
    for snapshot_id in ("20261128-010000-aaaa", "20261128-030000-cccc", "20261128-020000-bbbb"):
        await store_snapshot(store, ref, snapshot_id, {"k": b"x"})

    snapshots = await store.list_snapshots(ref.namespace, ref.name)
    assert [s.snapshot_id for s in snapshots] == [
        "20261128-030000-cccc",
        "20261128-020000-bbbb",
        "20261128-010000-aaaa",
    ]


async def test_a_snapshot_without_a_manifest_is_stored_but_never_offered(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    await store_snapshot(store, ref, "20261128-010203-aaaa", {"k": b"complete"})
    await leave_leftover(store, ref, "20261128-020000-bbbb")

    snapshots = await store.list_snapshots(ref.namespace, ref.name)
    assert [s.snapshot_id for s in snapshots] == ["20261128-010203-aaaa"]
    assert await store.list_stored(ref.namespace, ref.name) == [
        StoredSnapshot("20261128-020000-bbbb", complete=False),
        StoredSnapshot("20261128-010203-aaaa", complete=True),
    ]


async def test_snapshots_of_a_keybackup_whose_name_extends_another_are_kept_apart(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref("payments-keys")
    await store_snapshot(store, ref, "20261128-010000-aaaa", {"k": b"x"})
    await store_snapshot(store, under_test.ref("payments-keys-eu"), "20261128-020000-bbbb", {})

    snapshots = await store.list_snapshots(ref.namespace, ref.name)
    assert [s.snapshot_id for s in snapshots] == ["20261128-010000-aaaa"]
    assert await store.list_stored(ref.namespace, ref.name) == [
        StoredSnapshot("20261128-010000-aaaa", complete=True)
    ]


async def test_a_redone_run_replaces_its_snapshot_instead_of_adding_one(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    await store_snapshot(store, ref, SNAPSHOT, {"k": b"first attempt"})
    redone = await store_snapshot(store, ref, SNAPSHOT, {"K": b"second attempt"})

    assert await store.list_snapshots(ref.namespace, ref.name) == [redone.summary]
    manifest = await store.read_manifest(ref.namespace, ref.name, SNAPSHOT)
    stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, manifest.artifact("k"))
    assert stored == b"second attempt"


async def test_deleting_a_snapshot_removes_it_whole_and_leaves_the_others(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    await store_snapshot(store, ref, "20261128-010000-aaaa", {"a": b"x", "b": b"y"})
    await store_snapshot(store, ref, "20261128-020000-bbbb", {"a": b"z"})
    await leave_leftover(store, ref, "20261128-030000-cccc")

    for snapshot_id in ("20261128-010000-aaaa", "20261128-030000-cccc"):
        await store.delete_snapshot(ref.namespace, ref.name, snapshot_id)

    snapshots = await store.list_snapshots(ref.namespace, ref.name)
    assert [s.snapshot_id for s in snapshots] == ["20261128-020000-bbbb"]
    assert await store.list_stored(ref.namespace, ref.name) == [
        StoredSnapshot("20261128-020000-bbbb", complete=True)
    ]
    # Deleting again, as a redone garbage collection does, is not an error.
    await store.delete_snapshot(ref.namespace, ref.name, "20261128-010000-aaaa")


async def test_a_tampered_artifact_fails_verification_and_is_not_resumed(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    original = os.urandom(4000)
    manifest = await store_snapshot(store, ref, SNAPSHOT, {"k": original, "j": os.urandom(10)})

    await under_test.tamper(manifest, "k", bytes([original[0] ^ 0xFF]) + original[1:])

    stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, manifest.artifact("k"))
    with pytest.raises(IntegrityError, match="sha256"):
        manifest.artifact("k").verify(stored)
    assert [a.name for a in await store.resumable(ref, SNAPSHOT)] == ["j"]


async def test_a_missing_artifact_is_reported_as_missing(under_test: StoreUnderTest) -> None:
    store, ref = under_test.store, under_test.ref()
    await store_snapshot(store, ref, SNAPSHOT, {"k": b"x"})

    with pytest.raises(NotFoundError, match="backup of key gone is missing") as raised:
        await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, GONE)
    assert raised.value.reason == "ArtifactMissing"
