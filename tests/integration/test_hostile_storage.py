"""A tenant's own storage, filled with what the operator never wrote, fails only that
tenant's objects: each with a clear reason, the operator up and small, nothing outside the
tenant's folder touched, and another tenant's backup done meanwhile.

Azurite here serves HTTPS and takes the operator's bearer tokens, as Blob Storage takes its
identity: a token is good for every container, so only the operator's own checks keep a
request inside the folder it was meant for. Its debug log records every request, and the
test's own requests carry a user agent of their own, so the operator's are told apart.

One operator runs for the module. Every hostile object and team b's backup are applied at
once; each test then waits for the outcome of one of them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient, ContentSettings

from kvbackup.adapters.secret_store import INDEX_DATA_KEY, pack_secret_name
from kvbackup.api.fields import SNAPSHOT_ID
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.services.snapshot import Manifest, sha256_hex
from tests.harness import azurite as azurite_harness
from tests.harness import identity
from tests.harness.azurite import Azurite
from tests.harness.controlplane import ControlPlane
from tests.harness.forwarder import Forwarders
from tests.harness.hostile import gzip_bomb, peak_rss_mib, zeros
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import Vault, create_keys
from tests.integration.conftest import Cluster, Operators, backup_labels, new_namespaces
from tests.integration.objects import keybackup, keyrestore
from tests.unit.fakes import artifacts_of, manifest_of

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
#: The operator's resident memory may never exceed this (the chart's limit is 512Mi).
RSS_LIMIT_MIB = 200
#: The test's own requests to Azurite say so; every other request is the operator's.
TEST_AGENT = "kvbackup-hostile-tests"
#: Folders a tenant made to look like snapshots (valid ids): the forgery is inside them.
OLD, OLDER = "20200101-000000-0001", "20200101-000000-0000"
#: Keys of team b's honest backup, running beside all this.
TEAM_B_KEYS = [f"team-b-{n:02d}" for n in range(20)]
#: A backup key's bytes that the huge artifact's manifest records.
RECORDED = bytes(4096)
#: The snapshot a KeyBackup's run resumes, where a pack claims its key under no known kind.
RESUMED = "20200101-000000-0002"
#: What that pack holds for the key, with its sha256 in the forged index entry.
CLAIMED = b"not a-key's backup"


@dataclass
class Scene:
    plane: ControlPlane
    team_a: Cluster
    team_b: Cluster
    operator: OperatorProcess
    azurite: Azurite
    #: Containers by role: team a's, team b's, and a victim's no tenant may reach.
    containers: dict[str, ContainerClient]
    #: Team a's vault, which its restores name.
    vault_a: str
    victim_before: list[str]

    def blob(self, role: str, **more: str) -> dict[str, Any]:
        return {
            "accountUrl": self.azurite.blob_endpoint,
            "container": self.containers[role].container_name,
            **more,
        }

    def names(self, role: str) -> list[str]:
        return sorted(blob.name for blob in self.containers[role].list_blobs())


def _put_snapshot(container: ContainerClient, folder: str, manifest: Manifest) -> None:
    """A snapshot as the store lays it out, with whatever summary ``manifest`` gives."""
    for artifact in manifest.artifacts:
        container.upload_blob(
            f"{folder}/{artifact.kind.plural}/{artifact.name}", bytes(artifact.size)
        )
    container.upload_blob(
        f"{folder}/manifest.json",
        manifest.to_json(),
        metadata={"summary": manifest.summary.to_json().decode()},
    )


def _escape(first: str, victim: str, target: str) -> str:
    """A snapshot id that climbs from a KeyBackup's folder (``ns/kb/``) in its container to
    ``target`` in container ``victim`` once a URL parser resolves its dot segments, and
    sorts by ``first``."""
    return f"{first}/../../../../{victim}/{target}"


def _hostile_storage(scene: Scene, ns_a: str, ns_b: str) -> None:
    """What team a leaves in its own container and namespace before its objects run."""
    team_a = scene.containers["team-a"]
    victim = scene.containers["victim"].container_name
    target = f"{ns_b}/nightly/{OLD}"
    # (a) a manifest stored gzip-encoded that inflates to 64 MiB.
    team_a.upload_blob(
        f"{ns_a}/bomb/{OLD}/manifest.json",
        gzip_bomb(64 * MiB),
        content_settings=ContentSettings(content_type="application/json", content_encoding="gzip"),
    )
    # (b) a manifest recording 4 KiB for a key whose blob holds 300 MiB.
    team_a.upload_blob(
        f"{ns_a}/huge/{OLD}/manifest.json",
        manifest_of(
            *artifacts_of({"big": RECORDED}), ref=KeyBackupRef(ns_a, "huge", ""), snapshot_id=OLD
        ).to_json(),
    )
    team_a.upload_blob(
        f"{ns_a}/huge/{OLD}/keys/big", zeros(300 * MiB), length=300 * MiB, max_concurrency=2
    )
    # (c) summaries of KeyBackup "nightly" naming ids that climb into the victim's container:
    # the oldest for retention to delete, the newest for "latest" to read.
    for folder, climbing in ((OLDER, "0"), (OLD, "9")):
        forged = manifest_of(ref=KeyBackupRef(ns_a, "nightly", ""), snapshot_id=folder)
        blob = team_a.get_blob_client(f"{ns_a}/nightly/{folder}/manifest.json")
        blob.upload_blob(forged.to_json())
        summary = json.loads(forged.summary.to_json())
        summary["snapshotId"] = _escape(climbing, victim, target)
        blob.set_blob_metadata({"summary": json.dumps(summary)})
    # (d) a manifest of team b's namespace in team a's folder.
    stolen = manifest_of(ref=KeyBackupRef(ns_b, "keys", ""), snapshot_id=OLD)
    team_a.upload_blob(f"{ns_a}/keys/{OLD}/manifest.json", stolen.to_json())
    # (f) a Secret named and labelled as a manifest Secret, holding 1 MiB of junk.
    scene.team_a.create_secret(
        f"in-secrets-{OLD}",
        backup_labels("in-secrets", OLD, "manifest"),
        {"summary.json": os.urandom(MiB - 4096)},
    )
    # (g) a pack of the snapshot a run of KeyBackup "resumed" resumes (see its test), whose
    # index claims a-key under a kind that is none, beside bytes that match the claim.
    claim = {
        "name": "a-key",
        "versions": ["v1"],
        "sha256": sha256_hex(CLAIMED),
        "size": len(CLAIMED),
    }
    index = [claim | {"kind": "password", "chunk": 0, "chunks": 1}]
    scene.team_a.create_secret(
        pack_secret_name("resumed", RESUMED, "dead", 0),
        backup_labels("resumed", RESUMED, "artifact"),
        {INDEX_DATA_KEY: json.dumps(index).encode(), "a-key": CLAIMED, "password_a-key": CLAIMED},
    )


def _vault(lowkey: Lowkey, forwarders: Forwarders, opened: list[tuple[str, Any]]) -> Vault:
    forwarder = forwarders.open(lowkey.api_port)
    url = f"https://127.0.0.1:{forwarder.port}"
    lowkey.create_vault(url)
    opened.append((url, forwarder))
    return Vault(url, lowkey.certificate)


@pytest.fixture(scope="module")
def scene(
    control_plane: ControlPlane,
    lowkey: Lowkey,
    forwarders: Forwarders,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scene]:
    workdir = tmp_path_factory.mktemp("hostile-storage")
    team_a, team_b = new_namespaces(control_plane, "hostile-a", "honest-b")
    ns_a, ns_b = team_a.namespace, team_b.namespace
    suffix = uuid.uuid4().hex[:8]
    opened: list[tuple[str, Any]] = []
    vault_a, vault_b = _vault(lowkey, forwarders, opened), _vault(lowkey, forwarders, opened)
    server = azurite_harness.start(workdir / "azurite", oauth=True)
    containers = {
        role: ContainerClient.from_connection_string(
            server.connection_string(),
            f"{role}-{suffix}",
            connection_verify=str(server.certificate),
            user_agent=TEST_AGENT,
        )
        for role in ("team-a", "team-b", "victim")
    }
    try:
        with identity.token_endpoint() as token_endpoint:
            yield from _played(
                control_plane,
                lowkey,
                server,
                token_endpoint,
                containers,
                workdir,
                (ns_a, ns_b),
                (vault_a, vault_b),
            )
    finally:
        for client in containers.values():
            client.close()
        server.stop()
        for url, forwarder in opened:
            lowkey.delete_vault(url)
            forwarders.close(forwarder)


def _played(
    plane: ControlPlane,
    lowkey: Lowkey,
    server: Azurite,
    token_endpoint: str,
    containers: dict[str, ContainerClient],
    workdir: Path,
    namespaces: tuple[str, str],
    vaults: tuple[Vault, Vault],
) -> Iterator[Scene]:
    (ns_a, ns_b), (vault_a, vault_b) = namespaces, vaults
    for client in containers.values():
        client.create_container()
    # The victim: a snapshot another tenant keeps, which forged ids point at.
    victim_folder = f"{ns_b}/nightly/{OLD}"
    theirs = manifest_of(
        *artifacts_of({"their-key": bytes(64)}),
        ref=KeyBackupRef(ns_b, "nightly", ""),
        snapshot_id=OLD,
    )
    _put_snapshot(containers["victim"], victim_folder, theirs)
    vault_a.create_rsa_key("a-key")
    create_keys(vault_b, TEAM_B_KEYS)
    rules = [
        {
            "namespaces": [ns_a],
            "vaultUrls": [vault_a.url],
            "blobUrls": [f"{server.blob_endpoint}/{containers['team-a'].container_name}"],
        },
        {
            "namespaces": [ns_b],
            "vaultUrls": [vault_b.url],
            "blobUrls": [f"{server.blob_endpoint}/{containers['team-b'].container_name}"],
        },
    ]
    with Operators(plane, lowkey, workdir) as operators:
        operator = operators.start(
            ns_a,
            ns_b,
            identity_rules=rules,
            settings=identity.operator_env(token_endpoint, server, lowkey, workdir),
        )
        scene = Scene(
            plane,
            Cluster(plane, ns_a, operator),
            Cluster(plane, ns_b, operator),
            operator,
            server,
            containers,
            vault_a.url,
            [],
        )
        _hostile_storage(scene, ns_a, ns_b)
        scene.victim_before = scene.names("victim")
        _apply_everything(scene, vault_a, vault_b)
        yield scene


def _apply_everything(scene: Scene, vault_a: Vault, vault_b: Vault) -> None:
    team_a, ns_a = scene.team_a, scene.team_a.namespace
    destination = {"blob": scene.blob("team-a")}
    # Team b's honest backup first, so it runs beside everything team a asks for.
    scene.team_b.apply(keybackup("keys", vault_b.url, destination={"blob": scene.blob("team-b")}))
    for name, folder in (("gzip-bomb", "bomb"), ("huge-artifact", "huge"), ("stolen", "keys")):
        source = {"blob": scene.blob("team-a", path=f"{ns_a}/{folder}/{OLD}")}
        team_a.apply(keyrestore(name, vault_a.url, source=source))
    team_a.apply(
        keybackup(
            "nightly",
            vault_a.url,
            keys=["a-key"],
            destination=destination,
            retention={"keepLast": 1},
        )
    )
    team_a.apply(keybackup("in-secrets", vault_a.url, keys=["a-key"]))
    # (e) a scheduled backup that has not run; its status gets a forged id below.
    team_a.apply(
        keybackup(
            "patched",
            vault_a.url,
            keys=["a-key"],
            destination=destination,
            schedule="@every 1h",
            suspend=True,
        )
    )
    # (g) one into Secrets that has not run either; its status gets the id of RESUMED below.
    team_a.apply(
        keybackup("resumed", vault_a.url, keys=["a-key"], schedule="@every 1h", suspend=True)
    )


def _operator_requests(scene: Scene) -> list[tuple[str, str, str]]:
    """Each request the operator sent Azurite: its method, container and the blob path it
    reached (for a listing, the prefix it listed), as Azurite received them."""
    log = scene.azurite.log.parent / "azurite-debug.log"
    requests = []
    pattern = re.compile(r"RequestMethod=(\S+) RequestURL=(\S+)")
    for line in log.read_text(errors="replace").splitlines():
        found = pattern.search(line)
        if found is None or TEST_AGENT in line:
            continue
        url = urllib.parse.urlsplit(found.group(2))
        _, _, container, *path = url.path.split("/", 3)
        reached = urllib.parse.unquote(path[0]) if path else ""
        prefix = urllib.parse.parse_qs(url.query).get("prefix", [""])[0]
        requests.append((found.group(1), container, reached or prefix))
    return requests


def _wait_for_reason(cluster: Cluster, kind: str, name: str, reason: str) -> dict[str, Any]:
    """The Ready condition once it and an Event both say ``reason``."""
    cluster.wait_until(
        f"{kind}/{name} fails with {reason}, in status and in an Event",
        lambda: (
            cluster.ready_condition(kind, name).get("reason") == reason
            and cluster.event_count(name, reason) > 0
        ),
    )
    return cluster.ready_condition(kind, name)


def _retention_failure(cluster: Cluster, name: str) -> str:
    cluster.wait_until(
        f"keybackup/{name}'s retention fails",
        lambda: cluster.event_count(name, "RetentionFailed") > 0,
    )
    (event,) = [e for e in cluster.events_for(name) if e["reason"] == "RetentionFailed"][-1:]
    return str(event["message"])


def test_a_gzip_encoded_manifest_fails_its_restore_unread(scene: Scene) -> None:
    ready = _wait_for_reason(scene.team_a, "keyrestore", "gzip-bomb", "IntegrityCheckFailed")

    assert scene.team_a.status("keyrestore", "gzip-bomb")["phase"] == "Failed"
    assert "is stored with Content-Encoding 'gzip'" in ready["message"]
    assert f"{scene.team_a.namespace}/bomb/{OLD}/manifest.json" in ready["message"]


def test_an_artifact_larger_than_its_manifest_records_fails_that_key_as_too_large(
    scene: Scene,
) -> None:
    status = scene.team_a.wait_for_phase("keyrestore", "huge-artifact", "Failed")

    (key,) = status["keys"]
    assert (key["name"], key["result"], key["reason"]) == ("big", "Failed", "TooLarge")
    assert f"keys/big holds more than {len(RECORDED)} bytes" in key["message"]
    assert scene.team_a.event_count("huge-artifact", "RestoreFailed") > 0


def test_summaries_with_climbing_ids_fail_retention_and_latest_and_reach_nothing(
    scene: Scene,
) -> None:
    team_a = scene.team_a
    status = team_a.wait_for_phase("keybackup", "nightly", "Succeeded")
    message = _retention_failure(team_a, "nightly")
    team_a.apply(keyrestore("from-nightly", scene.vault_a, keybackup="nightly", dryRun=True))
    ready = _wait_for_reason(team_a, "keyrestore", "from-nightly", "IntegrityCheckFailed")

    forged = re.escape(f"{team_a.namespace}/nightly/") + f"({OLD}|{OLDER})"
    for refused in (message, ready["message"]):
        assert re.search(
            forged + r"/manifest\.json is unreadable: '[09]/\.\./.*' is not a snapshot id", refused
        )
    assert SNAPSHOT_ID.fullmatch(status["lastSnapshot"]["id"])
    assert scene.names("victim") == scene.victim_before


def test_a_manifest_naming_another_namespace_fails_its_restore(scene: Scene) -> None:
    ready = _wait_for_reason(scene.team_a, "keyrestore", "stolen", "IntegrityCheckFailed")

    assert (
        f"of KeyBackup {scene.team_b.namespace}/keys, not of snapshot {OLD}" in (ready["message"])
    )
    assert "whose place it is in" in ready["message"]


def _resume_run_of(scene: Scene, name: str, snapshot_id: str) -> dict[str, Any]:
    """The status once suspended KeyBackup ``name`` has run, asked to as if a run that
    wrote ``snapshot_id`` had been interrupted (what its status then records)."""
    team_a = scene.team_a
    team_a.wait_until(
        "the KeyBackup waits, suspended",
        lambda: team_a.ready_condition("keybackup", name).get("reason") == "Suspended",
    )
    generation = team_a.get("keybackup", name)["metadata"]["generation"]
    active = {"generation": generation, "trigger": "now-1", "slot": None, "snapshotId": snapshot_id}
    scene.plane.kubectl(
        "patch",
        "keybackup",
        name,
        "-n",
        team_a.namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"activeRun": active}}),
    )
    scene.plane.kubectl(
        "annotate", "keybackup", name, "-n", team_a.namespace, "kvbackup.io/backup-now=now-1"
    )
    team_a.wait_until(
        "the backup asked for runs",
        lambda: team_a.status("keybackup", name).get("lastHandledTrigger") == "now-1",
    )
    return team_a.status("keybackup", name)


def test_a_climbing_snapshot_id_patched_into_status_is_never_used(scene: Scene) -> None:
    team_a = scene.team_a
    forged = _escape("0", scene.containers["victim"].container_name, "x")

    snapshot_id = _resume_run_of(scene, "patched", forged)["lastSnapshot"]["id"]
    assert SNAPSHOT_ID.fullmatch(snapshot_id)
    written = [name for name in scene.names("team-a") if "/patched/" in name]
    assert written
    assert all(name.startswith(f"{team_a.namespace}/patched/{snapshot_id}/") for name in written)
    assert scene.names("victim") == scene.victim_before


def test_a_pack_entry_of_no_known_kind_is_not_trusted_and_its_key_is_backed_up_again(
    scene: Scene,
) -> None:
    team_a = scene.team_a

    status = _resume_run_of(scene, "resumed", RESUMED)

    assert status["lastSnapshot"]["id"] == RESUMED
    assert status["phase"] == "Succeeded"
    part = team_a.plane.kubectl(
        "get",
        "secret",
        "-n",
        team_a.namespace,
        f"resumed-{RESUMED}-m0",
        "-o",
        r"jsonpath={.data.manifest\.json}",
    )
    (key,) = json.loads(base64.b64decode(part.stdout))["keys"]
    assert (key["kind"], key["name"]) == ("key", "a-key")
    assert key["sha256"] != sha256_hex(CLAIMED)
    assert pack_secret_name("resumed", RESUMED, "dead", 0) not in key["location"]


def test_a_manifest_secret_of_junk_fails_retention_and_its_restore_naming_it(scene: Scene) -> None:
    team_a = scene.team_a
    junk = f"Secret {team_a.namespace}/in-secrets-{OLD}"
    team_a.wait_for_phase("keybackup", "in-secrets", "Succeeded")
    assert _retention_failure(team_a, "in-secrets").startswith(f"{junk} holds more than")
    team_a.apply(keyrestore("from-secrets", scene.vault_a, keybackup="in-secrets", dryRun=True))

    ready = _wait_for_reason(team_a, "keyrestore", "from-secrets", "TooLarge")

    assert ready["message"].startswith(f"{junk} holds more than")


def test_another_tenants_backup_meanwhile_succeeds_in_its_own_folder(scene: Scene) -> None:
    team_b = scene.team_b
    status = team_b.wait_for_phase("keybackup", "keys", "Succeeded")

    assert sorted(key["name"] for key in status["keys"]) == TEAM_B_KEYS
    assert all(name.startswith(f"{team_b.namespace}/keys/") for name in scene.names("team-b"))


def test_the_operator_stayed_up_small_and_inside_each_tenants_folder(scene: Scene) -> None:
    # Last in the module: what every test above made the operator do is in the record.
    for name in ("gzip-bomb", "huge-artifact", "stolen"):
        scene.team_a.wait_for_phase("keyrestore", name, "Failed")
    scene.team_b.wait_for_phase("keybackup", "keys", "Succeeded")

    assert scene.operator.running
    assert peak_rss_mib(scene.operator.process.pid) < RSS_LIMIT_MIB
    own = {
        scene.containers["team-a"].container_name: f"{scene.team_a.namespace}/",
        scene.containers["team-b"].container_name: f"{scene.team_b.namespace}/",
    }
    requests = _operator_requests(scene)
    assert requests, "the operator's requests are missing from Azurite's log"
    strays = [r for r in requests if r[1] not in own or not r[2].startswith(own[r[1]])]
    assert strays == []
    assert scene.names("victim") == scene.victim_before
