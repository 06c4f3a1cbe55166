"""A KeyRestore with dryRun: true reads the snapshot and the vault, verifies every backup
and says per key what it would do, changing nothing; with dryRun: false it then restores,
once. Against a real Key Vault emulator, through a proxy that counts every request."""

from __future__ import annotations

import json
import time

import pytest

from tests.harness.fault_proxy import FaultProxy
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import Vault
from tests.integration.conftest import Cluster
from tests.integration.objects import key_results, keybackup, keyrestore, keys_counted

pytestmark = pytest.mark.integration


def printed_cell(cluster: Cluster, kind: str, name: str, column: str) -> str:
    """The cell under ``column`` of the object's row, as ``kubectl get`` prints it."""
    header, row = cluster.plane.kubectl("get", kind, name, "-n", cluster.namespace).stdout.split(
        "\n"
    )[:2]
    start = header.index(column)
    return row[start:].split()[0]


def entry(status: dict[str, object], name: str) -> dict[str, object]:
    keys = status["keys"]
    assert isinstance(keys, list)
    return next(item for item in keys if item["name"] == name)


def test_a_dry_run_changes_nothing_and_then_the_same_object_restores_once_when_it_is_turned_off(
    operator: OperatorProcess, cluster: Cluster, lowkey: Lowkey, proxy: FaultProxy
) -> None:
    vault = Vault(proxy.url, lowkey.certificate)
    versions = vault.create_rsa_key("card-signing", versions=3)
    vault.create_rsa_key("token-wrapping")
    vault.create_rsa_key("payroll", versions=2)
    cluster.apply(keybackup("keys", proxy.url, keys=["card-signing", "token-wrapping", "payroll"]))
    cluster.wait_for_phase("keybackup", "keys", "Succeeded")
    vault.delete_and_purge("card-signing")
    vault.delete("token-wrapping")
    before = vault.state()
    requests_before = proxy.counts().by_operation

    cluster.apply(keyrestore("preview", proxy.url, keybackup="keys", dryRun=True))
    status = cluster.wait_for_phase("keyrestore", "preview", "Succeeded")

    sent = proxy.counts().by_operation
    assert vault.state() == before
    methods = {op.split()[0] for op, n in sent.items() if n != requests_before.get(op, 0)}
    assert methods == {"GET"}, sent
    assert status["dryRun"] is True
    assert key_results(status) == {
        "card-signing": "WouldRestore",
        "token-wrapping": "WouldRecover",
        "payroll": "WouldSkip",
    }
    assert entry(status, "card-signing")["versions"] == versions
    assert entry(status, "card-signing")["reason"] == "KeyAbsent"
    assert entry(status, "payroll")["reason"] == "KeyExists"
    assert status["counts"] == keys_counted(
        wouldRestore=1, wouldRecover=1, wouldSkip=1, wouldFail=0
    )
    ready = cluster.ready_condition("keyrestore", "preview")
    assert (ready["status"], ready["reason"]) == ("True", "DryRunSucceeded")
    assert "no key was changed" in ready["message"]
    assert printed_cell(cluster, "kr", "preview", "DRY RUN") == "true"
    assert cluster.event_count("preview", "DryRunSucceeded") == 1

    cluster.plane.kubectl(
        "patch",
        "keyrestore",
        "preview",
        "-n",
        cluster.namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"dryRun": False}}),
    )
    status = cluster.wait_for_phase("keyrestore", "preview", "Succeeded")

    assert status["dryRun"] is False
    assert key_results(status) == {
        "card-signing": "Restored",
        "token-wrapping": "Recovered",
        "payroll": "Skipped",
    }
    assert status["counts"] == keys_counted(restored=1, recovered=1, skipped=1, failed=0)
    assert vault.version_ids("card-signing") == versions
    assert not vault.is_soft_deleted("token-wrapping")
    assert printed_cell(cluster, "kr", "preview", "DRY RUN") == "false"
    time.sleep(5)  # time enough for a second run, were one started
    assert cluster.event_count("preview", "RestoreStarted") == 1
    assert cluster.event_count("preview", "RestoreSucceeded") == 1
    assert key_results(cluster.status("keyrestore", "preview"))["card-signing"] == "Restored"


def test_a_dry_run_finds_an_altered_backup_and_names_the_key(
    operator: OperatorProcess, cluster: Cluster, lowkey: Lowkey, proxy: FaultProxy
) -> None:
    vault = Vault(proxy.url, lowkey.certificate)
    vault.create_rsa_key("card-signing")
    vault.create_rsa_key("token-wrapping")
    cluster.apply(keybackup("keys", proxy.url, keys=["card-signing", "token-wrapping"]))
    cluster.wait_for_phase("keybackup", "keys", "Succeeded")
    vault.delete_and_purge("card-signing")
    vault.delete_and_purge("token-wrapping")
    [pack] = cluster.secrets("kvbackup.io/keybackup=keys,kvbackup.io/role=artifact")
    cluster.plane.kubectl(
        "patch",
        "secret",
        pack["metadata"]["name"],
        "-n",
        cluster.namespace,
        "--type=merge",
        "-p",
        json.dumps({"data": {"card-signing": "YWx0ZXJlZA=="}}),
    )

    cluster.apply(keyrestore("preview", proxy.url, keybackup="keys", dryRun=True))
    status = cluster.wait_for_phase("keyrestore", "preview", "Succeeded")

    assert key_results(status) == {"card-signing": "WouldFail", "token-wrapping": "WouldRestore"}
    assert entry(status, "card-signing")["reason"] == "IntegrityCheckFailed"
    assert status["counts"]["wouldFail"] == 1
    assert not vault.exists("token-wrapping")
