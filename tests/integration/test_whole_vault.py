"""The whole vault: secrets and certificates backed up and restored beside keys.

Against Lowkey Vault, the operator as a real process and the real API server (and Azurite
for Blob); the vault is arranged and inspected with the plain Azure SDK alone
(tests/harness/vault.py), the stored snapshots with kubectl and the plain Blob SDK.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kubernetes.client import V1ObjectMeta, V1Secret

from kvbackup.adapters.kubernetes import KubernetesApi
from tests.harness.azurite import Azurite
from tests.harness.operator import OperatorProcess
from tests.harness.vault import (
    active_items,
    certificate_client,
    certificate_versions,
    create_certificate,
    delete_secret,
    deleted_items,
    purge_certificates,
    purge_secrets,
    secret_client,
    secret_values,
    set_secret_values,
    sign_with_certificate,
)
from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import (
    EVERY,
    blob_destination,
    item_results,
    key_results,
    keyrestore,
    vault_backup,
)

pytestmark = pytest.mark.integration

#: The kinds as statuses and manifests list them.
KINDS = ("keys", "secrets", "certificates")
PASSWORDS = ["first password", "second password", "third password"]
MESSAGE = b"release 4.2 of api.example, signed by its TLS key"
#: The KeyBackup of the tests that back up into either store.
KEYBACKUP = "whole-vault"
PREFIX = "vaults"


def results(status: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each item's result in a status, by kind and name."""
    return {plural: item_results(status, plural) for plural in KINDS}


def entry(status: dict[str, Any], plural: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(item for item in status[plural] if item["name"] == name)
    return found


def stored_counts(status: dict[str, Any]) -> dict[str, int]:
    """How many items of each kind the KeyBackup's newest snapshot holds."""
    return {plural: status["lastSnapshot"].get(plural) or 0 for plural in KINDS}


def verify_signature(certificate: bytes, signature: bytes) -> None:
    """Raises InvalidSignature unless ``signature`` is MESSAGE signed (RS256) by the private
    key whose public key the X.509 ``certificate`` (DER) holds."""
    public_key = x509.load_der_x509_certificate(certificate).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def pack_entries(cluster: Cluster, keybackup: str) -> set[str]:
    """The data entries of the KeyBackup's packs that hold backups, as kubectl lists them."""
    packs = cluster.secrets(f"kvbackup.io/keybackup={keybackup},kvbackup.io/role=artifact")
    return {name for pack in packs for name in pack["data"]} - {"kvbackup.index.json"}


def manifest_items(cluster: Cluster, keybackup: str, snapshot: str) -> set[tuple[str, str]]:
    """Each artifact's kind and name in the snapshot's manifest, read as the README says
    (a one-part manifest: Secret ``<keybackup>-<snapshot>-m0``)."""
    part = cluster.get("secret", f"{keybackup}-{snapshot}-m0")
    manifest = json.loads(base64.b64decode(part["data"]["manifest.json"]))
    return {(item["kind"], item["name"]) for plural in KINDS for item in manifest[plural]}


def break_glass(cluster: Cluster, keybackup: str, snapshot: str, data_entry: str) -> bytes:
    """One item's backup bytes out of the snapshot's packs with kubectl and base64 -d alone,
    as the README's break-glass command does."""
    kubectl = f"{cluster.plane.kubectl_path} --kubeconfig {cluster.plane.kubeconfig}"
    return subprocess.run(
        f"{kubectl} get secrets -n {cluster.namespace} "
        f"-l kvbackup.io/keybackup={keybackup},kvbackup.io/snapshot={snapshot} "
        f"-o jsonpath='{{range .items[*]}}{{.data.{data_entry}}}{{end}}' | base64 -d",
        shell=True,
        capture_output=True,
        check=True,
    ).stdout


def flipped(data: bytes) -> bytes:
    """``data`` with its middle byte inverted: the size stays, the sha256 does not."""
    altered = bytearray(data)
    altered[len(altered) // 2] ^= 0xFF
    return bytes(altered)


@dataclass(frozen=True)
class Storage:
    """Where KeyBackup KEYBACKUP keeps its snapshots, and how one who may write there alters
    the stored backup of one secret (snapshot id, secret name)."""

    destination: dict[str, Any]
    alter_secret: Callable[[str, str], Awaitable[None]]


@pytest.fixture(params=["secrets", "blob"])
def storage(request: pytest.FixtureRequest, cluster: Cluster) -> Storage:
    if request.param == "secrets":

        async def alter_pack_entry(snapshot: str, name: str) -> None:
            data_entry = f"secret_{name}"
            packs = cluster.secrets(
                f"kvbackup.io/keybackup={KEYBACKUP},kvbackup.io/snapshot={snapshot},"
                "kvbackup.io/role=artifact"
            )
            pack = next(pack for pack in packs if data_entry in pack["data"])
            stored = base64.b64decode(pack["data"][data_entry])
            cluster.patch_secret_data(pack["metadata"]["name"], data_entry, flipped(stored))

        return Storage({"secret": {}}, alter_pack_entry)

    azurite: Azurite = request.getfixturevalue("azurite")
    container: ContainerClient = request.getfixturevalue("container")

    async def alter_blob(snapshot: str, name: str) -> None:
        # The README's layout: <prefix>/<namespace>/<keybackup>/<snapshot>/secrets/<name>
        path = f"{PREFIX}/{cluster.namespace}/{KEYBACKUP}/{snapshot}/secrets/{name}"
        stored = await (await container.download_blob(path)).readall()
        await container.upload_blob(path, flipped(stored), overwrite=True)

    destination = blob_destination(cluster, azurite, container.container_name, PREFIX)
    return Storage(destination, alter_blob)


def backed_up_whole(cluster: Cluster, vault: VaultUnderTest, storage: Storage) -> dict[str, Any]:
    """The status of KeyBackup KEYBACKUP of every key, secret and certificate of the vault
    into ``storage``, once its run succeeded."""
    cluster.apply(
        vault_backup(
            KEYBACKUP,
            vault.url,
            keys=EVERY,
            secrets=EVERY,
            certificates=EVERY,
            destination=storage.destination,
        )
    )
    return cluster.wait_for_phase("keybackup", KEYBACKUP, "Succeeded")


def test_a_purged_secret_comes_back_with_its_three_values_and_a_soft_deleted_one_is_recovered(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    versions = set_secret_values(vault, "db-password", PASSWORDS)
    set_secret_values(vault, "api-token", ["token of the orders service"])
    originals = {name: secret_values(vault, name) for name in ("db-password", "api-token")}
    assert originals["db-password"] == dict(zip(versions, PASSWORDS, strict=True))

    cluster.apply(vault_backup("secrets", vault.url, secrets=["db-password", "api-token"]))
    backed_up = cluster.wait_for_phase("keybackup", "secrets", "Succeeded")
    assert item_results(backed_up, "secrets") == {
        "db-password": "Succeeded",
        "api-token": "Succeeded",
    }
    assert entry(backed_up, "secrets", "db-password")["versionCount"] == 3
    assert stored_counts(backed_up) == {"keys": 0, "secrets": 2, "certificates": 0}

    purge_secrets(vault, ["db-password"])
    delete_secret(vault, "api-token")
    assert active_items(vault)["secrets"] == set()
    assert deleted_items(vault)["secrets"] == {"api-token"}

    cluster.apply(keyrestore("bring-back", vault.url, keybackup="secrets", strategy="Auto"))
    restored = cluster.wait_for_phase("keyrestore", "bring-back", "Succeeded")

    assert results(restored) == {
        "keys": {},
        "secrets": {"db-password": "Restored", "api-token": "Recovered"},
        "certificates": {},
    }
    assert secret_values(vault, "db-password") == originals["db-password"]
    assert secret_values(vault, "api-token") == originals["api-token"]
    assert deleted_items(vault)["secrets"] == set()
    assert sorted(entry(restored, "secrets", "db-password")["versions"]) == sorted(versions)
    assert restored["counts"]["secrets"] == {
        "restored": 1,
        "recovered": 1,
        "skipped": 0,
        "failed": 0,
    }


def test_a_disabled_secret_in_the_target_vault_is_an_existing_secret_not_a_refusal(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    [version] = set_secret_values(vault, "rotated", ["old value"])
    cluster.apply(vault_backup("rotated", vault.url, secrets=["rotated"]))
    cluster.wait_for_phase("keybackup", "rotated", "Succeeded")
    with secret_client(vault) as client:
        # Key Vault refuses (403) to read a disabled secret's value.
        client.update_secret_properties("rotated", version, enabled=False)

    cluster.apply(keyrestore("over-disabled", vault.url, keybackup="rotated", strategy="Auto"))
    restored = cluster.wait_for_phase("keyrestore", "over-disabled", "Succeeded")

    assert item_results(restored, "secrets") == {"rotated": "Skipped"}
    assert entry(restored, "secrets", "rotated")["reason"] == "SecretExists"


def test_a_purged_certificate_comes_back_with_its_versions_and_its_key_still_signs(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    """Key Vault keeps a key and a secret named as the certificate; a backup of every key,
    secret and certificate holds them in the certificate's backup alone."""
    originals = create_certificate(vault, "api-tls", versions=2)
    vault.create_ec_keys(["signing"])
    set_secret_values(vault, "db-password", ["password"])

    cluster.apply(
        vault_backup("everything", vault.url, keys=EVERY, secrets=EVERY, certificates=EVERY)
    )
    backed_up = cluster.wait_for_phase("keybackup", "everything", "Succeeded")

    assert results(backed_up) == {
        "keys": {"signing": "Succeeded"},
        "secrets": {"db-password": "Succeeded"},
        "certificates": {"api-tls": "Succeeded"},
    }
    assert entry(backed_up, "certificates", "api-tls")["versionCount"] == 2
    assert pack_entries(cluster, "everything") == {
        "signing",
        "secret_db-password",
        "certificate_api-tls",
    }
    assert manifest_items(cluster, "everything", backed_up["lastSnapshot"]["id"]) == {
        ("key", "signing"),
        ("secret", "db-password"),
        ("certificate", "api-tls"),
    }
    assert backed_up["lastRun"].get("leftOut") is None

    purge_certificates(vault, ["api-tls"])
    assert "api-tls" not in active_items(vault)["certificates"]
    assert not vault.exists("api-tls")  # its key went with it

    cluster.apply(
        keyrestore("bring-back", vault.url, keybackup="everything", certificates=["api-tls"])
    )
    restored = cluster.wait_for_phase("keyrestore", "bring-back", "Succeeded")

    assert results(restored) == {"keys": {}, "secrets": {}, "certificates": {"api-tls": "Restored"}}
    assert certificate_versions(vault, "api-tls") == originals
    for version, certificate in originals.items():
        verify_signature(certificate, sign_with_certificate(vault, "api-tls", version, MESSAGE))


def test_a_backup_of_keys_and_secrets_alone_says_it_left_out_the_key_and_secret_of_a_certificate(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    create_certificate(vault, "api-tls")
    vault.create_ec_keys(["signing"])
    set_secret_values(vault, "db-password", ["password"])

    cluster.apply(vault_backup("no-certificates", vault.url, keys=EVERY, secrets=EVERY))
    status = cluster.wait_for_phase("keybackup", "no-certificates", "Succeeded")

    assert results(status) == {
        "keys": {"signing": "Succeeded"},
        "secrets": {"db-password": "Succeeded"},
        "certificates": {},
    }
    assert pack_entries(cluster, "no-certificates") == {"signing", "secret_db-password"}
    left_out = status["lastRun"]["leftOut"]
    assert (left_out["keys"], left_out["secrets"]) == (1, 1)
    assert "spec.certificates" in left_out["message"]
    assert "left out" in cluster.ready_condition("keybackup", "no-certificates")["message"]


def test_one_snapshot_of_every_kind_previews_per_kind_and_restores_only_the_chosen_items(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, storage: Storage
) -> None:
    vault.create_ec_keys(["signing", "wrapping"])
    key_versions = vault.version_ids("signing")
    for name in ("db-password", "api-token"):
        set_secret_values(vault, name, [f"{name} value", f"{name} value, rotated"])
    secrets = secret_values(vault, "db-password")
    certificates = {name: create_certificate(vault, name) for name in ("api-tls", "web-tls")}
    backed_up = backed_up_whole(cluster, vault, storage)
    assert stored_counts(backed_up) == {"keys": 2, "secrets": 2, "certificates": 2}

    vault.delete_and_purge("signing")
    vault.delete("wrapping")
    purge_secrets(vault, ["db-password", "api-token"])
    purge_certificates(vault, ["api-tls"])
    before = active_items(vault), deleted_items(vault)

    cluster.apply(keyrestore("preview", vault.url, keybackup=KEYBACKUP, dryRun=True))
    preview = cluster.wait_for_phase("keyrestore", "preview", "Succeeded")

    assert (active_items(vault), deleted_items(vault)) == before
    assert results(preview) == {
        "keys": {"signing": "WouldRestore", "wrapping": "WouldRecover"},
        "secrets": {"db-password": "WouldRestore", "api-token": "WouldRestore"},
        "certificates": {"api-tls": "WouldRestore", "web-tls": "WouldSkip"},
    }
    assert entry(preview, "certificates", "web-tls")["reason"] == "CertificateExists"
    assert entry(preview, "secrets", "db-password")["reason"] == "SecretAbsent"
    dry = ("wouldRestore", "wouldRecover", "wouldSkip", "wouldFail")
    assert preview["counts"] == {
        **dict(zip(dry, (4, 1, 1, 0), strict=True)),
        "keys": dict(zip(dry, (1, 1, 0, 0), strict=True)),
        "secrets": dict(zip(dry, (2, 0, 0, 0), strict=True)),
        "certificates": dict(zip(dry, (1, 0, 1, 0), strict=True)),
    }

    cluster.apply(
        keyrestore(
            "chosen",
            vault.url,
            keybackup=KEYBACKUP,
            keys=["signing"],
            secrets=["db-password"],
            certificates=["api-tls"],
        )
    )
    chosen = cluster.wait_for_phase("keyrestore", "chosen", "Succeeded")

    assert results(chosen) == {
        "keys": {"signing": "Restored"},
        "secrets": {"db-password": "Restored"},
        "certificates": {"api-tls": "Restored"},
    }
    assert active_items(vault) == {
        "keys": {"signing"},
        "secrets": {"db-password"},
        "certificates": {"api-tls", "web-tls"},
    }
    assert deleted_items(vault) == {"keys": {"wrapping"}, "secrets": set(), "certificates": set()}
    assert vault.version_ids("signing") == key_versions
    assert secret_values(vault, "db-password") == secrets
    assert certificate_versions(vault, "api-tls") == certificates["api-tls"]


async def test_a_tampered_secret_backup_fails_that_secret_alone_and_the_other_items_are_restored(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, storage: Storage
) -> None:
    vault.create_ec_keys(["signing"])
    key_versions = vault.version_ids("signing")
    for name in ("db-password", "api-token"):
        set_secret_values(vault, name, [f"{name} value"])
    secrets = secret_values(vault, "db-password")
    certificates = create_certificate(vault, "api-tls")
    snapshot = backed_up_whole(cluster, vault, storage)["lastSnapshot"]["id"]
    vault.delete_and_purge("signing")
    purge_secrets(vault, ["db-password", "api-token"])
    purge_certificates(vault, ["api-tls"])

    await storage.alter_secret(snapshot, "api-token")
    cluster.apply(keyrestore("after-tampering", vault.url, keybackup=KEYBACKUP))
    status = cluster.wait_for_phase("keyrestore", "after-tampering", "PartiallyFailed")

    assert results(status) == {
        "keys": {"signing": "Restored"},
        "secrets": {"db-password": "Restored", "api-token": "Failed"},
        "certificates": {"api-tls": "Restored"},
    }
    assert entry(status, "secrets", "api-token")["reason"] == "IntegrityCheckFailed"
    assert "sha256" in entry(status, "secrets", "api-token")["message"]
    assert active_items(vault) == {
        "keys": {"signing"},
        "secrets": {"db-password"},
        "certificates": {"api-tls"},
    }
    assert vault.version_ids("signing") == key_versions
    assert secret_values(vault, "db-password") == secrets
    assert certificate_versions(vault, "api-tls") == certificates


def compact(document: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def test_a_keys_only_snapshot_in_the_layout_before_secrets_and_certificates_still_restores(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, api: KubernetesApi
) -> None:
    """The Secrets as the operator wrote them before it knew other kinds (commit 743e4ac's
    secret_store.py): a pack whose data entry is the key's name and whose index entries
    carry no kind, the manifest in part -m0 with a list of keys without kinds, and a
    summary that counts keys alone."""
    originals = vault.create_rsa_key("card-signing", versions=2)
    with vault.client as client:
        backup = client.backup_key("card-signing")
    snapshot = "20261120-020000-01d1"
    pack = f"payments-{snapshot}-a-1a2b-0"
    digest = hashlib.sha256(backup).hexdigest()
    times = {"startTime": "2026-11-20T02:00:00Z", "completionTime": "2026-11-20T02:00:05Z"}
    index = [
        {
            "name": "card-signing",
            "versions": originals,
            "sha256": digest,
            "size": len(backup),
            "chunk": 0,
            "chunks": 1,
        }
    ]
    manifest = compact(
        {
            "apiVersion": "kvbackup.io/v1alpha1",
            "kind": "SnapshotManifest",
            "snapshotId": snapshot,
            "keyBackup": {"namespace": cluster.namespace, "name": "payments", "uid": "uid-old"},
            "vaultUrl": vault.url,
            **times,
            "operatorVersion": "0.9.0",
            "keys": [
                {
                    "name": "card-signing",
                    "versions": originals,
                    "sha256": digest,
                    "size": len(backup),
                    "location": pack,
                }
            ],
            "failures": [],
        }
    )
    summary = compact(
        {
            "snapshotId": snapshot,
            **times,
            "keys": 1,
            "failedKeys": 0,
            "bytes": len(backup),
        }
    )
    manifest_annotations = {
        "kvbackup.io/manifest-parts": "1",
        "kvbackup.io/manifest-sha256": hashlib.sha256(manifest).hexdigest(),
    }
    for name, role, data, recorded in (
        (pack, "artifact", {"card-signing": backup, "kvbackup.index.json": compact(index)}, {}),
        (f"payments-{snapshot}-m0", "manifest-part", {"manifest.json": manifest}, {}),
        (f"payments-{snapshot}", "manifest", {"summary.json": summary}, manifest_annotations),
    ):
        labels = {
            "kvbackup.io/keybackup": "payments",
            "kvbackup.io/snapshot": snapshot,
            "kvbackup.io/role": role,
        }
        # Through the Kubernetes client, as the old operator wrote them.
        api.core.create_namespaced_secret(
            cluster.namespace,
            V1Secret(
                metadata=V1ObjectMeta(name=name, labels=labels, annotations=recorded),
                type="Opaque",
                data={entry: base64.b64encode(value).decode() for entry, value in data.items()},
            ),
        )
    vault.delete_and_purge("card-signing")

    cluster.apply(keyrestore("from-old-layout", vault.url, keybackup="payments"))
    status = cluster.wait_for_phase("keyrestore", "from-old-layout", "Succeeded")

    assert key_results(status) == {"card-signing": "Restored"}
    assert status["source"]["snapshotId"] == snapshot
    assert status.get("secrets") is None
    assert status.get("certificates") is None
    assert vault.version_ids("card-signing") == originals


def test_the_stored_bytes_of_a_secret_and_a_certificate_restore_with_kubectl_and_the_plain_sdk(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    """Break-glass with the operator gone: each item's bytes out of its pack with kubectl
    and base64 -d, then the plain SDK's restore_secret_backup and
    restore_certificate_backup, into the vault they were purged from."""
    set_secret_values(vault, "db-password", PASSWORDS)
    secrets = secret_values(vault, "db-password")
    certificates = create_certificate(vault, "api-tls", versions=2)
    cluster.apply(
        vault_backup("payments", vault.url, secrets=["db-password"], certificates=["api-tls"])
    )
    snapshot = cluster.wait_for_phase("keybackup", "payments", "Succeeded")["lastSnapshot"]["id"]
    purge_secrets(vault, ["db-password"])
    purge_certificates(vault, ["api-tls"])

    secret_backup = break_glass(cluster, "payments", snapshot, "secret_db-password")
    certificate_backup = break_glass(cluster, "payments", snapshot, "certificate_api-tls")
    with secret_client(vault) as client:
        client.restore_secret_backup(secret_backup)
    with certificate_client(vault) as client:
        client.restore_certificate_backup(certificate_backup)

    assert secret_values(vault, "db-password") == secrets
    assert certificate_versions(vault, "api-tls") == certificates
