"""Key Vault can refuse one key to an identity it otherwise serves (role assignments
scoped to keys). Through a proxy that answers 403 for chosen keys, as Key Vault does
(the emulator has no RBAC), a refused key fails alone with its reason, and a vault that
refuses every key fails the run as a vault-wide denial does, to be tried again."""

from __future__ import annotations

import pytest

from tests.harness.fault_proxy import FaultProxy, Faults
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import Vault
from tests.integration.conftest import Cluster
from tests.integration.objects import keybackup, keyrestore

pytestmark = pytest.mark.integration

KEYS = ["app-key", "payroll-key", "web-key"]


def test_a_key_the_vault_refuses_fails_alone_in_a_backup_and_a_restore(
    operator: OperatorProcess, cluster: Cluster, lowkey: Lowkey, proxy: FaultProxy
) -> None:
    vault = Vault(proxy.url, lowkey.certificate)
    vault.create_ec_keys(KEYS)
    proxy.set_faults(Faults(forbidden_keys=frozenset({"payroll-key"})))

    cluster.apply(keybackup("scoped", proxy.url, keys=KEYS))
    status = cluster.wait_for_phase("keybackup", "scoped", "PartiallyFailed")

    failed = {entry["name"]: entry for entry in status["keys"] if entry["result"] == "Failed"}
    assert list(failed) == ["payroll-key"]
    assert failed["payroll-key"]["reason"] == "AccessDenied"
    assert "not authorized" in failed["payroll-key"]["message"]
    assert status["lastSnapshot"]["keys"] == 2
    assert cluster.event_count("scoped", "BackupStarted") == 1

    # Restoring names no key in its URL, so a key's own scope shows in what follows a
    # refused restore: web-key, soft-deleted, is looked up, and that is refused.
    vault.delete_and_purge("app-key")
    vault.delete("web-key")
    proxy.set_faults(Faults(forbidden_keys=frozenset({"web-key"})))
    cluster.apply(keyrestore("scoped-restore", proxy.url, keybackup="scoped"))
    restored = cluster.wait_for_phase("keyrestore", "scoped-restore", "PartiallyFailed")

    results = {entry["name"]: (entry["result"], entry.get("reason")) for entry in restored["keys"]}
    assert results == {"app-key": ("Restored", "Restored"), "web-key": ("Failed", "AccessDenied")}


def test_a_vault_that_refuses_every_key_fails_the_run_and_tries_again(
    operator: OperatorProcess, cluster: Cluster, lowkey: Lowkey, proxy: FaultProxy
) -> None:
    Vault(proxy.url, lowkey.certificate).create_ec_keys(KEYS)
    proxy.set_faults(Faults(forbidden_keys=frozenset(KEYS)))

    cluster.apply(keybackup("denied", proxy.url, keys=KEYS))
    cluster.wait_until(
        "the run fails as AccessDenied",
        lambda: cluster.ready_condition("keybackup", "denied").get("reason") == "AccessDenied",
    )

    status = cluster.status("keybackup", "denied")
    ready = cluster.ready_condition("keybackup", "denied")
    assert status["phase"] == "Failed"
    assert "refused every item of the run (3)" in ready["message"]
    assert "retrying in" in ready["message"]
    assert "lastSnapshot" not in status
