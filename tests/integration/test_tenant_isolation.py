"""Tenants: the operator's own identity is an admin's grant, and references stay in-namespace."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient

from tests.harness import identity
from tests.harness.azurite import Azurite
from tests.harness.controlplane import ControlPlane
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.integration.conftest import Cluster, Operators, VaultUnderTest, new_namespaces
from tests.integration.objects import key_results, keybackup, keyrestore

pytestmark = pytest.mark.integration


@pytest.fixture
def tenants(control_plane: ControlPlane) -> tuple[Cluster, Cluster]:
    team_a, team_b = new_namespaces(control_plane, "tenant-a", "tenant-b")
    return team_a, team_b


@pytest.fixture
def tenant_operator(
    tenants: tuple[Cluster, Cluster], vault: VaultUnderTest, operators: Operators
) -> OperatorProcess:
    team_a, team_b = tenants
    rules = [{"namespaces": [team_a.namespace], "vaultUrls": [vault.url]}]
    return operators.start(team_a.namespace, team_b.namespace, identity_rules=rules)


def test_only_allowed_namespaces_may_use_the_operators_identity_for_a_vault(
    tenant_operator: OperatorProcess, tenants: tuple[Cluster, Cluster], vault: VaultUnderTest
) -> None:
    team_a, team_b = tenants
    versions = vault.create_rsa_key("app-key", versions=2)
    team_a.apply(keybackup("keys", vault.url, keys=["app-key"]))
    team_b.apply(keybackup("keys", vault.url, keys=["app-key"]))

    team_b.wait_until(
        "team-b is refused by policy",
        lambda: team_b.ready_condition("keybackup", "keys").get("reason") == "IdentityNotAllowed",
    )
    assert team_b.status("keybackup", "keys")["phase"] == "Failed"
    assert "BackupStarted" in {e["reason"] for e in team_b.events_for("keys")}
    # team-a is allowed: its backup succeeds end to end.
    status = team_a.wait_for_phase("keybackup", "keys", "Succeeded")
    assert status["keys"][0]["versionCount"] == len(versions)
    assert (
        team_b.plane.kubectl(
            "get",
            "secrets",
            "-n",
            team_b.namespace,
            "-l",
            "kvbackup.io/keybackup=keys",
            "-o",
            "name",
        ).stdout.split()
        == []
    )


def test_a_backtracking_name_pattern_in_one_namespace_does_not_hold_up_another(
    operator: OperatorProcess, control_plane: ControlPlane, vault: VaultUnderTest
) -> None:
    # One event loop serves every namespace; a backtracking engine would take 2**126 steps
    # to refuse the second name, and the neighbour's backup would wait as long.
    vault.create_ec_keys(["a" * 127, "a" * 126 + "-", "app-key"])
    team_a, team_b = (Cluster(control_plane, f"t-{uuid.uuid4().hex[:10]}") for _ in "ab")
    greedy = json.loads(keybackup("greedy", vault.url))
    greedy["spec"]["keys"] = {"selector": {"namePattern": "(a+)+$"}}
    for team in (team_a, team_b):
        control_plane.kubectl("create", "namespace", team.namespace)
    team_a.apply(json.dumps(greedy))
    team_b.apply(keybackup("neighbour", vault.url, keys=["app-key"]))

    neighbour = team_b.wait_for_phase("keybackup", "neighbour", "Succeeded", timeout=60)
    chosen = team_a.wait_for_phase("keybackup", "greedy", "Succeeded", timeout=60)

    assert [key["name"] for key in neighbour["keys"]] == ["app-key"]
    assert [key["name"] for key in chosen["keys"]] == ["a" * 127]


@pytest.mark.parametrize(
    ("source", "field"),
    [
        pytest.param(
            {"keyBackupRef": {"name": "keys", "namespace": "team-a"}},
            "spec.source.keyBackupRef.namespace",
            id="another namespace's KeyBackup",
        ),
        pytest.param(
            {"keyBackupRef": {"name": "keys"}, "credentials": {"name": "x"}},
            "spec.source.credentials",
            id="a misplaced credentials reference",
        ),
    ],
)
def test_a_keyrestore_cannot_reference_another_namespace(
    control_plane: ControlPlane, tenants: tuple[Cluster, Cluster], source: object, field: str
) -> None:
    _, team_b = tenants
    manifest = json.dumps(
        {
            "apiVersion": "kvbackup.io/v1alpha1",
            "kind": "KeyRestore",
            "metadata": {"name": "steal"},
            "spec": {
                "vaultUrl": "https://v.vault.azure.net",
                "source": source,
                "credentials": {"name": "team-a-sp", "namespace": "team-a"},
            },
        }
    )
    result = control_plane.kubectl(
        "apply", "-n", team_b.namespace, "-f", "-", input=manifest, check=False
    )
    assert result.returncode != 0
    assert f'unknown field "{field}"' in result.stderr
    assert 'unknown field "spec.credentials.namespace"' in result.stderr


def test_without_rules_the_identity_is_refused_with_the_rule_that_would_allow_it(
    control_plane: ControlPlane, vault: VaultUnderTest, operators: Operators
) -> None:
    [cluster] = new_namespaces(control_plane, "tenant-c")
    vault.create_rsa_key("app-key")
    # An empty setting is the operator's default, as when it is not set at all.
    unset = operators.start(cluster.namespace, settings={"KVBACKUP_DEFAULT_IDENTITY_RULES": ""})
    try:
        cluster.apply(keybackup("keys", vault.url, keys=["app-key"]))
        # The Event is posted after the status is written: both before the operator stops.
        cluster.wait_until(
            "the KeyBackup is refused by the identity rules, in status and in an Event",
            lambda: (
                cluster.ready_condition("keybackup", "keys").get("reason") == "IdentityNotAllowed"
                and cluster.event_count("keys", "IdentityNotAllowed") > 0
            ),
        )
    finally:
        unset.stop()
    message = cluster.ready_condition("keybackup", "keys")["message"]
    rule = {"namespaces": [cluster.namespace], "vaultUrls": [vault.url]}
    assert f"add the rule {json.dumps(rule)} to KVBACKUP_DEFAULT_IDENTITY_RULES" in message
    (event,) = [e for e in cluster.events_for("keys") if e["reason"] == "IdentityNotAllowed"]
    assert event["type"] == "Warning"
    assert json.dumps(rule) in event["message"]
    assert cluster.secrets("kvbackup.io/keybackup=keys") == []

    # The admin adds exactly that rule; the next run is allowed.
    allowed = operators.start(cluster.namespace, identity_rules=[rule])
    try:
        control_plane.kubectl(
            "annotate", "kb", "keys", "-n", cluster.namespace, "kvbackup.io/backup-now=1"
        )
        status = cluster.wait_for_phase("keybackup", "keys", "Succeeded")
    finally:
        allowed.stop()
    assert [key["name"] for key in status["keys"]] == ["app-key"]


# --- a container shared by tenants, reached with the operator's own identity ---------------


async def _blob_names(container: ContainerClient) -> list[str]:
    return sorted([blob.name async for blob in container.list_blobs()])


async def test_a_tenant_restores_another_tenants_snapshot_from_a_oauth_container_only_if_granted(
    tenants: tuple[Cluster, Cluster],
    vault: VaultUnderTest,
    oauth_azurite: Azurite,
    token_endpoint: str,
    oauth_container: ContainerClient,
    operators: Operators,
    lowkey: Lowkey,
    tmp_path: Path,
) -> None:
    team_a, team_b = tenants
    blob = {
        "accountUrl": oauth_azurite.blob_endpoint,
        "container": oauth_container.container_name,
    }
    container_url = f"{oauth_azurite.blob_endpoint}/{oauth_container.container_name}"
    # Both teams may use the operator's identity for the vault and the shared container.
    rules: list[dict[str, Any]] = [
        {
            "namespaces": [team_a.namespace, team_b.namespace],
            "vaultUrls": [vault.url],
            "blobUrls": [container_url],
        }
    ]
    watched = (team_a.namespace, team_b.namespace)
    own_identity = identity.operator_env(token_endpoint, oauth_azurite, lowkey, tmp_path)
    vault.create_rsa_key("team-b-key", versions=2)
    team_b.apply(keybackup("keys", vault.url, keys=["team-b-key"], destination={"blob": blob}))

    operator = operators.start(*watched, identity_rules=rules, settings=own_identity)
    try:
        location = team_b.wait_for_phase("keybackup", "keys", "Succeeded")["lastSnapshot"][
            "location"
        ]
        stored = await _blob_names(oauth_container)
        # As team-b's status shows it, and as team-a could guess it: the folder's URL.
        peek = {"blob": {**blob, "path": location}}
        team_a.apply(keyrestore("peek", vault.url, source=peek, dryRun=True))
        team_a.wait_until(
            "team-a's restore of team-b's snapshot is refused, in status and in an Event",
            lambda: (
                team_a.ready_condition("keyrestore", "peek").get("reason") == "SourceNotPermitted"
                and team_a.event_count("peek", "SourceNotPermitted") > 0
            ),
        )
    finally:
        operator.stop()

    refused = team_a.get("keyrestore", "peek")
    assert refused["status"]["phase"] == "Failed"
    assert "team-b-key" not in json.dumps(refused)  # not even the snapshot's key names
    message = team_a.ready_condition("keyrestore", "peek")["message"]
    grant = {
        "namespaces": [team_a.namespace],
        "vaultUrls": [],
        "blobUrls": [container_url],
        "restoreFromNamespaces": [team_b.namespace],
    }
    assert f"add the rule {json.dumps(grant)} to KVBACKUP_DEFAULT_IDENTITY_RULES" in message
    (event,) = [e for e in team_a.events_for("peek") if e["reason"] == "SourceNotPermitted"]
    assert event["type"] == "Warning"
    assert await _blob_names(oauth_container) == stored

    # The admin adds exactly that rule: now team-a may read team-b's snapshot.
    granted = operators.start(*watched, identity_rules=[*rules, grant], settings=own_identity)
    try:
        team_a.apply(keyrestore("granted-peek", vault.url, source=peek, dryRun=True))
        status = team_a.wait_for_phase("keyrestore", "granted-peek", "Succeeded")
    finally:
        granted.stop()
    assert key_results(status) == {"team-b-key": "WouldSkip"}


# --- credentials Secrets opt in ----------------------------------------------------------


def test_a_secret_without_the_credentials_label_is_not_used_as_credentials(
    tenant_operator: OperatorProcess, tenants: tuple[Cluster, Cluster], vault: VaultUnderTest
) -> None:
    team_a, _ = tenants
    sentinel = "s3cr3t-" + uuid.uuid4().hex
    # Another application's service principal, and a connection string: neither labelled.
    team_a.plane.kubectl(
        "create",
        "secret",
        "generic",
        "app-sp",
        "-n",
        team_a.namespace,
        "--from-literal=tenantId=tenant",
        "--from-literal=clientId=client",
        f"--from-literal=clientSecret={sentinel}",
    )
    team_a.plane.kubectl(
        "create",
        "secret",
        "generic",
        "app-storage",
        "-n",
        team_a.namespace,
        f"--from-literal=connectionString=AccountName=x;AccountKey={sentinel}",
    )
    team_a.apply(keybackup("by-sp", vault.url, keys=["k"], credentials={"name": "app-sp"}))
    storage = {
        "accountUrl": "http://127.0.0.1:1/devstoreaccount1",
        "container": "backups",
        "credentials": {"name": "app-storage"},
    }
    team_a.apply(keybackup("by-storage", vault.url, keys=["k"], destination={"blob": storage}))

    refused = {"by-sp": "app-sp", "by-storage": "app-storage"}
    team_a.wait_until(
        "both are refused: their Secrets are not labelled as credentials",
        lambda: all(
            team_a.ready_condition("keybackup", name).get("reason") == "CredentialsNotLabelled"
            for name in refused
        ),
    )
    for name, secret in refused.items():
        message = team_a.ready_condition("keybackup", name)["message"]
        assert (
            f"kubectl label secret {secret} -n {team_a.namespace} kvbackup.io/credentials=true"
            in message
        )
        assert sentinel not in json.dumps(team_a.get("keybackup", name))
        assert sentinel not in json.dumps(team_a.events_for(name))
    assert vault.forwarder.accepted == 0
