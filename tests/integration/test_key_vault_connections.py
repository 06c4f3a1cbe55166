"""How the operator talks to Key Vault: few long-lived TLS connections, whatever the trust
setting. A private CA or a TLS-inspecting proxy (``KVBACKUP_CA_BUNDLE``) must not turn
every request into a new connection."""

from __future__ import annotations

import pytest

from kvbackup.config import DEFAULT_MAX_VAULT_CALLS
from tests.harness.operator import OperatorProcess
from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import keybackup

pytestmark = pytest.mark.integration

KEYS = 200


def test_a_200_key_backup_trusting_a_ca_bundle_reuses_a_few_connections(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    vault.create_ec_keys([f"key-{index:03d}" for index in range(KEYS)])
    before = vault.forwarder.accepted

    cluster.apply(keybackup("many", vault.url))
    status = cluster.wait_for_phase("keybackup", "many", "Succeeded")

    assert status["lastRun"]["keysSucceeded"] == KEYS
    opened = vault.forwarder.accepted - before
    # About 600 requests (a listing, and per key its versions and its backup): a connection
    # per request would be hundreds; a reused pool needs at most one per key in flight (the
    # session operator runs with the default concurrency).
    assert 0 < opened <= DEFAULT_MAX_VAULT_CALLS + 4, f"{opened} connections for {KEYS} keys"
