"""An operator without any Azure identity says so within seconds, in one line that names
what to configure, and never calls it a refusal by the service (AccessDenied)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.harness.controlplane import free_port
from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import keybackup, keyrestore

pytestmark = pytest.mark.integration

#: Long enough for one attempt (the identity endpoint's own retries take about five
#: seconds), far shorter than the minute and a half of the storage SDK's retries.
WITHIN_SECONDS = 30


def _without_identity(own_operator: Callable[..., Cluster], prefix: str) -> Cluster:
    """An operator whose only Azure identity, a managed identity, answers nowhere."""
    return own_operator(prefix, IDENTITY_ENDPOINT=f"http://127.0.0.1:{free_port()}/token")


def _fails_as_credential_unavailable(cluster: Cluster, kind: str, name: str) -> None:
    cluster.wait_until(
        f"{kind}/{name} fails as CredentialUnavailable",
        lambda: cluster.ready_condition(kind, name).get("reason") == "CredentialUnavailable",
        timeout=WITHIN_SECONDS,
    )
    ready = cluster.ready_condition(kind, name)
    assert ready["status"] == "False"
    assert "\n" not in ready["message"]
    assert "workload identity" in ready["message"]
    assert "credentials Secret" in ready["message"]
    assert cluster.event_count(name, "AccessDenied") == 0


def test_a_blob_restore_without_an_identity_fails_within_seconds(
    own_operator: Callable[..., Cluster],
) -> None:
    cluster = _without_identity(own_operator, "no-identity-blob")
    # The token is asked for before anything is sent, so no storage service need answer.
    source = {
        "blob": {
            "accountUrl": f"https://127.0.0.1:{free_port()}/devstoreaccount1",
            "container": "snapshots",
            "path": f"backups/{cluster.namespace}/payments-keys/20261128-010203-abcd",
        }
    }
    cluster.apply(keyrestore("from-blob", "https://payments.vault.azure.net", source=source))

    _fails_as_credential_unavailable(cluster, "keyrestore", "from-blob")


def test_a_backup_from_a_vault_without_an_identity_fails_within_seconds(
    own_operator: Callable[..., Cluster], vault: VaultUnderTest
) -> None:
    cluster = _without_identity(own_operator, "no-identity-vault")
    cluster.apply(keybackup("kv", vault.url, keys=["app-key"]))

    _fails_as_credential_unavailable(cluster, "keybackup", "kv")
