"""Snapshots kept as Secrets, written and read against the real API server."""

from __future__ import annotations

import base64
import datetime
import json
import os
from collections.abc import Iterator

import kubernetes
import pytest

from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.adapters.secret_store import SecretSnapshotStore, artifact_secret_name
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.errors import IntegrityError
from kvbackup.services.snapshot import KeyArtifact, Manifest, sha256_hex
from tests.harness.controlplane import ControlPlane
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration

MOMENT = datetime.datetime(2026, 11, 28, 1, 2, 3, tzinfo=datetime.UTC)


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[KubernetesApi]:
    client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig)
    )
    api = KubernetesApi(client)
    yield api
    api.close()


def _manifest(ref: KeyBackupRef, snapshot_id: str, artifacts: dict[str, bytes]) -> Manifest:
    return Manifest(
        snapshot_id=snapshot_id,
        keybackup=ref,
        vault_url="https://v.vault.azure.net",
        start_time=MOMENT,
        completion_time=MOMENT,
        operator_version="test",
        keys=tuple(
            KeyArtifact(name, ("v1", "v2"), sha256_hex(data), len(data))
            for name, data in artifacts.items()
        ),
    )


async def test_a_snapshot_round_trips_byte_exact_and_is_found_by_label(
    api: KubernetesApi, cluster: Cluster
) -> None:
    store = SecretSnapshotStore(api)
    ref = KeyBackupRef(cluster.namespace, "payments", "uid-1")
    artifacts = {"signing-key": os.urandom(9000), "Wrapping-Key": os.urandom(12000)}
    for name, data in artifacts.items():
        await store.write_artifact(ref, "20261128-010203-abcd", name, data)
    await store.write_manifest(_manifest(ref, "20261128-010203-abcd", artifacts))

    [manifest] = await store.list_snapshots(cluster.namespace, "payments")
    for name, data in artifacts.items():
        stored = await store.read_artifact(
            cluster.namespace, "payments", manifest.snapshot_id, name
        )
        assert stored == data
        manifest.artifact(name).verify(stored)
    listed = cluster.plane.kubectl(
        "get",
        "secrets",
        "-n",
        cluster.namespace,
        "-l",
        "kvbackup.io/keybackup=payments",
        "-o",
        "name",
    ).stdout.split()
    assert len(listed) == 3  # two artifacts and the manifest


async def test_a_snapshot_without_a_manifest_is_never_offered(
    api: KubernetesApi, cluster: Cluster
) -> None:
    store = SecretSnapshotStore(api)
    ref = KeyBackupRef(cluster.namespace, "payments", "uid-1")
    await store.write_artifact(ref, "20261128-010203-aaaa", "k", b"complete")
    await store.write_manifest(_manifest(ref, "20261128-010203-aaaa", {"k": b"complete"}))
    await store.write_artifact(ref, "20261128-020000-bbbb", "k", b"interrupted run")

    snapshots = await store.list_snapshots(cluster.namespace, "payments")
    assert [s.snapshot_id for s in snapshots] == ["20261128-010203-aaaa"]


async def test_snapshots_are_listed_newest_first(api: KubernetesApi, cluster: Cluster) -> None:
    store = SecretSnapshotStore(api)
    ref = KeyBackupRef(cluster.namespace, "payments", "uid-1")
    for snapshot_id in ("20261128-010000-aaaa", "20261128-030000-cccc", "20261128-020000-bbbb"):
        await store.write_artifact(ref, snapshot_id, "k", b"x")
        await store.write_manifest(_manifest(ref, snapshot_id, {"k": b"x"}))
    snapshots = await store.list_snapshots(cluster.namespace, "payments")
    assert [s.snapshot_id for s in snapshots] == [
        "20261128-030000-cccc",
        "20261128-020000-bbbb",
        "20261128-010000-aaaa",
    ]


async def test_a_backup_larger_than_a_secret_holds_is_split_and_reassembled(
    api: KubernetesApi, cluster: Cluster
) -> None:
    store = SecretSnapshotStore(api)
    ref = KeyBackupRef(cluster.namespace, "big", "uid-2")
    data = os.urandom(2_500_000)  # a key with very many versions
    await store.write_artifact(ref, "20261128-010203-abcd", "many-versions", data)

    parts = cluster.plane.kubectl(
        "get",
        "secrets",
        "-n",
        cluster.namespace,
        "-l",
        "kvbackup.io/keybackup=big,kvbackup.io/role=artifact",
        "-o",
        "name",
    ).stdout.split()
    assert len(parts) == 3
    stored = await store.read_artifact(
        cluster.namespace, "big", "20261128-010203-abcd", "many-versions"
    )
    assert stored == data


async def test_redoing_an_interrupted_run_overwrites_instead_of_duplicating(
    api: KubernetesApi, cluster: Cluster
) -> None:
    store = SecretSnapshotStore(api)
    ref = KeyBackupRef(cluster.namespace, "payments", "uid-1")
    await store.write_artifact(ref, "20261128-010203-abcd", "k", b"first attempt")
    await store.write_artifact(ref, "20261128-010203-abcd", "k", b"second attempt")

    stored = await store.read_artifact(cluster.namespace, "payments", "20261128-010203-abcd", "k")
    assert stored == b"second attempt"
    secrets = cluster.plane.kubectl(
        "get",
        "secrets",
        "-n",
        cluster.namespace,
        "-l",
        "kvbackup.io/keybackup=payments",
        "-o",
        "name",
    ).stdout.split()
    assert len(secrets) == 1


async def test_an_altered_artifact_fails_verification_against_its_manifest(
    api: KubernetesApi, cluster: Cluster
) -> None:
    store = SecretSnapshotStore(api)
    ref = KeyBackupRef(cluster.namespace, "payments", "uid-1")
    original = os.urandom(4000)
    await store.write_artifact(ref, "20261128-010203-abcd", "k", original)
    await store.write_manifest(_manifest(ref, "20261128-010203-abcd", {"k": original}))
    tampered = base64.b64encode(b"\x00" + original[1:]).decode()
    cluster.plane.kubectl(
        "patch",
        "secret",
        "-n",
        cluster.namespace,
        artifact_secret_name("payments", "20261128-010203-abcd", "k", 0),
        "--type",
        "merge",
        "-p",
        json.dumps({"data": {"backup": tampered}}),
    )

    [manifest] = await store.list_snapshots(cluster.namespace, "payments")
    stored = await store.read_artifact(cluster.namespace, "payments", manifest.snapshot_id, "k")
    with pytest.raises(IntegrityError, match="sha256"):
        manifest.artifact("k").verify(stored)


async def test_backups_carry_no_owner_so_they_outlive_their_keybackup(
    api: KubernetesApi, cluster: Cluster
) -> None:
    store = SecretSnapshotStore(api)
    ref = KeyBackupRef(cluster.namespace, "payments", "uid-1")
    await store.write_artifact(ref, "20261128-010203-abcd", "k", b"x")
    secret = cluster.get("secret", artifact_secret_name("payments", "20261128-010203-abcd", "k", 0))
    assert "ownerReferences" not in secret["metadata"]
    assert secret["metadata"]["labels"]["kvbackup.io/snapshot"] == "20261128-010203-abcd"
    assert secret["metadata"]["annotations"]["kvbackup.io/key-name"] == "k"
