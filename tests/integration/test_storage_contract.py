"""What every snapshot store does alike: the unit tests' in-memory store, Secrets on the
real API server and blobs on Azurite, each held to the same cases. A store's layout, its
bounds and its checks of what it reads back are tested in its own module; the layout
written before there were secrets and certificates is written here the way it was, for
both real stores to read."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.blob_store import BlobSnapshotStore, artifact_blob
from kvbackup.adapters.secret_store import (
    INDEX_DATA_KEY,
    MANIFEST_DATA_KEY,
    MANIFEST_PARTS_ANNOTATION,
    MANIFEST_SHA256_ANNOTATION,
    SUMMARY_DATA_KEY,
    SecretSnapshotStore,
    entry_name,
    manifest_part_name,
    manifest_secret_name,
    pack_secret_name,
)
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.api.kinds import ITEM_KINDS, ItemKind, ItemRef
from kvbackup.errors import IntegrityError, NotFoundError
from kvbackup.services.ports import SnapshotStore, StoredSnapshot, read_whole_manifest
from kvbackup.services.snapshot import Artifact, Manifest, sha256_hex
from tests.integration.conftest import (
    SNAPSHOT,
    Cluster,
    backup_labels,
    leave_leftover,
    store_changes,
    store_items,
    store_snapshot,
)
from tests.unit.fakes import InMemoryStore, artifacts_of, manifest_of

pytestmark = pytest.mark.integration

#: A key the manifest lists but the store never received.
GONE = Artifact("gone", ("v1",), "0" * 64, 1)
#: More bytes than a pack holds: either store writes such an item at once, not gathered.
SPLIT = 1_200_000

Tamper = Callable[[KeyBackupRef, str, Artifact, bytes], Awaitable[None]]
#: Stores keys as the layout before there were secrets and certificates did.
WriteKeysOnly = Callable[[KeyBackupRef, str, Mapping[str, bytes]], Awaitable[Manifest]]


@dataclass(frozen=True)
class StoreUnderTest:
    store: SnapshotStore
    #: Where the store keeps the tests' snapshots: a namespace of the API server for Secrets.
    namespace: str
    #: Overwrites one item's stored backup (its first chunk, when split) in a snapshot,
    #: behind the store's back.
    tamper: Tamper
    #: None for the in-memory store, which has no layout of its own.
    write_keys_only: WriteKeysOnly | None = None

    def ref(self, keybackup: str = "payments") -> KeyBackupRef:
        return KeyBackupRef(self.namespace, keybackup, "uid-1")


def _in_memory(_: pytest.FixtureRequest) -> StoreUnderTest:
    store = InMemoryStore()

    async def tamper(_: KeyBackupRef, __: str, artifact: Artifact, data: bytes) -> None:
        store.replace_artifact(artifact.name, data, artifact.kind)

    return StoreUnderTest(store, "payments", tamper)


def _in_secrets(request: pytest.FixtureRequest) -> StoreUnderTest:
    cluster: Cluster = request.getfixturevalue("cluster")
    store: SecretSnapshotStore = request.getfixturevalue("secret_store")

    async def tamper(_: KeyBackupRef, __: str, artifact: Artifact, data: bytes) -> None:
        packs = artifact.location.split(",")
        entry = entry_name(artifact.kind, artifact.name, 0, len(packs))
        cluster.patch_secret_data(packs[0], entry, data)

    async def write_keys_only(
        ref: KeyBackupRef, snapshot_id: str, keys: Mapping[str, bytes]
    ) -> Manifest:
        """One pack whose index names no kinds, and a manifest whose keys name none."""
        pack = pack_secret_name(ref.name, snapshot_id, "01d", 0)
        index = [
            {
                "name": name,
                "versions": ["v1", "v2"],
                "sha256": sha256_hex(data),
                "size": len(data),
                "chunk": 0,
                "chunks": 1,
            }
            for name, data in keys.items()
        ]
        cluster.create_secret(
            pack,
            backup_labels(ref.name, snapshot_id, "artifact"),
            {**keys, INDEX_DATA_KEY: json.dumps(index).encode()},
        )
        manifest = manifest_of(
            *artifacts_of(keys, dict.fromkeys(keys, pack)), ref=ref, snapshot_id=snapshot_id
        )
        document = _keys_only_manifest(manifest)
        cluster.create_secret(
            manifest_part_name(ref.name, snapshot_id, 0),
            backup_labels(ref.name, snapshot_id, "manifest-part"),
            {MANIFEST_DATA_KEY: document},
        )
        cluster.create_secret(
            manifest_secret_name(ref.name, snapshot_id),
            backup_labels(ref.name, snapshot_id, "manifest"),
            {SUMMARY_DATA_KEY: manifest.summary.to_json()},
            {MANIFEST_PARTS_ANNOTATION: "1", MANIFEST_SHA256_ANNOTATION: sha256_hex(document)},
        )
        return manifest

    return StoreUnderTest(store, cluster.namespace, tamper, write_keys_only)


def _in_blobs(request: pytest.FixtureRequest) -> StoreUnderTest:
    store: BlobSnapshotStore = request.getfixturevalue("blob_store")
    container: ContainerClient = request.getfixturevalue("container")

    async def tamper(ref: KeyBackupRef, snapshot_id: str, artifact: Artifact, data: bytes) -> None:
        folder = store.folder(ref.namespace, ref.name, snapshot_id)
        blob = container.get_blob_client(artifact_blob(folder, artifact.kind, artifact.name))
        recorded = (await blob.get_blob_properties()).metadata  # kept as it was
        await blob.upload_blob(data, overwrite=True, metadata=recorded)

    async def write_keys_only(
        ref: KeyBackupRef, snapshot_id: str, keys: Mapping[str, bytes]
    ) -> Manifest:
        """Blobs under keys/ whose metadata names no kind, and a manifest whose keys name
        none."""
        folder = store.folder(ref.namespace, ref.name, snapshot_id)
        for name, data in keys.items():
            recorded = {"keyname": name, "sha256": sha256_hex(data), "versions": "v1,v2"}
            await container.upload_blob(f"{folder}/keys/{name.lower()}", data, metadata=recorded)
        manifest = manifest_of(*artifacts_of(keys), ref=ref, snapshot_id=snapshot_id)
        await container.upload_blob(
            f"{folder}/manifest.json",
            _keys_only_manifest(manifest),
            metadata={"summary": manifest.summary.to_json().decode()},
        )
        return manifest

    return StoreUnderTest(store, "payments", tamper, write_keys_only)


def _keys_only_manifest(manifest: Manifest) -> bytes:
    """``manifest`` of keys alone as it was written before there were other kinds: no
    entry names its kind."""
    document = json.loads(manifest.to_json())
    assert set(document) & {"secrets", "certificates"} == set()
    for entry in document["keys"]:
        del entry["kind"]
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


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
        artifact = manifest.artifact(ItemKind.KEY, name.upper())  # names are case-insensitive
        stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, artifact)
        assert stored == data
        artifact.verify(stored)


async def test_an_empty_key_backup_reads_back_as_no_bytes(under_test: StoreUnderTest) -> None:
    store, ref = under_test.store, under_test.ref()
    manifest = await store_snapshot(store, ref, SNAPSHOT, {"empty": b""})

    stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, manifest.artifacts[0])
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
    artifact = manifest.artifact(ItemKind.KEY, "k")
    stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, artifact)
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

    artifact = manifest.artifact(ItemKind.KEY, "k")
    await under_test.tamper(ref, SNAPSHOT, artifact, bytes([original[0] ^ 0xFF]) + original[1:])

    stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, artifact)
    with pytest.raises(IntegrityError, match="sha256"):
        artifact.verify(stored)
    assert [a.name for a in await store.resumable(ref, SNAPSHOT)] == ["j"]


async def test_a_missing_artifact_is_reported_as_missing(under_test: StoreUnderTest) -> None:
    store, ref = under_test.store, under_test.ref()
    manifest = await store_snapshot(store, ref, SNAPSHOT, {"k": b"x"})
    # A secret the manifest says is kept beside key k.
    gone_secret = replace(GONE, kind=ItemKind.SECRET, location=manifest.artifacts[0].location)

    for gone in (GONE, gone_secret):
        with pytest.raises(NotFoundError, match=f"backup of {gone.kind} gone is missing") as raised:
            await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, gone)
        assert raised.value.reason == "ArtifactMissing"


#: One name for an item of each kind: Key Vault keeps each kind's names apart.
SHARED = {kind: ItemRef(kind, "db-password") for kind in ITEM_KINDS}


async def test_a_key_a_secret_and_a_certificate_of_one_name_round_trip_byte_exact_and_apart(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    items = {  # in the order a run lists them: by kind
        SHARED[ItemKind.KEY]: os.urandom(3000),
        SHARED[ItemKind.SECRET]: os.urandom(2000),
        ItemRef(ItemKind.SECRET, "api-token"): os.urandom(500),
        SHARED[ItemKind.CERTIFICATE]: os.urandom(SPLIT),  # split over Secrets
    }
    written = await store_items(store, ref, SNAPSHOT, items)

    [summary] = await store.list_snapshots(ref.namespace, ref.name)
    assert summary == written.summary
    assert (summary.keys, summary.secrets, summary.certificates) == (1, 2, 1)
    manifest = await store.read_manifest(ref.namespace, ref.name, SNAPSHOT)
    assert manifest == written
    for item, data in items.items():
        artifact = manifest.artifact(item.kind, item.name.upper())
        stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, artifact)
        assert stored == data
        artifact.verify(stored)


async def test_items_of_one_name_resume_each_by_its_own_bytes(under_test: StoreUnderTest) -> None:
    store, ref = under_test.store, under_test.ref()
    items = {SHARED[kind]: os.urandom(1000) for kind in ITEM_KINDS}
    manifest = await store_items(store, ref, SNAPSHOT, items)
    secret = manifest.artifact(ItemKind.SECRET, "db-password")

    assert {(a.kind, a.name, a.sha256) for a in await store.resumable(ref, SNAPSHOT)} == {
        (item.kind, item.name, sha256_hex(data)) for item, data in items.items()
    }
    await under_test.tamper(ref, SNAPSHOT, secret, b"altered")

    resumed = await store.resumable(ref, SNAPSHOT)
    assert sorted(a.kind for a in resumed) == sorted([ItemKind.KEY, ItemKind.CERTIFICATE])
    for artifact in resumed:
        stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, artifact)
        assert stored == items[ItemRef(artifact.kind, artifact.name)]


async def test_a_resumed_run_finds_each_kinds_artifacts_with_their_kind(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    items = {SHARED[kind]: os.urandom(SPLIT) for kind in ITEM_KINDS}
    items[ItemRef(ItemKind.CERTIFICATE, "api-tls")] = os.urandom(SPLIT)
    for item, data in items.items():  # a run stopped before its manifest
        await store.write_artifact(ref, SNAPSHOT, item.kind, item.name, data, ("v1", "v2"))

    resumed = await store.resumable(ref, SNAPSHOT)

    assert sorted((a.kind, a.name, a.versions, a.size) for a in resumed) == sorted(
        (item.kind, item.name, ("v1", "v2"), SPLIT) for item in items
    )
    assert await store.list_snapshots(ref.namespace, ref.name) == []
    for artifact in resumed:
        stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, artifact)
        assert stored == items[ItemRef(artifact.kind, artifact.name)]
        artifact.verify(stored)


@pytest.mark.parametrize("under_test", ["Secrets", "blobs"], indirect=True)
async def test_a_snapshot_of_the_keys_only_layout_still_lists_reads_and_resumes_as_keys(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    assert under_test.write_keys_only is not None
    keys = {"signing-key": os.urandom(9000), "Wrapping-Key": os.urandom(12000)}
    written = await under_test.write_keys_only(ref, SNAPSHOT, keys)

    assert await store.list_snapshots(ref.namespace, ref.name) == [written.summary]
    manifest = await store.read_manifest(ref.namespace, ref.name, SNAPSHOT)
    assert manifest == written
    assert {a.kind for a in manifest.artifacts} == {ItemKind.KEY}
    for name, data in keys.items():
        artifact = manifest.artifact(ItemKind.KEY, name)
        stored = await store.read_artifact(ref.namespace, ref.name, SNAPSHOT, artifact)
        assert stored == data
        artifact.verify(stored)
    resumed = await store.resumable(ref, SNAPSHOT)
    assert sorted((a.kind, a.name, a.sha256) for a in resumed) == sorted(
        (ItemKind.KEY, name, sha256_hex(data)) for name, data in keys.items()
    )


#: The stores that keep artifacts of one snapshot for later ones to refer to.
REAL_STORES = pytest.mark.parametrize("under_test", ["Secrets", "blobs"], indirect=True)
EARLIER, LATER = "20261128-010000-aaaa", "20261128-020000-bbbb"
SIGNING = ItemRef(ItemKind.KEY, "signing-key")
PASSWORD = ItemRef(ItemKind.SECRET, "db-password")
TLS = ItemRef(ItemKind.CERTIFICATE, "api-tls")
TOKEN = ItemRef(ItemKind.SECRET, "api-token")


async def _read_verified(
    store: SnapshotStore, ref: KeyBackupRef, snapshot_id: str, artifact: Artifact
) -> bytes:
    data = await store.read_artifact(ref.namespace, ref.name, snapshot_id, artifact)
    artifact.verify(data)
    return data


@REAL_STORES
async def test_an_artifact_carried_from_an_earlier_snapshot_is_read_from_there_and_verifies(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    items = {SIGNING: os.urandom(3000), PASSWORD: os.urandom(500), TLS: os.urandom(SPLIT)}
    earlier = await store_items(store, ref, EARLIER, items)
    changed = os.urandom(700)
    later = await store_changes(store, ref, earlier, LATER, {SIGNING: changed})
    await store.write_manifest(later, later.summary)

    manifest = await store.read_manifest(ref.namespace, ref.name, LATER)
    assert manifest == later
    assert manifest.artifact(ItemKind.CERTIFICATE, "api-tls").stored_in == EARLIER
    for item, data in (items | {SIGNING: changed}).items():
        assert await _read_verified(store, ref, LATER, manifest.artifact(*item)) == data
    newest, _ = await store.list_snapshots(ref.namespace, ref.name)
    assert newest == later.summary
    assert newest.new_bytes == len(changed)


@REAL_STORES
async def test_a_carried_artifact_whose_snapshot_is_gone_is_missing_from_that_snapshot(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    earlier = await store_items(store, ref, EARLIER, {TLS: os.urandom(SPLIT)})
    later = await store_changes(store, ref, earlier, LATER, {SIGNING: b"x"})
    await store.write_manifest(later, later.summary)

    await store.delete_snapshot(ref.namespace, ref.name, EARLIER)

    with pytest.raises(NotFoundError, match=f"api-tls is missing from snapshot {EARLIER}") as gone:
        await store.read_artifact(ref.namespace, ref.name, LATER, later.artifact(*TLS))
    assert gone.value.reason == "ArtifactMissing"


@REAL_STORES
async def test_a_stored_in_is_only_a_snapshot_id_so_another_keybackups_snapshot_is_never_read(
    under_test: StoreUnderTest,
) -> None:
    store, ref, other = under_test.store, under_test.ref(), under_test.ref("ledger")
    planted = b"the ledger KeyBackup's backup of signing-key"
    [theirs] = (await store_items(store, other, EARLIER, {SIGNING: planted})).artifacts
    # Payments' manifest claims the ledger's artifact: where the ledger stores it, and
    # where payments' own snapshot of that id would.
    renamed = theirs.location.replace("ledger-", "payments-", 1)
    for claim in (theirs, replace(theirs, location=renamed)):
        forged = manifest_of(replace(claim, stored_in=EARLIER), ref=ref, snapshot_id=LATER)
        await store.write_manifest(forged, forged.summary)
        [artifact] = (await store.read_manifest(ref.namespace, ref.name, LATER)).artifacts

        with pytest.raises((NotFoundError, IntegrityError)) as refused:
            await store.read_artifact(ref.namespace, ref.name, LATER, artifact)

        assert f"snapshot {EARLIER}" in refused.value.message
        assert "ledger" not in refused.value.message
    assert await _read_verified(store, other, EARLIER, theirs) == planted


@REAL_STORES
async def test_a_differential_manifest_reads_back_as_stored_and_whole_once_merged(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    items = {SIGNING: os.urandom(3000), PASSWORD: os.urandom(500), TLS: os.urandom(SPLIT)}
    base = await store_items(store, ref, EARLIER, items)
    changed, added = os.urandom(700), os.urandom(90)
    renewed = {SIGNING: changed, TOKEN: added}
    whole = await store_changes(store, ref, base, LATER, renewed, gone={PASSWORD})
    differential = whole.differences_from(base)
    assert {a.ref for a in differential.artifacts} == {SIGNING, TOKEN}
    assert differential.removed == (PASSWORD,)

    await store.write_manifest(differential, whole.summary)

    newest, _ = await store.list_snapshots(ref.namespace, ref.name)
    assert newest == whole.summary
    assert (newest.new_bytes, newest.total_bytes) == (790, 790 + SPLIT)
    assert await store.read_manifest(ref.namespace, ref.name, LATER) == differential
    merged = await read_whole_manifest(store, ref.namespace, ref.name, LATER)
    assert set(merged.artifacts) == set(whole.artifacts)
    assert merged.find(*PASSWORD) is None
    for item, data in {TLS: items[TLS], **renewed}.items():
        assert await _read_verified(store, ref, LATER, merged.artifact(*item)) == data


@REAL_STORES
@pytest.mark.parametrize(
    "forged",
    [
        pytest.param("../ledger/20261128-010000-aaaa", id="climbing"),
        pytest.param(f"{EARLIER}\n", id="trailing-newline"),
        pytest.param("latest", id="not-an-id"),
    ],
)
async def test_a_stored_in_that_is_not_a_snapshot_id_is_refused_by_the_store_before_any_read(
    under_test: StoreUnderTest, forged: str
) -> None:
    store, ref = under_test.store, under_test.ref()
    [artifact] = (await store_items(store, ref, EARLIER, {SIGNING: b"x"})).artifacts

    with pytest.raises(IntegrityError, match="which is not a snapshot id"):
        await store.read_artifact(
            ref.namespace, ref.name, EARLIER, replace(artifact, stored_in=forged)
        )


@REAL_STORES
async def test_a_summary_of_another_snapshot_is_refused_and_the_snapshot_stays_incomplete(
    under_test: StoreUnderTest,
) -> None:
    store, ref = under_test.store, under_test.ref()
    [artifact] = (await store_items(store, ref, EARLIER, {SIGNING: b"x"})).artifacts
    manifest = manifest_of(artifact, ref=ref, snapshot_id=LATER)

    with pytest.raises(IntegrityError, match=f"summary of snapshot {EARLIER}, not of snapshot"):
        await store.write_manifest(manifest, replace(manifest.summary, snapshot_id=EARLIER))

    assert [s.snapshot_id for s in await store.list_snapshots(ref.namespace, ref.name)] == [EARLIER]
