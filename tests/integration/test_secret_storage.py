"""Snapshots kept as Secrets, written and read against the real API server."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import replace
from typing import Any

import pytest

from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.adapters.secret_store import (
    INDEX_DATA_KEY,
    SecretSnapshotStore,
    legacy_artifact_name,
)
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.api.kinds import ItemKind, ItemRef
from kvbackup.errors import IntegrityError, TooLargeError
from kvbackup.services.ports import StoredSnapshot
from kvbackup.services.snapshot import Artifact, sha256_hex
from tests.integration.conftest import (
    SNAPSHOT,
    Cluster,
    backup_labels,
    store_changes,
    store_items,
    store_snapshot,
)
from tests.unit.fakes import manifest_of

pytestmark = pytest.mark.integration

#: The API server refuses a Secret whose data adds up to more than this.
SECRET_DATA_LIMIT = 1_048_576


def _data_size(secret: dict[str, Any]) -> int:
    return sum(len(base64.b64decode(value)) for value in (secret.get("data") or {}).values())


def _kubectl_entry(cluster: Cluster, snapshot_id: str, entry: str) -> bytes:
    """An entry of the Secrets labelled as snapshot ``snapshot_id``'s, as the break-glass
    steps read one: with kubectl alone."""
    out = cluster.plane.kubectl(
        "get",
        "secrets",
        "-n",
        cluster.namespace,
        "-l",
        f"kvbackup.io/keybackup=payments,kvbackup.io/snapshot={snapshot_id}",
        "-o",
        f"jsonpath={{range .items[*]}}{{.data.{entry}}}{{end}}",
    )
    return base64.b64decode(out.stdout)


@pytest.fixture
def ref(cluster: Cluster) -> KeyBackupRef:
    return KeyBackupRef(cluster.namespace, "payments", "uid-1")


async def test_a_snapshot_round_trips_byte_exact_and_is_found_by_label(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    artifacts = {"signing-key": os.urandom(9000), "Wrapping-Key": os.urandom(12000)}
    await store_snapshot(secret_store, ref, SNAPSHOT, artifacts)

    [summary] = await secret_store.list_snapshots(cluster.namespace, "payments")
    assert (summary.keys, summary.total_bytes) == (2, 21000)
    manifest = await secret_store.read_manifest(cluster.namespace, "payments", SNAPSHOT)
    for name, data in artifacts.items():
        artifact = manifest.artifact(ItemKind.KEY, name)
        stored = await secret_store.read_artifact(cluster.namespace, "payments", SNAPSHOT, artifact)
        assert stored == data
        artifact.verify(stored)
    # One pack for both keys, one manifest part, and the manifest that completes it.
    roles = sorted(
        s["metadata"]["labels"]["kvbackup.io/role"]
        for s in cluster.secrets("kvbackup.io/keybackup=payments")
    )
    assert roles == ["artifact", "manifest", "manifest-part"]


async def test_many_keys_are_packed_into_few_secrets_each_under_the_size_limit(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    artifacts = {f"key-{n:04d}": os.urandom(9000) for n in range(300)}  # 2.7 MB in all
    await store_snapshot(secret_store, ref, SNAPSHOT, artifacts)

    packs = cluster.secrets("kvbackup.io/keybackup=payments,kvbackup.io/role=artifact")
    assert 3 <= len(packs) <= 4
    assert all(_data_size(pack) < SECRET_DATA_LIMIT for pack in packs)
    manifest = await secret_store.read_manifest(cluster.namespace, "payments", SNAPSHOT)
    for artifact in manifest.artifacts:
        stored = await secret_store.read_artifact(cluster.namespace, "payments", SNAPSHOT, artifact)
        assert stored == artifacts[artifact.name]


async def test_a_key_larger_than_a_secret_holds_is_split_and_reassembled_beside_packed_keys(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    artifacts = {
        "small-before": os.urandom(3000),
        "many-versions": os.urandom(2_500_000),  # a key with very many versions
        "small-after": os.urandom(3000),
    }
    await store_snapshot(secret_store, ref, SNAPSHOT, artifacts)

    packs = cluster.secrets("kvbackup.io/keybackup=payments,kvbackup.io/role=artifact")
    assert len(packs) == 4  # three for the large key's parts, one for the small keys
    assert all(_data_size(pack) < SECRET_DATA_LIMIT for pack in packs)
    manifest = await secret_store.read_manifest(cluster.namespace, "payments", SNAPSHOT)
    assert len(manifest.artifact(ItemKind.KEY, "many-versions").location.split(",")) == 3
    for artifact in manifest.artifacts:
        stored = await secret_store.read_artifact(cluster.namespace, "payments", SNAPSHOT, artifact)
        assert stored == artifacts[artifact.name]


async def test_a_manifest_too_large_for_one_secret_is_split_and_read_back_whole(
    api: KubernetesApi, cluster: Cluster, ref: KeyBackupRef
) -> None:
    store = SecretSnapshotStore(api, pack_size=20_000)
    artifacts = {f"key-{n:04d}": os.urandom(200) for n in range(500)}
    written = await store_snapshot(store, ref, SNAPSHOT, artifacts)

    parts = cluster.secrets("kvbackup.io/keybackup=payments,kvbackup.io/role=manifest-part")
    assert len(parts) >= 3
    fresh = SecretSnapshotStore(api)
    assert await fresh.read_manifest(cluster.namespace, "payments", SNAPSHOT) == written
    [summary] = await fresh.list_snapshots(cluster.namespace, "payments")
    assert summary == written.summary


async def test_deleting_a_snapshot_removes_all_of_it_and_leaves_the_others(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    await store_snapshot(secret_store, ref, "20261128-010000-aaaa", {"k": b"old"})
    await store_snapshot(secret_store, ref, "20261128-020000-bbbb", {"k": b"new", "j": b"x"})

    await secret_store.delete_snapshot(cluster.namespace, "payments", "20261128-020000-bbbb")

    assert cluster.secrets("kvbackup.io/snapshot=20261128-020000-bbbb") == []
    stored = await secret_store.list_stored(cluster.namespace, "payments")
    assert stored == [StoredSnapshot("20261128-010000-aaaa", complete=True)]


async def test_backups_carry_no_owner_so_they_outlive_their_keybackup(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    await store_snapshot(secret_store, ref, SNAPSHOT, {"k": b"x"})

    for secret in cluster.secrets("kvbackup.io/keybackup=payments"):
        assert "ownerReferences" not in secret["metadata"]
        assert secret["metadata"]["labels"]["kvbackup.io/snapshot"] == SNAPSHOT


async def test_an_interrupted_runs_backups_are_resumable_only_while_they_match_their_sha256(
    api: KubernetesApi, cluster: Cluster, ref: KeyBackupRef
) -> None:
    store = SecretSnapshotStore(api, pack_size=10_000)
    small, large = os.urandom(3000), os.urandom(25_000)  # the large one in three parts
    key = ItemKind.KEY
    await store.write_artifact(ref, SNAPSHOT, key, "small", small, ("s1",))
    await store.write_artifact(ref, SNAPSHOT, key, "unrecorded", b"no versions")
    await store.write_artifact(ref, SNAPSHOT, key, "large", large, ("l1", "l2"))
    # Fills the first pack, which is written; this key waits in the next (as at a crash).
    await store.write_artifact(ref, SNAPSHOT, key, "pending", os.urandom(8000), ("p1",))

    resumed = SecretSnapshotStore(api)
    found = {a.name: a for a in await resumed.resumable(ref, SNAPSHOT)}
    assert set(found) == {"small", "large"}
    assert found["large"].versions == ("l1", "l2")
    assert (found["large"].size, found["small"].size) == (len(large), len(small))
    assert await resumed.read_artifact(cluster.namespace, "payments", SNAPSHOT, found["large"]) == (
        large
    )

    cluster.patch_secret_data(found["small"].location, "small", b"altered")
    assert [a.name for a in await resumed.resumable(ref, SNAPSHOT)] == ["large"]
    assert await resumed.resumable(ref, "20261128-235959-0000") == []


async def test_a_pack_index_names_every_item_it_holds_with_its_kind(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    items = {
        ItemRef(ItemKind.KEY, "a"): b"1",
        ItemRef(ItemKind.KEY, "b"): b"22",
        ItemRef(ItemKind.SECRET, "a"): b"333",
        ItemRef(ItemKind.CERTIFICATE, "a"): b"4444",
    }
    await store_items(secret_store, ref, SNAPSHOT, items)

    [pack] = cluster.secrets("kvbackup.io/keybackup=payments,kvbackup.io/role=artifact")
    index = json.loads(base64.b64decode(pack["data"][INDEX_DATA_KEY]))
    assert sorted((e["kind"], e["name"], e["size"], e["versions"]) for e in index) == [
        ("certificate", "a", 4, ["v1", "v2"]),
        ("key", "a", 1, ["v1", "v2"]),
        ("key", "b", 2, ["v1", "v2"]),
        ("secret", "a", 3, ["v1", "v2"]),
    ]
    # A key's entry is its name, as before there were other kinds.
    assert sorted(pack["data"]) == sorted(["a", "b", "secret_a", "certificate_a", INDEX_DATA_KEY])


async def test_kubectl_finds_a_secret_and_a_certificate_under_their_kinds_entries(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    password, tls = os.urandom(3000), os.urandom(1_200_000)  # the certificate split in two
    items = {
        ItemRef(ItemKind.KEY, "db-password"): os.urandom(3000),
        ItemRef(ItemKind.SECRET, "db-password"): password,
        ItemRef(ItemKind.CERTIFICATE, "api-tls"): tls,
    }
    await store_items(secret_store, ref, SNAPSHOT, items)

    # The break-glass steps: one command per entry, without the operator.
    def entry(name: str) -> bytes:
        return _kubectl_entry(cluster, SNAPSHOT, name)

    assert entry("secret_db-password") == password
    assert entry(r"certificate_api-tls\.0") + entry(r"certificate_api-tls\.1") == tls


async def test_a_manifest_secret_of_junk_fails_the_listing_naming_it_and_nothing_else(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    await store_snapshot(secret_store, ref, SNAPSHOT, {"k": b"x"})
    junk = "20261128-020000-bbbb"
    cluster.create_secret(
        f"payments-{junk}",
        backup_labels("payments", junk, "manifest"),
        {"summary.json": os.urandom(SECRET_DATA_LIMIT - 64)},
    )

    with pytest.raises(TooLargeError) as refused:
        await secret_store.list_snapshots(cluster.namespace, "payments")

    assert refused.value.message.startswith(
        f"Secret {cluster.namespace}/payments-{junk} holds more"
    )


@pytest.mark.parametrize(
    ("name", "label"),
    [
        pytest.param(
            "payments-20261128-020000-bbbb", "20261128-020000-cccc", id="label-not-the-name"
        ),
        pytest.param("payments-latest", "latest", id="label-not-an-id"),
    ],
)
async def test_a_manifest_secret_whose_name_and_label_disagree_is_refused_naming_it(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef, name: str, label: str
) -> None:
    written = await store_snapshot(secret_store, ref, SNAPSHOT, {"k": b"x"})
    summary = written.summary.to_json()
    cluster.create_secret(
        name, backup_labels("payments", label, "manifest"), {"summary.json": summary}
    )

    with pytest.raises(IntegrityError, match=f"Secret {cluster.namespace}/{name}"):
        await secret_store.list_snapshots(cluster.namespace, "payments")


async def test_a_summary_naming_another_snapshot_than_its_secret_is_refused(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    written = await store_snapshot(secret_store, ref, SNAPSHOT, {"k": b"x"})
    other = "20261128-020000-bbbb"
    cluster.create_secret(
        f"payments-{other}",
        backup_labels("payments", other, "manifest"),
        {"summary.json": written.summary.to_json()},
    )

    with pytest.raises(IntegrityError, match="whose place it is in"):
        await secret_store.list_snapshots(cluster.namespace, "payments")


async def test_secrets_labelled_with_what_is_not_a_snapshot_id_are_never_taken_for_stored(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    await store_snapshot(secret_store, ref, SNAPSHOT, {"k": b"x"})
    cluster.create_secret(
        "payments-notes", backup_labels("payments", "latest", "artifact"), {"k": b"x"}
    )
    cluster.create_secret(
        "db-password", backup_labels("payments", "20261128-020000-bbbb", "artifact"), {"k": b"x"}
    )

    assert await secret_store.list_stored(cluster.namespace, "payments") == [
        StoredSnapshot(SNAPSHOT, complete=True)
    ]


async def test_a_manifest_location_naming_another_secret_is_refused_before_it_is_read(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    await store_snapshot(secret_store, ref, SNAPSHOT, {"k": b"x"})
    password = b"the database password"
    cluster.create_secret("db-credentials", {}, {"k": password})
    # A pack's name, but not of this snapshot; and a Secret named like a pack, unlabelled.
    lookalike = f"payments-{SNAPSHOT}-a-beef-9"
    cluster.create_secret(lookalike, {}, {"k": password})
    for location in ("db-credentials", "payments-20261128-020000-bbbb-a-beef-0"):
        artifact = Artifact("k", ("v1",), sha256_hex(password), len(password), location)
        with pytest.raises(IntegrityError, match=f"not packs of snapshot {SNAPSHOT}") as refused:
            await secret_store.read_artifact(cluster.namespace, "payments", SNAPSHOT, artifact)
        assert sha256_hex(password) not in refused.value.message

    artifact = Artifact("k", ("v1",), sha256_hex(password), len(password), lookalike)
    with pytest.raises(IntegrityError, match="is not labelled as the artifact") as refused:
        await secret_store.read_artifact(cluster.namespace, "payments", SNAPSHOT, artifact)
    assert str(len(password)) not in refused.value.message


async def test_a_pack_holding_more_than_the_manifest_records_for_a_key_is_too_large(
    secret_store: SecretSnapshotStore, api: KubernetesApi, cluster: Cluster, ref: KeyBackupRef
) -> None:
    manifest = await store_snapshot(secret_store, ref, SNAPSHOT, {"k": b"small"})
    artifact = manifest.artifact(ItemKind.KEY, "k")
    cluster.patch_secret_data(artifact.location, "k", os.urandom(50_000))

    with pytest.raises(
        TooLargeError, match=f"Secret {cluster.namespace}/{artifact.location} holds more"
    ):
        await SecretSnapshotStore(api).read_artifact(
            cluster.namespace, "payments", SNAPSHOT, artifact
        )


@pytest.mark.parametrize(
    "parts", [pytest.param("1000000", id="a-million"), pytest.param("-1", id="negative")]
)
async def test_a_manifest_split_over_an_unbounded_number_of_parts_is_refused_unread(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef, parts: str
) -> None:
    await store_snapshot(secret_store, ref, SNAPSHOT, {"k": b"x"})
    name = f"payments-{SNAPSHOT}"
    cluster.plane.kubectl(
        "annotate",
        "secret",
        "-n",
        cluster.namespace,
        name,
        f"kvbackup.io/manifest-parts={parts}",
        "--overwrite",
    )

    with pytest.raises(IntegrityError, match=f"Secret {cluster.namespace}/{name} says"):
        await secret_store.read_manifest(cluster.namespace, "payments", SNAPSHOT)


async def test_a_junk_pack_among_a_resumed_runs_packs_is_left_out_and_the_rest_resume(
    api: KubernetesApi, cluster: Cluster, ref: KeyBackupRef
) -> None:
    store = SecretSnapshotStore(api, pack_size=10_000)
    await store.write_artifact(ref, SNAPSHOT, ItemKind.KEY, "small", b"small bytes", ("s1",))
    await store.write_artifact(ref, SNAPSHOT, ItemKind.KEY, "large", os.urandom(25_000), ("l1",))
    junk_index = json.dumps(
        [{"name": "x", "versions": ["v"], "sha256": "0" * 64, "chunk": 0, "chunks": 2}] * 3000
    )
    cluster.create_secret(
        f"payments-{SNAPSHOT}-a-dead-0",
        backup_labels("payments", SNAPSHOT, "artifact"),
        {INDEX_DATA_KEY: junk_index.encode(), "x.0": os.urandom(400_000)},
    )
    cluster.create_secret(
        f"payments-{SNAPSHOT}-a-dead-1",
        backup_labels("payments", SNAPSHOT, "artifact"),
        {INDEX_DATA_KEY: os.urandom(1000)},
    )

    found = await SecretSnapshotStore(api).resumable(ref, SNAPSHOT)

    assert sorted(a.name for a in found) == ["large"]  # "small" still waits in an open pack


async def test_pack_index_entries_of_no_known_kind_are_left_out_and_their_items_redone(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    data = b"what the entry claims is a backup"
    recorded = {"name": "db", "versions": ["v1"], "sha256": sha256_hex(data), "chunk": 0}
    index = [
        recorded | {"kind": "password", "chunks": 1},
        recorded | {"kind": ["key"], "chunks": 1},
        recorded | {"kind": "KEY", "chunks": 1},
        recorded | {"kind": "secret", "chunks": 1},
    ]
    cluster.create_secret(
        f"payments-{SNAPSHOT}-a-dead-0",
        backup_labels("payments", SNAPSHOT, "artifact"),
        {
            INDEX_DATA_KEY: json.dumps(index).encode(),
            "db": data,
            "password_db": data,
            "secret_db": data,
        },
    )

    found = await secret_store.resumable(ref, SNAPSHOT)

    assert [(a.kind, a.name) for a in found] == [(ItemKind.SECRET, "db")]


async def test_a_secret_the_manifest_keeps_in_no_pack_is_refused_not_read_as_a_key(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    # A key of a snapshot written before packing, found by its name alone.
    key = b"the key's backup"
    cluster.create_secret(
        legacy_artifact_name("payments", SNAPSHOT, "db", 0),
        backup_labels("payments", SNAPSHOT, "artifact"),
        {"backup": key},
    )
    secret = Artifact("db", ("v1",), sha256_hex(key), len(key), "", ItemKind.SECRET)

    with pytest.raises(
        IntegrityError, match=f"does not say which Secrets of snapshot {SNAPSHOT} keep secret db"
    ):
        await secret_store.read_artifact(cluster.namespace, "payments", SNAPSHOT, secret)


EARLIER, LATER = "20261128-010000-aaaa", "20261128-020000-bbbb"


async def test_kubectl_finds_a_carried_item_under_the_labels_of_the_snapshot_its_stored_in_names(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    password = os.urandom(3000)
    items = {ItemRef(ItemKind.KEY, "signing"): os.urandom(2000)}
    earlier = await store_items(
        secret_store, ref, EARLIER, items | {ItemRef(ItemKind.SECRET, "db-password"): password}
    )
    later = await store_changes(secret_store, ref, earlier, LATER, items)
    await secret_store.write_manifest(later, later.summary)

    carried = later.artifact(ItemKind.SECRET, "db-password")
    assert carried.stored_in == EARLIER
    assert _kubectl_entry(cluster, carried.stored_in, "secret_db-password") == password
    assert _kubectl_entry(cluster, LATER, "secret_db-password") == b""


async def test_a_carried_item_said_to_be_in_packs_of_another_snapshot_than_its_own_is_refused(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    await store_snapshot(secret_store, ref, EARLIER, {"k": b"earlier bytes"})
    [written] = (await store_snapshot(secret_store, ref, LATER, {"k": b"later bytes"})).artifacts
    # Stored in the earlier snapshot, the manifest says, but in packs of the later one.
    claim = replace(written, stored_in=EARLIER)

    with pytest.raises(IntegrityError, match=f"not packs of snapshot {EARLIER}"):
        await secret_store.read_artifact(cluster.namespace, "payments", LATER, claim)


async def test_a_differential_manifest_stored_without_a_summary_fails_the_listing_naming_it(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    base = await store_snapshot(secret_store, ref, EARLIER, {"k": b"x"})
    differential = manifest_of(ref=ref, snapshot_id=LATER).differences_from(base)
    # As the layout before packing kept a manifest: whole, in the manifest Secret itself.
    cluster.create_secret(
        f"payments-{LATER}",
        backup_labels("payments", LATER, "manifest"),
        {"manifest.json": differential.to_json()},
    )

    with pytest.raises(
        IntegrityError, match="holds a differential manifest and no summary"
    ) as refused:
        await secret_store.list_snapshots(cluster.namespace, "payments")

    assert refused.value.message.startswith(f"Secret {cluster.namespace}/payments-{LATER}")
