"""The disaster a platform team fears: a key deleted and purged. Back up, lose it, restore.

Everything here runs against a real Key Vault emulator (Lowkey Vault), the operator as a
real process, and the real API server; the vault is inspected with the plain Azure SDK.
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
from collections.abc import Iterator

import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.secret_store import legacy_artifact_name
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.services.snapshot import Artifact, Manifest, sha256_hex
from tests.harness.azurite import Azurite
from tests.harness.operator import OperatorProcess
from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import blob_destination, key_results, keybackup, keyrestore

pytestmark = pytest.mark.integration

PAYLOAD = b"card numbers, wrapped long ago"


@pytest.fixture(params=["secret", "blob"])
def destination(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[dict[str, object]]:
    """Where the KeyBackup keeps its snapshots: Secrets, or a container in Azurite."""
    if request.param == "secret":
        yield {"secret": {}}
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    container: ContainerClient = request.getfixturevalue("container")
    yield blob_destination(cluster, azurite, container.container_name, "vaults")


def test_a_purged_key_comes_back_with_every_version_and_decrypts_what_it_encrypted(
    operator: OperatorProcess,
    cluster: Cluster,
    vault: VaultUnderTest,
    destination: dict[str, object],
) -> None:
    originals = vault.create_rsa_key("card-signing", versions=3)
    ciphertext = vault.encrypt("card-signing", originals[0], PAYLOAD)

    cluster.apply(keybackup("payments", vault.url, keys=["card-signing"], destination=destination))
    backed_up = cluster.wait_for_phase("keybackup", "payments", "Succeeded")
    assert backed_up["lastSnapshot"]["keys"] == 1
    assert cluster.ready_condition("keybackup", "payments")["status"] == "True"

    vault.delete_and_purge("card-signing")
    assert not vault.exists("card-signing")
    assert not vault.is_soft_deleted("card-signing")

    cluster.apply(keyrestore("bring-back", vault.url, keybackup="payments"))
    restored = cluster.wait_for_phase("keyrestore", "bring-back", "Succeeded")

    assert vault.version_ids("card-signing") == originals
    assert vault.decrypt("card-signing", originals[0], ciphertext) == PAYLOAD
    assert key_results(restored) == {"card-signing": "Restored"}
    assert restored["keys"][0]["versions"] == originals
    assert restored["source"]["snapshotId"] == backed_up["lastSnapshot"]["id"]
    assert cluster.ready_condition("keyrestore", "bring-back")["status"] == "True"
    assert cluster.event_count("bring-back", "RestoreSucceeded") == 1


def test_a_named_key_missing_from_the_vault_fails_alone_and_the_others_still_restore(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    kept = vault.create_rsa_key("token-wrapping", versions=2)
    cluster.apply(keybackup("partial", vault.url, keys=["token-wrapping", "never-created"]))

    status = cluster.wait_for_phase("keybackup", "partial", "PartiallyFailed")
    failed = {entry["name"]: entry for entry in status["keys"] if entry["result"] == "Failed"}
    assert list(failed) == ["never-created"]
    assert failed["never-created"]["reason"] == "NotFound"
    assert status["lastSnapshot"]["keys"] == 1
    assert cluster.ready_condition("keybackup", "partial")["reason"] == "PartiallyFailed"
    assert cluster.event_count("partial", "BackupPartiallyFailed") == 1

    vault.delete_and_purge("token-wrapping")
    cluster.apply(keyrestore("what-was-kept", vault.url, keybackup="partial"))
    restored = cluster.wait_for_phase("keyrestore", "what-was-kept", "Succeeded")
    assert key_results(restored) == {"token-wrapping": "Restored"}
    assert vault.version_ids("token-wrapping") == kept


def test_the_bytes_in_a_secret_restore_with_kubectl_and_the_plain_sdk_alone(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    """Break-glass with the operator gone: the README's commands, then restore_key_backup."""
    originals = vault.create_rsa_key("card-signing", versions=3)
    cluster.apply(keybackup("payments", vault.url, keys=["card-signing"]))
    snapshot = cluster.wait_for_phase("keybackup", "payments", "Succeeded")["lastSnapshot"]["id"]
    vault.delete_and_purge("card-signing")

    # The README's command, as printed there, with the names of this test.
    kubectl = f"{cluster.plane.kubectl_path} --kubeconfig {cluster.plane.kubeconfig}"
    blob = subprocess.run(
        f"{kubectl} get secrets -n {cluster.namespace} "
        f"-l kvbackup.io/keybackup=payments,kvbackup.io/snapshot={snapshot} "
        "-o jsonpath='{range .items[*]}{.data.card-signing}{end}' | base64 -d",
        shell=True,
        capture_output=True,
        check=True,
    ).stdout

    with vault.client as client:
        client.restore_key_backup(blob)
    assert vault.version_ids("card-signing") == originals


async def test_the_bytes_in_a_blob_restore_with_the_plain_blob_and_key_vault_sdks(
    operator: OperatorProcess,
    cluster: Cluster,
    vault: VaultUnderTest,
    azurite: Azurite,
    container: ContainerClient,
) -> None:
    originals = vault.create_rsa_key("card-signing", versions=3)
    destination = blob_destination(cluster, azurite, container.container_name, "prod")
    cluster.apply(keybackup("nightly", vault.url, keys=["card-signing"], destination=destination))
    snapshot = cluster.wait_for_phase("keybackup", "nightly", "Succeeded")["lastSnapshot"]["id"]
    vault.delete_and_purge("card-signing")

    # The README's path: <prefix>/<namespace>/<keybackup>/<snapshot>/keys/<key name>
    path = f"prod/{cluster.namespace}/nightly/{snapshot}/keys/card-signing"
    blob = await (await container.download_blob(path)).readall()

    with vault.client as client:
        client.restore_key_backup(blob)
    assert vault.version_ids("card-signing") == originals


async def test_a_snapshot_written_before_packing_still_restores(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    """One Secret per key part and the whole manifest in one Secret, as 0.1 wrote them."""
    originals = vault.create_rsa_key("card-signing", versions=2)
    with vault.client as client:
        backup = client.backup_key("card-signing")
    snapshot = "20261101-020000-01d1"
    manifest = Manifest(
        snapshot_id=snapshot,
        keybackup=KeyBackupRef(cluster.namespace, "payments", "uid-of-old"),
        vault_url=vault.url,
        start_time=datetime.datetime(2026, 11, 1, 2, tzinfo=datetime.UTC),
        completion_time=datetime.datetime(2026, 11, 1, 2, 1, tzinfo=datetime.UTC),
        operator_version="0.1.0",
        artifacts=(Artifact("card-signing", tuple(originals), sha256_hex(backup), len(backup)),),
    )
    labels = {"kvbackup.io/keybackup": "payments", "kvbackup.io/snapshot": snapshot}
    for name, role, data, recorded in (
        (
            legacy_artifact_name("payments", snapshot, "card-signing", 0),
            "artifact",
            {"backup": backup},
            {"kvbackup.io/key-name": "card-signing", "kvbackup.io/parts": "1"},
        ),
        (f"payments-{snapshot}", "manifest", {"manifest.json": manifest.to_json()}, {}),
    ):
        cluster.apply(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": name,
                        "labels": {**labels, "kvbackup.io/role": role},
                        "annotations": recorded,
                    },
                    "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
                }
            )
        )
    vault.delete_and_purge("card-signing")

    cluster.apply(keyrestore("back", vault.url, keybackup="payments"))

    status = cluster.wait_for_phase("keyrestore", "back", "Succeeded")
    assert key_results(status) == {"card-signing": "Restored"}
    assert status["source"]["snapshotId"] == snapshot
    assert vault.version_ids("card-signing") == originals
