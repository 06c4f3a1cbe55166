"""The disaster a platform team fears: a key deleted and purged. Back up, lose it, restore.

Everything here runs against a real Key Vault emulator (Lowkey Vault), the operator as a
real process, and the real API server; the vault is inspected with the plain Azure SDK.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from azure.storage.blob.aio import ContainerClient

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

    kubectl = [str(cluster.plane.kubectl_path), "--kubeconfig", str(cluster.plane.kubeconfig)]
    listing = subprocess.run(
        [
            *kubectl,
            "get",
            "secrets",
            "-n",
            cluster.namespace,
            "-l",
            f"kvbackup.io/keybackup=payments,kvbackup.io/snapshot={snapshot},"
            "kvbackup.io/role=artifact",
            "-o",
            r"jsonpath={range .items[*]}{.metadata.annotations.kvbackup\.io/key-name} "
            r'{.metadata.name}{"\n"}{end}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    secret = dict(line.split() for line in listing.splitlines())["card-signing"]
    blob = subprocess.run(
        f"{' '.join(kubectl)} get secret {secret} -n {cluster.namespace} "
        "-o jsonpath='{.data.backup}' | base64 -d",
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
