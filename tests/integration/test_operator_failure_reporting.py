"""The operator, as a real process, reports failures it cannot get past in status and Events.

None of these tests reach a Key Vault: they prove what happens before and around the
vault (unreachable vaults, missing or broken references, triggers), against the real
API server.
"""

from __future__ import annotations

import base64
import json

import pytest

from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api.keybackup import KeyBackupRef
from tests.harness.controlplane import free_port
from tests.harness.operator import OperatorProcess
from tests.integration.conftest import Cluster, store_snapshot
from tests.integration.objects import credentials_secret

pytestmark = pytest.mark.integration


def _closed_vault_url() -> str:
    return f"https://127.0.0.1:{free_port()}"


def _keybackup(name: str, vault_url: str, extra: str = "") -> str:
    return (
        f"apiVersion: kvbackup.io/v1alpha1\nkind: KeyBackup\nmetadata: {{name: {name}}}\n"
        f"spec:\n  vaultUrl: {vault_url}\n  keys: {{names: [app-key]}}\n{extra}"
    )


def _keyrestore(name: str, vault_url: str, keybackup: str) -> str:
    return (
        f"apiVersion: kvbackup.io/v1alpha1\nkind: KeyRestore\nmetadata: {{name: {name}}}\n"
        f"spec:\n  vaultUrl: {vault_url}\n  source: {{keyBackupRef: {{name: {keybackup}}}}}\n"
    )


def _reasons(cluster: Cluster, name: str) -> set[str]:
    return {event["reason"] for event in cluster.events_for(name)}


def test_an_unreachable_vault_sets_ready_false_with_the_reason_and_is_retried(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    cluster.apply(_keybackup("nightly", _closed_vault_url()))

    cluster.wait_until(
        "Ready=False with reason VaultUnreachable",
        lambda: cluster.ready_condition("keybackup", "nightly").get("reason") == "VaultUnreachable",
    )
    condition = cluster.ready_condition("keybackup", "nightly")
    assert condition["status"] == "False"
    assert condition["observedGeneration"] == 1
    assert "retrying in" in condition["message"]
    assert cluster.status("keybackup", "nightly")["phase"] == "Failed"
    # What users script against: kubectl wait on the Ready condition.
    waited = cluster.plane.kubectl(
        "wait",
        "--for=condition=Ready=false",
        "--timeout=10s",
        "kb/nightly",
        "-n",
        cluster.namespace,
    )
    assert "condition met" in waited.stdout
    not_ready = cluster.plane.kubectl(
        "wait",
        "--for=condition=Ready",
        "--timeout=2s",
        "kb/nightly",
        "-n",
        cluster.namespace,
        check=False,
    )
    assert not_ready.returncode != 0
    cluster.wait_until(
        "a second attempt is reported",
        lambda: (
            sum(
                e.get("count", 1)
                for e in cluster.events_for("nightly")
                if e["reason"] == "VaultUnreachable"
            )
            >= 2
        ),
    )
    assert operator.running


def test_a_missing_credentials_secret_is_reported_and_waited_for(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    cluster.apply(_keybackup("with-sp", _closed_vault_url(), "  credentials: {name: sp}\n"))
    cluster.wait_until(
        "Ready=False with reason CredentialsNotFound",
        lambda: (
            cluster.ready_condition("keybackup", "with-sp").get("reason") == "CredentialsNotFound"
        ),
    )
    assert (
        "credentials Secret sp not found"
        in cluster.ready_condition("keybackup", "with-sp")["message"]
    )

    cluster.apply(credentials_secret("sp", tenantId="t", clientId="c"))
    cluster.wait_until(
        "the incomplete Secret is named as the problem",
        lambda: (
            cluster.ready_condition("keybackup", "with-sp").get("reason") == "InvalidCredentials"
        ),
    )
    condition = cluster.ready_condition("keybackup", "with-sp")
    assert "lacks clientSecret" in condition["message"]
    assert cluster.status("keybackup", "with-sp")["observedGeneration"] == 1


def test_credentials_never_appear_in_status_events_or_logs(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    sentinel = "s3cr3t-" + base64.b32encode(b"kvbackup").decode()
    cluster.apply(
        credentials_secret("sp", tenantId="tenant", clientId="client", clientSecret=sentinel)
    )
    cluster.apply(_keybackup("guarded", _closed_vault_url(), "  credentials: {name: sp}\n"))
    cluster.wait_until(
        "the run fails on the unreachable vault",
        lambda: cluster.ready_condition("keybackup", "guarded").get("reason") == "VaultUnreachable",
    )
    assert sentinel not in json.dumps(cluster.get("keybackup", "guarded"))
    assert sentinel not in json.dumps(cluster.events_for("guarded"))
    assert sentinel not in operator.log()


def test_a_permanent_failure_is_not_retried_until_the_user_asks(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    cluster.broken_credentials_secret()
    manifest = _keybackup("once", _closed_vault_url(), "  credentials: {name: broken}\n")
    cluster.apply(manifest)
    cluster.wait_until(
        "the permanent failure is reported",
        lambda: cluster.status("keybackup", "once").get("observedGeneration") == 1,
    )
    attempts = cluster.event_count("once", "BackupStarted")

    cluster.apply(manifest)  # a GitOps tool re-applying the unchanged object
    cluster.plane.kubectl(
        "annotate",
        "keybackup",
        "once",
        "-n",
        cluster.namespace,
        "argocd.argoproj.io/tracking-id=app:kvbackup.io/KeyBackup:once",
    )
    cluster.plane.kubectl(
        "annotate", "keybackup", "once", "-n", cluster.namespace, "kvbackup.io/backup-now=first"
    )
    cluster.wait_until(
        "the backup-now value is handled",
        lambda: cluster.status("keybackup", "once").get("lastHandledTrigger") == "first",
    )
    assert cluster.event_count("once", "BackupStarted") == attempts + 1


def test_a_name_pattern_too_large_for_re2_fails_as_an_invalid_spec_naming_the_field(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    # Short enough for the schema, and valid RE2 syntax; compiled, it is megabytes.
    selector = "  keys: {selector: {namePattern: '(\\pL{100}){10}'}}\n"
    cluster.apply(
        _keybackup("huge-pattern", _closed_vault_url()).replace(
            "  keys: {names: [app-key]}\n", selector
        )
    )

    status = cluster.wait_for_phase("keybackup", "huge-pattern", "Failed")

    ready = cluster.ready_condition("keybackup", "huge-pattern")
    assert ready["reason"] == "InvalidSpec"
    assert ready["message"].startswith("spec.keys.selector.namePattern is not a regular")
    assert "pattern too large" in ready["message"]
    assert status["observedGeneration"] == 1
    assert "InvalidSpec" in _reasons(cluster, "huge-pattern")
    assert operator.running


async def test_a_restore_from_a_missing_keybackup_fails_and_is_retried_when_the_source_appears(
    operator: OperatorProcess, cluster: Cluster, secret_store: SecretSnapshotStore
) -> None:
    cluster.apply(_keyrestore("bring-back", _closed_vault_url(), "gone"))
    cluster.wait_until(
        "Failed with reason SourceNotFound",
        lambda: (
            cluster.ready_condition("keyrestore", "bring-back").get("reason") == "SourceNotFound"
        ),
    )
    assert cluster.status("keyrestore", "bring-back")["phase"] == "Failed"
    assert "SourceNotFound" in _reasons(cluster, "bring-back")

    await store_snapshot(
        secret_store,
        KeyBackupRef(cluster.namespace, "gone", ""),
        "20261128-000000-abcd",
        {"app-key": b"bytes"},
    )
    cluster.wait_until(
        "the retried restore gets past the source and on to the vault",
        lambda: (
            cluster.ready_condition("keyrestore", "bring-back").get("reason") == "VaultUnreachable"
        ),
    )
    assert "RestoreStarted" in _reasons(cluster, "bring-back")


async def test_a_restore_of_a_snapshot_id_that_does_not_exist_names_it(
    operator: OperatorProcess, cluster: Cluster, secret_store: SecretSnapshotStore
) -> None:
    await store_snapshot(
        secret_store,
        KeyBackupRef(cluster.namespace, "nightly", ""),
        "20261128-000000-abcd",
        {"app-key": b"bytes"},
    )
    cluster.apply(
        _keyrestore("pinned", _closed_vault_url(), "nightly").replace(
            "{name: nightly}", "{name: nightly, snapshot: 20261127-000000-ffff}"
        )
    )
    cluster.wait_until(
        "Failed with reason SourceNotFound",
        lambda: cluster.ready_condition("keyrestore", "pinned").get("reason") == "SourceNotFound",
    )
    assert (
        "no complete snapshot 20261127-000000-ffff"
        in cluster.ready_condition("keyrestore", "pinned")["message"]
    )
