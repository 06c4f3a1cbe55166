"""Snapshots kept as Secrets, written and read against the real API server."""

from __future__ import annotations

import base64
import json
import os

import pytest

from kvbackup.adapters.secret_store import SecretSnapshotStore, artifact_secret_name
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.errors import IntegrityError
from kvbackup.services.ports import StoredSnapshot
from tests.integration.conftest import Cluster, store_snapshot

pytestmark = pytest.mark.integration

SNAPSHOT = "20261128-010203-abcd"


def _secrets(cluster: Cluster, selector: str) -> list[str]:
    return cluster.plane.kubectl(
        "get", "secrets", "-n", cluster.namespace, "-l", selector, "-o", "name"
    ).stdout.split()


@pytest.fixture
def ref(cluster: Cluster) -> KeyBackupRef:
    return KeyBackupRef(cluster.namespace, "payments", "uid-1")


async def test_a_snapshot_round_trips_byte_exact_and_is_found_by_label(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    artifacts = {"signing-key": os.urandom(9000), "Wrapping-Key": os.urandom(12000)}
    await store_snapshot(secret_store, ref, SNAPSHOT, artifacts)

    [manifest] = await secret_store.list_snapshots(cluster.namespace, "payments")
    for name, data in artifacts.items():
        stored = await secret_store.read_artifact(cluster.namespace, "payments", SNAPSHOT, name)
        assert stored == data
        manifest.artifact(name).verify(stored)
    assert len(_secrets(cluster, "kvbackup.io/keybackup=payments")) == 3


async def test_a_snapshot_without_a_manifest_is_never_offered(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    await store_snapshot(secret_store, ref, "20261128-010203-aaaa", {"k": b"complete"})
    await secret_store.write_artifact(ref, "20261128-020000-bbbb", "k", b"interrupted run")

    snapshots = await secret_store.list_snapshots(cluster.namespace, "payments")
    assert [s.snapshot_id for s in snapshots] == ["20261128-010203-aaaa"]
    assert await secret_store.list_stored(cluster.namespace, "payments") == [
        StoredSnapshot("20261128-020000-bbbb", complete=False),
        StoredSnapshot("20261128-010203-aaaa", complete=True),
    ]


async def test_snapshots_are_listed_newest_first(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    for snapshot_id in ("20261128-010000-aaaa", "20261128-030000-cccc", "20261128-020000-bbbb"):
        await store_snapshot(secret_store, ref, snapshot_id, {"k": b"x"})
    snapshots = await secret_store.list_snapshots(cluster.namespace, "payments")
    assert [s.snapshot_id for s in snapshots] == [
        "20261128-030000-cccc",
        "20261128-020000-bbbb",
        "20261128-010000-aaaa",
    ]


async def test_a_backup_larger_than_a_secret_holds_is_split_and_reassembled(
    secret_store: SecretSnapshotStore, cluster: Cluster
) -> None:
    ref = KeyBackupRef(cluster.namespace, "big", "uid-2")
    data = os.urandom(2_500_000)  # a key with very many versions
    await secret_store.write_artifact(ref, SNAPSHOT, "many-versions", data)

    assert len(_secrets(cluster, "kvbackup.io/keybackup=big,kvbackup.io/role=artifact")) == 3
    stored = await secret_store.read_artifact(cluster.namespace, "big", SNAPSHOT, "many-versions")
    assert stored == data


async def test_redoing_an_interrupted_run_overwrites_instead_of_duplicating(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    await secret_store.write_artifact(ref, SNAPSHOT, "k", b"first attempt")
    await secret_store.write_artifact(ref, SNAPSHOT, "k", b"second attempt")

    stored = await secret_store.read_artifact(cluster.namespace, "payments", SNAPSHOT, "k")
    assert stored == b"second attempt"
    assert len(_secrets(cluster, "kvbackup.io/keybackup=payments")) == 1


async def test_an_altered_artifact_fails_verification_against_its_manifest(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    original = os.urandom(4000)
    await store_snapshot(secret_store, ref, SNAPSHOT, {"k": original})
    tampered = base64.b64encode(b"\x00" + original[1:]).decode()
    cluster.plane.kubectl(
        "patch",
        "secret",
        "-n",
        cluster.namespace,
        artifact_secret_name("payments", SNAPSHOT, "k", 0),
        "--type",
        "merge",
        "-p",
        json.dumps({"data": {"backup": tampered}}),
    )

    [manifest] = await secret_store.list_snapshots(cluster.namespace, "payments")
    stored = await secret_store.read_artifact(cluster.namespace, "payments", SNAPSHOT, "k")
    with pytest.raises(IntegrityError, match="sha256"):
        manifest.artifact("k").verify(stored)


async def test_deleting_a_snapshot_removes_all_of_it_and_leaves_the_others(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    await store_snapshot(secret_store, ref, "20261128-010000-aaaa", {"k": b"old"})
    await store_snapshot(secret_store, ref, "20261128-020000-bbbb", {"k": b"new", "j": b"x"})

    await secret_store.delete_snapshot(cluster.namespace, "payments", "20261128-020000-bbbb")

    assert _secrets(cluster, "kvbackup.io/snapshot=20261128-020000-bbbb") == []
    stored = await secret_store.list_stored(cluster.namespace, "payments")
    assert stored == [StoredSnapshot("20261128-010000-aaaa", complete=True)]


async def test_backups_carry_no_owner_so_they_outlive_their_keybackup(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    await secret_store.write_artifact(ref, SNAPSHOT, "k", b"x")
    secret = cluster.get("secret", artifact_secret_name("payments", SNAPSHOT, "k", 0))
    assert "ownerReferences" not in secret["metadata"]
    assert secret["metadata"]["labels"]["kvbackup.io/snapshot"] == SNAPSHOT
    assert secret["metadata"]["annotations"]["kvbackup.io/key-name"] == "k"


async def test_an_interrupted_runs_backups_are_resumable_only_while_they_match_their_sha256(
    secret_store: SecretSnapshotStore, cluster: Cluster, ref: KeyBackupRef
) -> None:
    small, large = os.urandom(3000), os.urandom(2_500_000)  # the large one in three parts
    await secret_store.write_artifact(ref, SNAPSHOT, "small", small, ("s1",))
    await secret_store.write_artifact(ref, SNAPSHOT, "large", large, ("l1", "l2"))
    await secret_store.write_artifact(ref, SNAPSHOT, "unrecorded", b"no versions")

    found = {a.name: a for a in await secret_store.resumable(ref, SNAPSHOT)}
    assert set(found) == {"small", "large"}
    assert found["large"].versions == ("l1", "l2")
    assert (found["large"].size, found["small"].size) == (len(large), len(small))

    cluster.plane.kubectl(
        "patch",
        "secret",
        "-n",
        cluster.namespace,
        artifact_secret_name("payments", SNAPSHOT, "small", 0),
        "--type",
        "merge",
        "-p",
        json.dumps({"data": {"backup": base64.b64encode(b"altered").decode()}}),
    )
    assert [a.name for a in await secret_store.resumable(ref, SNAPSHOT)] == ["large"]
    assert await secret_store.resumable(ref, "20261128-999999-none") == []
