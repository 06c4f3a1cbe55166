"""Snapshots kept as blobs, written and read against a real Azurite with the real SDK."""

from __future__ import annotations

import datetime
import json
import os
import resource
from dataclasses import replace

import pytest
from azure.storage.blob import ContainerSasPermissions, ContentSettings, generate_container_sas
from azure.storage.blob.aio import BlobClient, ContainerClient

from kvbackup.adapters import blob_store
from kvbackup.adapters.blob_store import BlobSnapshotStore, container_client
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.api.kinds import ItemKind, ItemRef
from kvbackup.errors import (
    AccessDeniedError,
    IntegrityError,
    InvalidSpecError,
    KvBackupError,
    MissingReferenceError,
    NotFoundError,
    TooLargeError,
)
from kvbackup.services.ports import StoredSnapshot
from kvbackup.services.snapshot import MANIFEST_MAX_BYTES, Artifact, sha256_hex
from tests.harness.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from tests.harness.hostile import gzip_bomb
from tests.integration.conftest import SNAPSHOT, store_changes, store_items, store_snapshot
from tests.unit.fakes import artifacts_of, manifest_of

pytestmark = pytest.mark.integration

NAMESPACE = "payments"
#: A key the manifest lists but the store never received.
GONE = Artifact("gone", ("v1",), "0" * 64, 1)
REF = KeyBackupRef(NAMESPACE, "payments-keys", "uid-1")
PREFIX = "backups/prod"


@pytest.fixture
def store(blob_client: ContainerClient) -> BlobSnapshotStore:
    return BlobSnapshotStore(blob_client, PREFIX)


async def _blob_names(container: ContainerClient) -> list[str]:
    return sorted([blob.name async for blob in container.list_blobs()])


async def test_a_snapshot_round_trips_byte_exact_under_the_documented_layout(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    artifacts = {"signing-key": os.urandom(9000), "Wrapping-Key": os.urandom(2_500_000)}
    await store_snapshot(store, REF, SNAPSHOT, artifacts)

    [summary] = await store.list_snapshots(NAMESPACE, "payments-keys")
    manifest = await store.read_manifest(NAMESPACE, "payments-keys", SNAPSHOT)
    assert manifest == manifest_of(*artifacts_of(artifacts), ref=REF, snapshot_id=SNAPSHOT)
    assert summary == manifest.summary
    for name, data in artifacts.items():
        artifact = manifest.artifact(ItemKind.KEY, name)
        stored = await store.read_artifact(NAMESPACE, "payments-keys", SNAPSHOT, artifact)
        assert stored == data
        artifact.verify(stored)
    folder = f"backups/prod/payments/payments-keys/{SNAPSHOT}"
    assert await _blob_names(container) == [
        f"{folder}/keys/signing-key",
        f"{folder}/keys/wrapping-key",
        f"{folder}/manifest.json",
    ]


async def test_each_kind_is_kept_in_its_own_folder_with_its_kind_recorded(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    items = {
        ItemRef(ItemKind.KEY, "db-password"): b"a key's backup",
        ItemRef(ItemKind.SECRET, "DB-Password"): b"a secret's backup",
        ItemRef(ItemKind.CERTIFICATE, "db-password"): b"a certificate's backup",
    }
    await store_items(store, REF, SNAPSHOT, items)

    folder = f"backups/prod/payments/payments-keys/{SNAPSHOT}"
    assert await _blob_names(container) == [
        f"{folder}/certificates/db-password",
        f"{folder}/keys/db-password",
        f"{folder}/manifest.json",
        f"{folder}/secrets/db-password",
    ]
    for item, data in items.items():
        blob = container.get_blob_client(f"{folder}/{item.kind.plural}/db-password")
        assert await (await blob.download_blob()).readall() == data
        recorded = (await blob.get_blob_properties()).metadata
        assert (recorded["kind"], recorded["name"]) == (item.kind.value, item.name)


async def test_an_empty_prefix_puts_snapshots_at_the_root_of_the_container(
    blob_client: ContainerClient, container: ContainerClient
) -> None:
    store = BlobSnapshotStore(blob_client, "")
    await store_snapshot(store, REF, SNAPSHOT, {"k": b"x"})

    assert await _blob_names(container) == [
        f"payments/payments-keys/{SNAPSHOT}/keys/k",
        f"payments/payments-keys/{SNAPSHOT}/manifest.json",
    ]
    assert [m.snapshot_id for m in await store.list_snapshots(NAMESPACE, "payments-keys")] == [
        SNAPSHOT
    ]


async def test_a_folder_the_store_did_not_write_is_not_taken_for_a_snapshot(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    await store_snapshot(store, REF, "20261128-010203-aaaa", {"k": b"complete"})
    folder = "backups/prod/payments/payments-keys"
    await container.upload_blob(f"{folder}/20261128-020000-bbbb/notes.txt", b"not a backup")
    await container.upload_blob(f"{folder}/README", b"not a snapshot either")

    assert await store.list_stored(NAMESPACE, "payments-keys") == [
        StoredSnapshot("20261128-010203-aaaa", complete=True)
    ]


async def test_redoing_an_interrupted_run_overwrites_instead_of_duplicating(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    await store.write_artifact(REF, SNAPSHOT, ItemKind.KEY, "k", b"first attempt")
    await store.write_artifact(REF, SNAPSHOT, ItemKind.KEY, "K", b"second attempt")
    manifest = manifest_of(*artifacts_of({"k": b"second attempt"}), ref=REF, snapshot_id=SNAPSHOT)
    await store.write_manifest(manifest, manifest.summary)
    await store.write_manifest(manifest, manifest.summary)

    manifest = await store.read_manifest(NAMESPACE, "payments-keys", SNAPSHOT)
    artifact = manifest.artifacts[0]
    stored = await store.read_artifact(NAMESPACE, "payments-keys", SNAPSHOT, artifact)
    assert stored == b"second attempt"
    assert len(await _blob_names(container)) == 2


async def test_deleting_a_snapshot_removes_all_its_blobs_and_no_others(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    await store_snapshot(store, REF, "20261128-010000-aaaa", {"a": b"x", "b": b"y"})
    await store_snapshot(store, REF, "20261128-020000-bbbb", {"a": b"z"})

    await store.delete_snapshot(NAMESPACE, "payments-keys", "20261128-010000-aaaa")

    assert [s.snapshot_id for s in await store.list_snapshots(NAMESPACE, "payments-keys")] == [
        "20261128-020000-bbbb"
    ]
    assert await store.list_stored(NAMESPACE, "payments-keys") == [
        StoredSnapshot("20261128-020000-bbbb", complete=True)
    ]
    assert all("20261128-010000-aaaa" not in name for name in await _blob_names(container))
    # Deleting again, as a redone garbage collection does, is not an error.
    await store.delete_snapshot(NAMESPACE, "payments-keys", "20261128-010000-aaaa")


async def test_a_deletion_that_stops_halfway_never_leaves_a_snapshot_that_looks_complete(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    await store_snapshot(store, REF, SNAPSHOT, {"k": b"x"})
    # A leased blob cannot be deleted, so the deletion stops at the artifact.
    artifact = container.get_blob_client(f"backups/prod/payments/payments-keys/{SNAPSHOT}/keys/k")
    lease = await artifact.acquire_lease(lease_duration=-1)

    with pytest.raises(KvBackupError):
        await store.delete_snapshot(NAMESPACE, "payments-keys", SNAPSHOT)

    assert await store.list_snapshots(NAMESPACE, "payments-keys") == []
    assert await store.list_stored(NAMESPACE, "payments-keys") == [
        StoredSnapshot(SNAPSHOT, complete=False)
    ]
    await lease.release()
    await store.delete_snapshot(NAMESPACE, "payments-keys", SNAPSHOT)
    assert await store.list_stored(NAMESPACE, "payments-keys") == []


async def test_a_downloaded_artifact_is_exactly_what_key_vault_returned(
    store: BlobSnapshotStore,
) -> None:
    backups = {
        ItemRef(ItemKind.KEY, "card-signing"): os.urandom(30_000),
        ItemRef(ItemKind.SECRET, "db-password"): os.urandom(3_000),
        ItemRef(ItemKind.CERTIFICATE, "api-tls"): os.urandom(10_000),
    }
    await store_items(store, REF, SNAPSHOT, backups)

    # What a person does with the location from the KeyBackup's status and the Azure tools.
    location = store.location(NAMESPACE, "payments-keys", SNAPSHOT)
    for path, backup in (
        ("keys/card-signing", backups[ItemRef(ItemKind.KEY, "card-signing")]),
        ("secrets/db-password", backups[ItemRef(ItemKind.SECRET, "db-password")]),
        ("certificates/api-tls", backups[ItemRef(ItemKind.CERTIFICATE, "api-tls")]),
    ):
        blob = BlobClient.from_blob_url(
            f"{location}{path}",
            credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
        )
        async with blob:
            downloaded = await (await blob.download_blob()).readall()
        assert downloaded == backup


async def test_a_snapshot_is_read_by_its_path_alone_once_the_keybackup_is_gone(
    store: BlobSnapshotStore, azurite: Azurite, container: ContainerClient
) -> None:
    backup = os.urandom(5000)
    await store_snapshot(store, REF, SNAPSHOT, {"card-signing": backup})
    location = store.location(NAMESPACE, "payments-keys", SNAPSHOT)

    # Nothing but the account, the container and the path, in a fresh store without prefix.
    client = container_client(
        azurite.blob_endpoint,
        container.container_name,
        hosts=azurite.blob_hosts,
        connection_string=azurite.connection_string(),
    )
    async with client:
        fresh = BlobSnapshotStore(client)
        for path in (f"backups/prod/payments/payments-keys/{SNAPSHOT}/", location):
            manifest = await fresh.read_manifest_at(path)
            assert manifest == manifest_of(
                *artifacts_of({"card-signing": backup}), ref=REF, snapshot_id=SNAPSHOT
            )
            artifact = manifest.artifact(ItemKind.KEY, "card-signing")
            artifact.verify(await fresh.read_artifact_at(path, artifact))
        with pytest.raises(MissingReferenceError) as raised:
            await fresh.read_manifest_at("backups/prod/payments/payments-keys/20990101-000000-none")
        assert raised.value.reason == "SourceNotFound"


async def test_a_sas_token_authenticates_and_never_shows_in_a_location(
    azurite: Azurite, container: ContainerClient
) -> None:
    sas = generate_container_sas(
        ACCOUNT_NAME,
        container.container_name,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, write=True, list=True, delete=True),
        expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
    )
    client = container_client(
        azurite.blob_endpoint, container.container_name, hosts=azurite.blob_hosts, sas_token=sas
    )
    async with client:
        store = BlobSnapshotStore(client, PREFIX)
        await store_snapshot(store, REF, SNAPSHOT, {"k": b"x"})

        assert [m.snapshot_id for m in await store.list_snapshots(NAMESPACE, "payments-keys")] == [
            SNAPSHOT
        ]
        location = store.location(NAMESPACE, "payments-keys", SNAPSHOT)
        assert location == (
            f"{azurite.blob_endpoint}/{container.container_name}/backups/prod/payments/"
            f"payments-keys/{SNAPSHOT}/"
        )
        assert "sig=" not in location


async def test_a_missing_container_is_reported_by_its_name(azurite: Azurite) -> None:
    client = container_client(
        azurite.blob_endpoint,
        "no-such-container",
        hosts=azurite.blob_hosts,
        connection_string=azurite.connection_string(),
    )
    async with client:
        store = BlobSnapshotStore(client, PREFIX)
        with pytest.raises(MissingReferenceError, match="container no-such-container") as raised:
            await store.write_artifact(REF, SNAPSHOT, ItemKind.KEY, "k", b"x")
        assert raised.value.reason == "ContainerNotFound"
        with pytest.raises(MissingReferenceError, match="container no-such-container"):
            await store.list_snapshots(NAMESPACE, "payments-keys")
        with pytest.raises(MissingReferenceError, match="container no-such-container"):
            await store.read_artifact(NAMESPACE, "payments-keys", SNAPSHOT, GONE)


async def test_a_wrong_account_key_is_access_denied(
    azurite: Azurite, container: ContainerClient
) -> None:
    wrong_key = "d3Jvbmcga2V5" * 7 + "d3Jvbmc="
    client = container_client(
        azurite.blob_endpoint,
        container.container_name,
        hosts=azurite.blob_hosts,
        connection_string=azurite.connection_string(account_key=wrong_key),
    )
    async with client:
        store = BlobSnapshotStore(client, PREFIX)
        with pytest.raises(AccessDeniedError):
            await store.write_artifact(REF, SNAPSHOT, ItemKind.KEY, "k", b"x")
        with pytest.raises(AccessDeniedError):
            await store.list_snapshots(NAMESPACE, "payments-keys")


async def test_an_interrupted_runs_blobs_are_resumable_only_while_they_match_their_sha256(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    await store.write_artifact(
        REF, SNAPSHOT, ItemKind.KEY, "Signing", b"signing bytes", ("v1", "v2")
    )
    await store.write_artifact(REF, SNAPSHOT, ItemKind.KEY, "wrapping", b"wrapping bytes", ("w1",))

    found = {a.name: a for a in await store.resumable(REF, SNAPSHOT)}
    assert set(found) == {"Signing", "wrapping"}
    assert found["Signing"].versions == ("v1", "v2")

    # Altered behind the store's back, with what was recorded beside it kept as it was.
    blob = container.get_blob_client(
        f"{store.folder(REF.namespace, REF.name, SNAPSHOT)}/keys/wrapping"
    )
    recorded = (await blob.get_blob_properties()).metadata
    await blob.upload_blob(b"altered", overwrite=True, metadata=recorded)
    assert [a.name for a in await store.resumable(REF, SNAPSHOT)] == ["Signing"]


FOLDER = f"backups/prod/payments/payments-keys/{SNAPSHOT}"
MiB = 1024 * 1024


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def test_a_gzip_encoded_manifest_is_refused_without_being_inflated(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    await store_snapshot(store, REF, SNAPSHOT, {"k": b"x"})
    bomb = gzip_bomb(64 * MiB)
    await container.upload_blob(
        f"{FOLDER}/manifest.json",
        bomb,
        overwrite=True,
        content_settings=ContentSettings(content_type="application/json", content_encoding="gzip"),
    )
    before = _peak_rss_mib()

    with pytest.raises(IntegrityError, match="Content-Encoding 'gzip'") as refused:
        await store.read_manifest(NAMESPACE, "payments-keys", SNAPSHOT)

    assert f"{FOLDER}/manifest.json" in refused.value.message
    assert len(bomb) < MiB
    assert _peak_rss_mib() - before < 32  # 64 MiB would have been inflated


async def test_a_manifest_larger_than_its_bound_is_too_large_and_named(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    await store_snapshot(store, REF, SNAPSHOT, {"k": b"x"})
    await container.upload_blob(
        f"{FOLDER}/manifest.json", b" " * (MANIFEST_MAX_BYTES + 1), overwrite=True
    )

    with pytest.raises(TooLargeError) as refused:
        await store.read_manifest(NAMESPACE, "payments-keys", SNAPSHOT)

    assert refused.value.reason == "TooLarge"
    assert f"blob {store.location(NAMESPACE, 'payments-keys', SNAPSHOT)}manifest.json" in (
        refused.value.message
    )


async def test_an_artifact_larger_than_its_manifest_records_is_too_large_and_never_read_whole(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    manifest = await store_snapshot(store, REF, SNAPSHOT, {"k": b"the real backup"})
    # 300 MiB that cost Azurite no data: a page blob is stored sparse.
    await container.delete_blob(f"{FOLDER}/keys/k")
    await container.get_blob_client(f"{FOLDER}/keys/k").create_page_blob(300 * MiB)
    before = _peak_rss_mib()

    artifact = manifest.artifact(ItemKind.KEY, "k")
    with pytest.raises(TooLargeError, match="the size the manifest records for key k") as refused:
        await store.read_artifact(NAMESPACE, "payments-keys", SNAPSHOT, artifact)

    assert f"{FOLDER}/keys/k holds more than {len(b'the real backup')} bytes" in (
        refused.value.message
    )
    assert _peak_rss_mib() - before < 32


async def test_an_empty_artifact_reads_as_no_bytes(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    manifest = await store_snapshot(store, REF, SNAPSHOT, {"k": b"x"})
    await container.upload_blob(f"{FOLDER}/keys/k", b"", overwrite=True)

    stored = await store.read_artifact(NAMESPACE, "payments-keys", SNAPSHOT, manifest.artifacts[0])

    assert stored == b""


async def _forge_summary(container: ContainerClient, folder: str, snapshot_id: str) -> None:
    """The manifest blob's metadata rewritten to name ``snapshot_id``, its text kept."""
    blob = container.get_blob_client(f"{folder}/manifest.json")
    recorded = (await blob.get_blob_properties()).metadata
    summary = json.loads(recorded["summary"]) | {"snapshotId": snapshot_id}
    await blob.set_blob_metadata({**recorded, "summary": json.dumps(summary)})


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param("20261128-010203-ffff", id="another-snapshot"),
        pytest.param("0/../../../victim-container/x", id="climbing"),
        pytest.param(f"{SNAPSHOT}\n", id="trailing-newline"),
    ],
)
async def test_a_summary_that_names_another_snapshot_than_its_folder_is_refused_naming_the_blob(
    store: BlobSnapshotStore, container: ContainerClient, forged: str
) -> None:
    await store_snapshot(store, REF, SNAPSHOT, {"k": b"x"})
    await _forge_summary(container, FOLDER, forged)

    with pytest.raises(IntegrityError) as refused:
        await store.list_snapshots(NAMESPACE, "payments-keys")

    assert f"the metadata of blob {store.location(NAMESPACE, 'payments-keys', SNAPSHOT)}" in (
        refused.value.message
    )


async def test_folders_whose_names_are_not_snapshot_ids_are_never_listed_nor_deleted(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    await store_snapshot(store, REF, SNAPSHOT, {"k": b"x"})
    base = "backups/prod/payments/payments-keys"
    # Complete-looking snapshots under folders the store never names so; "%2e%2e" is kept
    # as those very characters, not read as a parent segment.
    for folder in ("not-a-snapshot", "%2e%2e", f"{SNAPSHOT}-x"):
        await container.upload_blob(f"{base}/{folder}/manifest.json", b"{}")
        await container.upload_blob(f"{base}/{folder}/keys/k", b"x")
    before = await _blob_names(container)

    assert await store.list_stored(NAMESPACE, "payments-keys") == [
        StoredSnapshot(SNAPSHOT, complete=True)
    ]
    assert [s.snapshot_id for s in await store.list_snapshots(NAMESPACE, "payments-keys")] == [
        SNAPSHOT
    ]
    await store.delete_snapshot(NAMESPACE, "payments-keys", SNAPSHOT)
    assert await _blob_names(container) == [n for n in before if f"/{SNAPSHOT}/" not in n]


async def test_a_listing_considers_only_the_newest_snapshots_up_to_its_bound(
    store: BlobSnapshotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for snapshot_id in ("20261128-010000-aaaa", "20261128-020000-bbbb", "20261128-030000-cccc"):
        await store_snapshot(store, REF, snapshot_id, {"k": b"x"})
    monkeypatch.setattr(blob_store, "LISTED_SNAPSHOTS_MAX", 2)

    snapshots = await store.list_snapshots(NAMESPACE, "payments-keys")

    assert [s.snapshot_id for s in snapshots] == ["20261128-030000-cccc", "20261128-020000-bbbb"]


@pytest.mark.parametrize(
    ("namespace", "keybackup"),
    [
        pytest.param("team-b", "payments-keys", id="another-namespace"),
        pytest.param(NAMESPACE, "other-keys", id="another-keybackup"),
    ],
)
async def test_a_manifest_naming_another_place_than_its_folder_is_refused(
    store: BlobSnapshotStore, container: ContainerClient, namespace: str, keybackup: str
) -> None:
    # A manifest of team b's snapshot, copied into payments' folder under the same id.
    foreign = manifest_of(
        *artifacts_of({"k": b"x"}),
        ref=KeyBackupRef(namespace, keybackup, "uid-b"),
        snapshot_id=SNAPSHOT,
    )
    await store.write_artifact(REF, SNAPSHOT, ItemKind.KEY, "k", b"x")
    await container.upload_blob(f"{FOLDER}/manifest.json", foreign.to_json())

    with pytest.raises(IntegrityError, match="whose place it is in") as refused:
        await store.read_manifest(NAMESPACE, "payments-keys", SNAPSHOT)
    assert f"of KeyBackup {namespace}/{keybackup}, not of snapshot" in refused.value.message
    with pytest.raises(IntegrityError, match="whose place it is in"):
        await store.read_manifest_at(FOLDER)


async def test_a_snapshot_path_shorter_than_namespace_keybackup_snapshot_is_refused(
    store: BlobSnapshotStore,
) -> None:
    with pytest.raises(InvalidSpecError, match="does not end in <namespace>/<keybackup>"):
        await store.read_manifest_at(f"payments-keys/{SNAPSHOT}")


async def test_a_resumed_run_takes_a_blob_only_under_the_name_its_key_maps_to(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    await store.write_artifact(REF, SNAPSHOT, ItemKind.KEY, "signing", b"signing bytes", ("v1",))
    # Another key's record beside bytes that match it, under a name it does not map to.
    await container.upload_blob(
        f"{FOLDER}/keys/decoy",
        b"wrapping bytes",
        metadata={"keyname": "wrapping", "sha256": sha256_hex(b"wrapping bytes"), "versions": "w1"},
    )

    assert [a.name for a in await store.resumable(REF, SNAPSHOT)] == ["signing"]


@pytest.mark.parametrize(
    ("blob", "kind"),
    [
        pytest.param("keys/db", "secret", id="a-secret-among-keys"),
        pytest.param("secrets/db", "key", id="a-key-among-secrets"),
        pytest.param("secrets/db", None, id="no-kind-among-secrets"),
        pytest.param("passwords/db", "password", id="an-unknown-kind"),
        pytest.param("secrets/db", "Secret", id="a-kind-in-another-case"),
    ],
)
async def test_a_resumed_run_takes_a_blob_only_in_the_folder_of_the_kind_it_records(
    store: BlobSnapshotStore, container: ContainerClient, blob: str, kind: str | None
) -> None:
    data = b"what the blob claims is a backup"
    recorded = {"sha256": sha256_hex(data), "versions": "v1"}
    # Written before there were other kinds: a key's name as keyname, no kind.
    names = {"name": "db", "kind": kind} if kind else {"keyname": "db"}
    await container.upload_blob(f"{FOLDER}/{blob}", data, metadata=recorded | names)
    await store.write_artifact(REF, SNAPSHOT, ItemKind.CERTIFICATE, "db", b"cert", ("c1",))

    resumed = await store.resumable(REF, SNAPSHOT)

    assert [(a.kind, a.name) for a in resumed] == [(ItemKind.CERTIFICATE, "db")]


async def test_an_id_that_is_not_a_snapshot_id_never_becomes_a_blob_name(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    for forged in ("../../other", f"{SNAPSHOT}/../x"):
        with pytest.raises(IntegrityError, match="which is not a snapshot id"):
            await store.delete_snapshot(NAMESPACE, "payments-keys", forged)
        with pytest.raises(IntegrityError, match="which is not a snapshot id"):
            await store.write_artifact(REF, forged, ItemKind.KEY, "k", b"x")

    assert await _blob_names(container) == []


EARLIER, LATER = "20261128-010000-aaaa", "20261128-020000-bbbb"
SIGNING = ItemRef(ItemKind.KEY, "signing-key")
PASSWORD = ItemRef(ItemKind.SECRET, "db-password")


async def test_a_differential_snapshot_opened_by_its_path_alone_is_whole_and_reads_its_base(
    store: BlobSnapshotStore, blob_client: ContainerClient, container: ContainerClient
) -> None:
    password, changed = os.urandom(800), os.urandom(700)
    base = await store_items(store, REF, EARLIER, {SIGNING: os.urandom(3000), PASSWORD: password})
    whole = await store_changes(store, REF, base, LATER, {SIGNING: changed})
    await store.write_manifest(whole.differences_from(base), whole.summary)

    fresh = BlobSnapshotStore(blob_client)  # no prefix: the path alone says where
    snapshot = await fresh.open_at(store.location(NAMESPACE, "payments-keys", LATER))
    assert set(snapshot.manifest.artifacts) == set(whole.artifacts)
    for item, data in ((SIGNING, changed), (PASSWORD, password)):
        async with snapshot.verified(snapshot.manifest.artifact(*item)) as stored:
            assert stored == data
    # Read from the folder of the snapshot holding it, named in the error once gone.
    await container.delete_blob(
        f"backups/prod/payments/payments-keys/{EARLIER}/secrets/db-password"
    )
    with pytest.raises(NotFoundError, match=f"db-password is missing from snapshot {EARLIER}"):
        await fresh.read_artifact_at(
            f"backups/prod/payments/payments-keys/{LATER}", snapshot.manifest.artifact(*PASSWORD)
        )


async def test_a_base_only_another_keybackup_has_is_never_read_for_a_snapshot_opened_by_path(
    store: BlobSnapshotStore,
) -> None:
    ledger = KeyBackupRef(NAMESPACE, "ledger", "uid-2")
    theirs = await store_items(store, ledger, EARLIER, {SIGNING: b"the ledger's backup"})
    # Payments' differential manifest on a base of that id, which payments never stored.
    differential = replace(manifest_of(ref=REF, snapshot_id=LATER), base=EARLIER)
    await store.write_manifest(differential, replace(theirs.summary, snapshot_id=LATER))

    with pytest.raises(MissingReferenceError) as refused:
        await store.open_at(f"backups/prod/payments/payments-keys/{LATER}")

    assert refused.value.message.startswith(
        f"snapshot {LATER} lists only its differences from snapshot {EARLIER}, and there is no "
        f"complete snapshot at {store.location(NAMESPACE, 'payments-keys', EARLIER)}: "
    )
    assert "ledger" not in refused.value.message


async def test_a_differential_manifest_stored_without_a_summary_fails_the_listing_naming_it(
    store: BlobSnapshotStore, container: ContainerClient
) -> None:
    base = await store_snapshot(store, REF, EARLIER, {"k": b"x"})
    differential = manifest_of(ref=REF, snapshot_id=LATER).differences_from(base)
    folder = f"backups/prod/payments/payments-keys/{LATER}"
    await container.upload_blob(f"{folder}/manifest.json", differential.to_json())

    with pytest.raises(
        IntegrityError, match="holds a differential manifest and no summary"
    ) as refused:
        await store.list_snapshots(NAMESPACE, "payments-keys")

    assert f"{folder}/manifest.json" in refused.value.message
