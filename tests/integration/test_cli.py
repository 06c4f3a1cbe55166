"""The kvbackup command line, run as a user runs it (a process of its own), against the
real API server, Lowkey Vault and Azurite: for the day the operator is gone."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.blob_store import BlobSnapshotStore
from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.api.kinds import ItemKind, ItemRef
from kvbackup.services.ports import SnapshotStore
from kvbackup.services.snapshot import Artifact, Manifest
from tests.harness.azurite import Azurite
from tests.harness.controlplane import REPO, ControlPlane
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import SELF_SIGNED, certificate_client, secret_client
from tests.integration.conftest import (
    Cluster,
    VaultUnderTest,
    store_changes,
    store_items,
    store_snapshot,
)
from tests.integration.objects import keybackup
from tests.integration.runs import kvbackup

pytestmark = pytest.mark.integration

COMPLETE, INCOMPLETE = "20261128-010203-aaaa", "20261128-020000-bbbb"
#: Small packs: a key larger than one is written at once, with no manifest to wait for.
PACK_SIZE = 1000


def lines_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.strip().splitlines()


def test_export_then_purge_then_restore_brings_every_version_back_and_the_plain_sdk_takes_a_file(
    operator: OperatorProcess,
    cluster: Cluster,
    control_plane: ControlPlane,
    lowkey: Lowkey,
    vault: VaultUnderTest,
    tmp_path: Path,
) -> None:
    versions = {
        "card-signing": vault.create_rsa_key("card-signing", versions=3),
        "token-wrapping": vault.create_rsa_key("token-wrapping", versions=2),
    }
    cluster.apply(keybackup("keys", vault.url, keys=list(versions)))
    cluster.wait_for_phase("keybackup", "keys", "Succeeded")
    exported = tmp_path / "export"
    source = ("--kubeconfig", str(control_plane.kubeconfig), "-n", cluster.namespace)

    export = kvbackup("export", "latest", str(exported), *source, "--keybackup", "keys")

    assert export.returncode == 0, export.stderr
    assert sorted(str(p.relative_to(exported)) for p in exported.rglob("*")) == [
        "keys",
        "keys/card-signing.bak",
        "keys/token-wrapping.bak",
        "manifest.json",
    ]
    [pack] = cluster.secrets("kvbackup.io/keybackup=keys,kvbackup.io/role=artifact")
    for name in versions:  # the exact bytes backup_key returned, as the Secret holds them
        assert (exported / "keys" / f"{name}.bak").read_bytes() == base64.b64decode(
            pack["data"][name]
        )
    for name in versions:
        vault.delete_and_purge(name)

    with vault.client as client:  # the plain SDK, as a person without kvbackup would
        client.restore_key_backup((exported / "keys/card-signing.bak").read_bytes())
    assert vault.version_ids("card-signing") == versions["card-signing"]

    target = ("--vault-url", vault.url)
    preview = kvbackup("restore", str(exported), *target, "--dry-run", env=lowkey.operator_env())
    assert preview.returncode == 0, preview.stderr
    assert lines_of(preview) == [
        "card-signing: WouldSkip (KeyExists) - key card-signing is active; onConflict is Skip",
        "token-wrapping: WouldRestore (KeyAbsent) - would restore 2 version(s) from the backup",
        "dry run: would restore 1, recover 0, skip 1, fail 0; no key was changed",
    ]
    assert not vault.exists("token-wrapping")

    restore = kvbackup("restore", str(exported), *target, env=lowkey.operator_env())

    assert restore.returncode == 0, restore.stderr
    assert lines_of(restore) == [
        "card-signing: Skipped (KeyExists) - key card-signing is active; onConflict is Skip",
        "token-wrapping: Restored - restored 2 version(s) from the backup",
        "1 restored, 0 recovered, 1 skipped, 0 failed",
    ]
    assert vault.version_ids("token-wrapping") == versions["token-wrapping"]

    vault.delete("token-wrapping")
    recover = kvbackup(
        "-o", "json", "restore", str(exported), *target, "--keys", "token-wrapping",
        env=lowkey.operator_env(),
    )  # fmt: skip
    document = json.loads(recover.stdout)
    assert recover.returncode == 0, recover.stderr
    counts = {"restored": 0, "recovered": 1, "skipped": 0, "failed": 0}
    assert document["counts"] == {**counts, "keys": counts}
    assert [entry["result"] for entry in document["keys"]] == ["Recovered"]


@dataclass
class PlainClients:
    """The plain Azure SDK for each kind, as a person without kvbackup has it."""

    keys: KeyClient
    secrets: SecretClient
    certificates: CertificateClient


@contextmanager
def plain_clients(vault: VaultUnderTest) -> Iterator[PlainClients]:
    with (
        vault.client as keys,
        secret_client(vault) as secrets,
        certificate_client(vault) as certificates,
    ):
        yield PlainClients(keys, secrets, certificates)


def secret_versions(clients: PlainClients, name: str) -> dict[str, str]:
    """Each version's id and value, as the plain SDK reads them back."""
    return {
        props.version or "": clients.secrets.get_secret(name, props.version).value or ""
        for props in clients.secrets.list_properties_of_secret_versions(name)
    }


def certificate_versions(clients: PlainClients, name: str) -> set[str]:
    return {
        props.version or ""
        for props in clients.certificates.list_properties_of_certificate_versions(name)
    }


@dataclass
class Storage:
    """A store of one kind, the kvbackup arguments and environment that reach it, and a
    way to alter a stored backup behind its manifest's back."""

    store: SnapshotStore
    arguments: list[str]
    env: dict[str, str]
    alter: Callable[[Artifact, bytes], Awaitable[None]]


@pytest.fixture(params=["secrets", "blob"])
def storage(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    namespace: str,
    azurite: Azurite,
    container: ContainerClient,
    api: KubernetesApi,
    blob_store: BlobSnapshotStore,
) -> Storage:
    where = ["-n", namespace, "-b", "payments"]
    if request.param == "secrets":

        async def alter_entry(artifact: Artifact, data: bytes) -> None:
            await api.call(
                "alter a stored backup",
                api.core.patch_namespaced_secret,
                artifact.location,
                namespace,
                {"data": {artifact.name: base64.b64encode(data).decode()}},
            )

        return Storage(
            SecretSnapshotStore(api, pack_size=PACK_SIZE),
            [*where, "--kubeconfig", str(control_plane.kubeconfig)],
            {},
            alter_entry,
        )

    async def alter_blob(artifact: Artifact, data: bytes) -> None:
        folder = blob_store.folder(namespace, "payments", COMPLETE)
        await container.upload_blob(
            f"{folder}/{artifact.kind.plural}/{artifact.name}", data, overwrite=True
        )

    blob = ["--account-url", azurite.blob_endpoint, "--container", container.container_name]
    return Storage(
        blob_store,
        [*where, *blob, "--prefix", "backups"],
        {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string()},
        alter_blob,
    )


async def test_a_mixed_export_restores_with_the_plain_sdk_and_kvbackup_restores_a_subset(
    storage: Storage, namespace: str, lowkey: Lowkey, vault: VaultUnderTest, tmp_path: Path
) -> None:
    """A key and a secret of one name and a self-signed certificate: exported, lost, then
    brought back from the files by the plain SDK and by ``kvbackup restore``."""
    key_versions = vault.create_rsa_key("signing", versions=2)
    with plain_clients(vault) as clients:
        for value in ("first", "second", "third"):
            clients.secrets.set_secret("signing", f"{value} password")
        clients.certificates.begin_create_certificate("api-tls", SELF_SIGNED).wait()
        secrets, certificates = (
            secret_versions(clients, "signing"),
            certificate_versions(clients, "api-tls"),
        )
        backups = {
            ItemRef(ItemKind.KEY, "signing"): clients.keys.backup_key("signing"),
            ItemRef(ItemKind.SECRET, "signing"): clients.secrets.backup_secret("signing"),
            ItemRef(ItemKind.CERTIFICATE, "api-tls"): clients.certificates.backup_certificate(
                "api-tls"
            ),
        }
    await store_items(
        storage.store, KeyBackupRef(namespace, "payments", "uid-1"), COMPLETE, backups
    )
    exported = tmp_path / "export"

    export = kvbackup("export", "latest", str(exported), *storage.arguments, env=storage.env)

    assert export.returncode == 0, export.stderr
    assert [line.split(":")[0] for line in lines_of(export)] == [
        "key signing", "secret signing", "certificate api-tls", "3 exported, 0 failed"
    ]  # fmt: skip
    assert sorted(str(p.relative_to(exported)) for p in exported.rglob("*.*")) == [
        "certificates/api-tls.bak", "keys/signing.bak", "manifest.json", "secrets/signing.bak"
    ]  # fmt: skip
    for item, backup in backups.items():  # exactly what each kind's backup call returned
        assert (exported / item.kind.plural / f"{item.name}.bak").read_bytes() == backup
    listed = kvbackup("snapshots", "list", *storage.arguments, env=storage.env)
    assert lines_of(listed)[0].split()[3:6] == ["KEYS", "SECRETS", "CERTIFICATES"]
    assert lines_of(listed)[1].split()[3:7] == ["1", "1", "1", "0"]
    verified = kvbackup("snapshots", "verify", "--directory", str(exported), "-o", "json")
    assert verified.returncode == 0, verified.stderr
    assert [(e["kind"], e["name"]) for e in json.loads(verified.stdout)["certificates"]] == [
        ("certificate", "api-tls")
    ]

    with plain_clients(vault) as clients:
        vault.delete_and_purge("signing")
        clients.secrets.begin_delete_secret("signing").wait()
        clients.secrets.purge_deleted_secret("signing")
        clients.certificates.begin_delete_certificate("api-tls").wait()
        clients.certificates.purge_deleted_certificate("api-tls")
        # The plain SDK takes the exported files as they are.
        clients.secrets.restore_secret_backup((exported / "secrets/signing.bak").read_bytes())
        clients.certificates.restore_certificate_backup(
            (exported / "certificates/api-tls.bak").read_bytes()
        )
        assert secret_versions(clients, "signing") == secrets
        assert certificate_versions(clients, "api-tls") == certificates
        clients.secrets.begin_delete_secret("signing").wait()  # soft-deleted, recoverable
    target = (str(exported), "--vault-url", vault.url, "--keys", "signing", "--secrets", "signing")

    preview = kvbackup("restore", *target, "--dry-run", env=lowkey.operator_env())

    assert preview.returncode == 0, preview.stderr
    assert [line.split(" - ")[0] for line in lines_of(preview)[:-1]] == [
        "key signing: WouldRestore (KeyAbsent)",
        "secret signing: WouldRecover (SecretSoftDeleted)",
    ]
    restore = kvbackup(
        "-o", "json", "restore", *target, "--purge-deleted-secrets", env=lowkey.operator_env()
    )  # fmt: skip

    assert restore.returncode == 0, restore.stderr
    document = json.loads(restore.stdout)
    assert [(e["kind"], e["name"], e["result"]) for e in document["keys"]] == [
        ("key", "signing", "Restored")
    ]
    assert [(e["kind"], e["name"], e["result"]) for e in document["secrets"]] == [
        ("secret", "signing", "Restored")  # purged, then restored from the file
    ]
    assert document["certificates"] == []  # not chosen
    assert vault.version_ids("signing") == key_versions
    with plain_clients(vault) as clients:
        assert secret_versions(clients, "signing") == secrets
    everything = kvbackup(
        "restore", str(exported), "--vault-url", vault.url, env=lowkey.operator_env()
    )
    assert everything.returncode == 0, everything.stderr
    assert [line.split(" - ")[0] for line in lines_of(everything)[:-1]] == [
        "key signing: Skipped (KeyExists)",
        "secret signing: Skipped (SecretExists)",
        "certificate api-tls: Skipped (CertificateExists)",
    ]


async def test_snapshots_list_shows_each_snapshot_complete_or_not_newest_first(
    storage: Storage, namespace: str
) -> None:
    store, where, env = storage.store, storage.arguments, storage.env
    ref = KeyBackupRef(namespace, "payments", "uid-1")
    await store_snapshot(store, ref, COMPLETE, {"card-signing": b"x" * 100, "tokens": b"y" * 20})
    # An interrupted run: a key's backup stored, no manifest.
    await store.write_artifact(ref, INCOMPLETE, ItemKind.KEY, "card-signing", os.urandom(PACK_SIZE))

    text = kvbackup("snapshots", "list", *where, env=env)
    listed = kvbackup("-o", "json", "snapshots", "list", *where, env=env)

    assert text.returncode == 0, text.stderr
    header, newest, oldest = lines_of(text)
    assert header.split() == [
        "SNAPSHOT", "STARTED", "COMPLETED", "KEYS", "SECRETS", "CERTIFICATES", "FAILED", "BYTES",
        "NEW", "BYTES", "COMPLETE",
    ]  # fmt: skip
    assert newest.split() == [INCOMPLETE, "2026-11-28T02:00:00Z", *["-"] * 7, "no"]
    assert oldest.split()[0] == COMPLETE
    assert oldest.split()[3:] == ["2", "0", "0", "0", "120", "120", "yes"]
    assert [(s["id"], s["complete"]) for s in json.loads(listed.stdout)["snapshots"]] == [
        (INCOMPLETE, False),
        (COMPLETE, True),
    ]


async def test_verify_passes_an_intact_snapshot_and_names_the_key_whose_backup_was_altered(
    storage: Storage, namespace: str
) -> None:
    store, where, env = storage.store, storage.arguments, storage.env
    ref = KeyBackupRef(namespace, "payments", "uid-1")
    await store_snapshot(store, ref, COMPLETE, {"card-signing": b"x" * 300, "tokens": b"y" * 20})
    intact = kvbackup("snapshots", "verify", "latest", *where, env=env)
    assert intact.returncode == 0, intact.stderr
    assert lines_of(intact)[-1] == "2 verified, 0 failed"

    manifest = await store.read_manifest(namespace, "payments", COMPLETE)
    await storage.alter(manifest.artifact(ItemKind.KEY, "card-signing"), b"z" * 300)  # same size

    altered = kvbackup("snapshots", "verify", COMPLETE, *where, "-o", "json", env=env)

    assert altered.returncode == 1
    document = json.loads(altered.stdout)
    assert (document["verified"], document["failed"]) == (1, 1)
    [failed] = [entry for entry in document["keys"] if entry["result"] == "Failed"]
    assert (failed["name"], failed["reason"]) == ("card-signing", "IntegrityCheckFailed")
    text = kvbackup("snapshots", "verify", COMPLETE, *where, env=env)
    assert text.returncode == 1
    assert lines_of(text)[0].startswith("card-signing: Failed (IntegrityCheckFailed) - ")


# --- incremental snapshots: items whose bytes an earlier snapshot stored ----------------

#: A whole snapshot; then two differential on it, the last carrying items from the second.
WHOLE, SECOND, THIRD = COMPLETE, "20261129-010203-bbbb", "20261130-010203-cccc"
SIGNING, TOKENS, RETIRED = (ItemRef(ItemKind.KEY, n) for n in ("signing", "tokens", "retired"))
DB_PASSWORD, API_KEY = (ItemRef(ItemKind.SECRET, n) for n in ("db-password", "api-key"))


async def store_chain(store: SnapshotStore, ref: KeyBackupRef) -> dict[str, dict[ItemRef, bytes]]:
    """Three snapshots of one KeyBackup; returns each one's items' bytes, by snapshot id.

    WHOLE stores everything. SECOND stores a changed key and a new secret, carries the
    others from WHOLE, and no longer holds ``retired``. THIRD stores a changed secret and
    carries the rest: the changed key and the new secret from SECOND, the others from WHOLE.
    Both later manifests are differential on WHOLE's."""
    first = {
        SIGNING: b"signing, first backup" * 20,
        TOKENS: b"tokens, first backup" * 10,
        RETIRED: b"retired" * 5,
        DB_PASSWORD: b"db-password, first backup" * 4,
    }
    whole = await store_items(store, ref, WHOLE, first)
    changed = {TOKENS: b"tokens, second backup" * 12, API_KEY: b"api-key" * 7}
    second = await store_changes(store, ref, whole, SECOND, changed, gone=[RETIRED])
    await store.write_manifest(second.differences_from(whole), second.summary)
    rotated = {DB_PASSWORD: b"db-password, third backup" * 5}
    third = await store_changes(store, ref, second, THIRD, rotated)
    await store.write_manifest(third.differences_from(whole), third.summary)
    return {
        WHOLE: first,
        SECOND: {SIGNING: first[SIGNING], DB_PASSWORD: first[DB_PASSWORD], **changed},
        THIRD: {SIGNING: first[SIGNING], TOKENS: changed[TOKENS], API_KEY: changed[API_KEY],
                **rotated},
    }  # fmt: skip


async def test_snapshots_whose_items_earlier_snapshots_stored_verify_list_and_export_whole(
    storage: Storage, namespace: str, tmp_path: Path
) -> None:
    store, where, env = storage.store, storage.arguments, storage.env
    ref = KeyBackupRef(namespace, "payments", "uid-1")
    chain = await store_chain(store, ref)
    as_stored = await store.read_manifest(namespace, "payments", THIRD)
    assert (as_stored.base, {a.name for a in as_stored.artifacts}) == (
        WHOLE, {"db-password", "tokens", "api-key"}
    )  # fmt: skip

    verified = {sid: kvbackup("snapshots", "verify", sid, *where, env=env) for sid in chain}

    for snapshot_id, result in verified.items():
        assert result.returncode == 0, (snapshot_id, result.stdout, result.stderr)
        assert lines_of(result)[-1] == f"{len(chain[snapshot_id])} verified, 0 failed"
    lines = lines_of(verified[THIRD])[:-1]
    match = "sha256 and size match the manifest"
    assert dict(line.split(": Succeeded (Verified) - ") for line in lines) == {
        "key signing": f"{match}; stored with snapshot {WHOLE}",
        "key tokens": f"{match}; stored with snapshot {SECOND}",
        "secret api-key": f"{match}; stored with snapshot {SECOND}",
        "secret db-password": match,
    }

    listed = kvbackup("snapshots", "list", *where, env=env)
    as_json = kvbackup("-o", "json", "snapshots", "list", *where, env=env)

    assert listed.returncode == 0, listed.stderr
    header, *rows = lines_of(listed)
    assert header.split()[-4:] == ["BYTES", "NEW", "BYTES", "COMPLETE"]
    stored_itself = {
        WHOLE: chain[WHOLE].values(),
        SECOND: [chain[SECOND][TOKENS], chain[SECOND][API_KEY]],
        THIRD: [chain[THIRD][DB_PASSWORD]],
    }
    expected = {
        snapshot_id: (sum(map(len, chain[snapshot_id].values())), sum(map(len, own)))
        for snapshot_id, own in stored_itself.items()
    }
    assert {row.split()[0]: tuple(map(int, row.split()[-3:-1])) for row in rows} == expected
    assert {
        s["id"]: (s["bytes"], s["newBytes"]) for s in json.loads(as_json.stdout)["snapshots"]
    } == expected

    exported = tmp_path / "export"
    export = kvbackup("export", "latest", str(exported), *where, env=env)

    assert export.returncode == 0, export.stderr
    assert lines_of(export)[-1] == "4 exported, 0 failed"
    assert sorted(str(p.relative_to(exported)) for p in exported.rglob("*.*")) == sorted(
        [f"{item.kind.plural}/{item.name}.bak" for item in chain[THIRD]] + ["manifest.json"]
    )
    for item, backup in chain[THIRD].items():  # the exact bytes, wherever they were stored
        assert (exported / item.kind.plural / f"{item.name}.bak").read_bytes() == backup
    manifest = Manifest.from_json((exported / "manifest.json").read_bytes())
    assert (manifest.snapshot_id, manifest.base, manifest.references) == (THIRD, "", frozenset())
    assert {(a.stored_in, a.location) for a in manifest.artifacts} == {("", "")}
    assert {a.ref for a in manifest.artifacts} == set(chain[THIRD])
    from_directory = kvbackup("snapshots", "verify", "--directory", str(exported))
    assert from_directory.returncode == 0, from_directory.stderr
    assert lines_of(from_directory)[-1] == "4 verified, 0 failed"


@pytest.mark.parametrize("snapshot_id", [WHOLE, THIRD], ids=["whole", "differential"])
async def test_a_snapshot_found_by_its_url_alone_is_verified_and_exported(
    azurite: Azurite,
    container: ContainerClient,
    blob_store: BlobSnapshotStore,
    tmp_path: Path,
    snapshot_id: str,
) -> None:
    """Its manifest whole, or differential: then merged onto its base, and its items read
    from the sibling folders of the snapshots holding them."""
    chain = await store_chain(blob_store, KeyBackupRef("payments", "payments-keys", "uid-1"))
    url = blob_store.location("payments", "payments-keys", snapshot_id)
    blob = ["--account-url", azurite.blob_endpoint, "--container", container.container_name]
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string()}

    verified = kvbackup("snapshots", "verify", url, *blob, env=env)
    exported = kvbackup("export", url, str(tmp_path / "out"), *blob, env=env)

    assert verified.returncode == 0, verified.stderr
    assert lines_of(verified)[-1] == f"{len(chain[snapshot_id])} verified, 0 failed"
    assert exported.returncode == 0, exported.stderr
    for item, backup in chain[snapshot_id].items():
        assert (tmp_path / "out" / item.kind.plural / f"{item.name}.bak").read_bytes() == backup


async def test_a_forged_manifest_cannot_make_export_write_outside_its_directory(
    azurite: Azurite, container: ContainerClient, blob_store: BlobSnapshotStore, tmp_path: Path
) -> None:
    ref = KeyBackupRef("payments", "payments-keys", "uid-1")
    await store_snapshot(blob_store, ref, COMPLETE, {"card-signing": b"x" * 300})
    folder = f"backups/payments/payments-keys/{COMPLETE}"
    forged = (await (await container.download_blob(f"{folder}/manifest.json")).readall()).replace(
        b'"name":"card-signing"', b'"name":"../escaped"'
    )
    await container.upload_blob(f"{folder}/manifest.json", forged, overwrite=True)
    inside = tmp_path / "export" / "inside"

    export = kvbackup(
        "export", "latest", str(inside),
        "-n", "payments", "-b", "payments-keys", "--prefix", "backups",
        "--account-url", azurite.blob_endpoint, "--container", container.container_name,
        env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string()},
    )  # fmt: skip

    assert export.returncode == 3
    assert "is not a Key Vault key name" in export.stderr
    assert not (tmp_path / "export" / "escaped.bak").exists()
    assert not inside.exists() or not any(inside.iterdir())


def test_every_hostile_argument_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    cases = [
        ["snapshots", "list", "-n", "payments", "-b", "x,kvbackup.io/role!=manifest"],
        ["snapshots", "list", "-n", "../other", "-b", "payments-keys"],
        ["snapshots", "verify", "../../x", "-n", "payments", "-b", "payments-keys"],
        ["snapshots", "verify", "latest", "-n", "payments", "-b", "k", "--account-url",
         "http://backups.example.com", "--container", "c1c"],
        ["snapshots", "verify", "latest", "-n", "payments", "-b", "k", "--account-url",
         "https://a.blob.core.windows.net", "--container", "c1c", "--prefix", "a/../b"],
        ["snapshots", "verify", "https://a.blob.core.windows.net/c1c/../x", "--account-url",
         "https://a.blob.core.windows.net", "--container", "c1c"],
        ["restore", str(tmp_path), "--vault-url", "https://user@v.vault.azure.net"],
        ["restore", str(tmp_path), "--vault-url", "https://v.vault.azure.net", "--keys", "a/b"],
        ["restore", str(tmp_path), "--vault-url", "https://v.vault.azure.net",
         "--secrets", "a,b/c"],
        ["restore", str(tmp_path), "--vault-url", "https://v.vault.azure.net",
         "--strategy", "RecoverOnly", "--purge-deleted-certificates"],
        ["snapshots", "verify", "latest", "--directory", str(tmp_path)],
        ["restore", str(tmp_path), "--vault-url", "https://v.vault.azure.net",
         "--strategy", "RecoverOnly", "--purge-deleted-keys"],
    ]  # fmt: skip
    for arguments in cases:
        result = kvbackup(*arguments)

        assert result.returncode == 2, (arguments, result.stderr)
        assert result.stderr.startswith("kvbackup: InvalidSpec: "), (arguments, result.stderr)


# --- kubectl habits: the plugin, the context's namespace, -o yaml, completion ------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as pip installs it from its wheel: a directory with its scripts in bin/."""
    wheels, target = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("installed")
    # Built from a copy, so that the build leaves nothing in the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "operator", source / "operator", ignore=shutil.ignore_patterns("__pycache__")
    )

    def pip(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr

    pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(source))
    (wheel,) = wheels.iterdir()
    pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel))
    return target


async def test_kubectl_runs_the_installed_plugin_in_the_namespace_of_the_current_context(
    installed: Path, control_plane: ControlPlane, namespace: str, api: KubernetesApi, tmp_path: Path
) -> None:
    ref = KeyBackupRef(namespace, "payments", "uid-1")
    store = SecretSnapshotStore(api, pack_size=PACK_SIZE)
    await store_snapshot(store, ref, COMPLETE, {"card-signing": b"x" * 100})
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(control_plane.kubeconfig, kubeconfig)
    control_plane.kubectl(
        "config", "set-context", "--current", f"--namespace={namespace}",
        f"--kubeconfig={kubeconfig}",
    )  # fmt: skip
    env = {
        **os.environ,
        # kubectl finds a plugin on PATH, and passes it its environment.
        "PATH": f"{installed / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(installed),
        "KUBECONFIG": str(kubeconfig),
    }

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(control_plane.kubectl_path), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    plugins = kubectl("plugin", "list")
    assert str(installed / "bin" / "kubectl-kvbackup") in plugins.stdout
    listed = kubectl("kvbackup", "snapshots", "list", "-b", "payments", "-o", "yaml")

    assert listed.returncode == 0, listed.stderr
    (snapshot,) = yaml.safe_load(listed.stdout)["snapshots"]
    assert (snapshot["id"], snapshot["keys"], snapshot["complete"]) == (COMPLETE, 1, True)
    # -n still wins over the context, as with kubectl.
    elsewhere = kubectl("kvbackup", "snapshots", "list", "-b", "payments", "-n", "default")
    assert lines_of(elsewhere) == ["no snapshots"]
    assert kubectl("kvbackup", "--help").stdout.startswith("usage: kubectl kvbackup")


def _completed(shell: str, script: str, *words: str) -> list[str]:
    """What ``shell`` offers on TAB after ``words`` (the last one being completed), through
    the completion function that the script registered for kvbackup."""
    call = " ".join(shlex.quote(word) for word in words)
    if shell == "zsh":
        # As zsh's completion system calls it, through bashcompinit's compgen -F, which
        # leaves it to zsh to keep the offers that start with the word (PREFIX).
        program = (
            "autoload -U compinit && compinit -u\n"
            f"{script}\n"
            f"words=({call}); CURRENT=${{#words}}; PREFIX=${{words[CURRENT]}}\n"
            "COMP_WORDS=(${words[@]}); COMP_CWORD=$(( CURRENT - 1 ))\n"
            "compgen -F _kvbackup -- $PREFIX\n"
        )
        command = ["zsh", "-f", "-c", program]
    else:
        program = (
            f"{script}\n"
            f"COMP_WORDS=({call}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n"
            "_kvbackup; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
        )
        command = ["bash", "--norc", "-c", program]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=REPO / "charts")
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line and line.startswith(words[-1])]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_completion_script_completes_commands_options_choices_and_paths(shell: str) -> None:
    generated = kvbackup("completion", shell)
    assert generated.returncode == 0, generated.stderr
    script = generated.stdout

    assert _completed(shell, script, "kvbackup", "") == [
        "snapshots", "export", "restore", "completion"
    ]  # fmt: skip
    assert _completed(shell, script, "kvbackup", "snapshots", "") == ["list", "verify"]
    assert _completed(shell, script, "kvbackup", "snapshots", "list", "-o", "") == [
        "text", "json", "yaml"
    ]  # fmt: skip
    assert _completed(shell, script, "kubectl-kvbackup", "restore", "--on-conflict", "") == [
        "Skip", "Fail"
    ]  # fmt: skip
    options = _completed(shell, script, "kvbackup", "-o", "json", "snapshots", "verify", "--k")
    assert options == ["--keybackup", "--kubeconfig"]
    assert _completed(shell, script, "kvbackup", "restore", "--purge") == [
        "--purge-deleted-keys", "--purge-deleted-secrets", "--purge-deleted-certificates"
    ]  # fmt: skip
    assert _completed(shell, script, "kvbackup", "restore", "--s") == ["--secrets", "--strategy"]
    # An export's directory, to verify, is a path too.
    directory = ("kvbackup", "snapshots", "verify", "--directory", "kvb")
    assert _completed(shell, script, *directory) == ["kvbackup-operator"]
    # DIR of export is a path: the files where the shell stands.
    assert _completed(shell, script, "kvbackup", "export", "latest", "kvb") == ["kvbackup-operator"]
