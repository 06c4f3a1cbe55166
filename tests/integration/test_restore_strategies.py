"""What a KeyRestore does with each key, by the key's state in the vault and the spec's
strategy, proven against a real Key Vault emulator."""

from __future__ import annotations

import base64
import json

import pytest

from tests.harness.operator import OperatorProcess
from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import key_results, keybackup, keyrestore, keys_counted

pytestmark = pytest.mark.integration


def backed_up(cluster: Cluster, vault: VaultUnderTest, *names: str) -> dict[str, list[str]]:
    """Keys created with two versions each and backed up into KeyBackup "keys"."""
    versions = {name: vault.create_rsa_key(name, versions=2) for name in names}
    cluster.apply(keybackup("keys", vault.url, keys=list(names)))
    cluster.wait_for_phase("keybackup", "keys", "Succeeded")
    return versions


def entry(status: dict[str, object], name: str) -> dict[str, object]:
    keys = status["keys"]
    assert isinstance(keys, list)
    return next(item for item in keys if item["name"] == name)


def test_auto_recovers_a_soft_deleted_key_instead_of_restoring_it(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    versions = backed_up(cluster, vault, "signing")
    vault.delete("signing")
    assert vault.is_soft_deleted("signing")

    cluster.apply(keyrestore("undelete", vault.url, keybackup="keys", strategy="Auto"))
    status = cluster.wait_for_phase("keyrestore", "undelete", "Succeeded")

    assert key_results(status) == {"signing": "Recovered"}
    assert status["counts"] == keys_counted(restored=0, recovered=1, skipped=0, failed=0)
    assert vault.version_ids("signing") == versions["signing"]
    assert not vault.is_soft_deleted("signing")


def test_restore_only_with_purge_deleted_keys_purges_a_soft_deleted_key_and_restores_it(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    versions = backed_up(cluster, vault, "signing")
    vault.delete("signing")

    cluster.apply(
        keyrestore(
            "purge-first",
            vault.url,
            keybackup="keys",
            strategy="RestoreOnly",
            purgeDeletedKeys=True,
        )
    )
    status = cluster.wait_for_phase("keyrestore", "purge-first", "Succeeded")

    assert key_results(status) == {"signing": "Restored"}
    assert vault.version_ids("signing") == versions["signing"]


def test_restore_only_without_purge_refuses_a_soft_deleted_key_and_leaves_it_deleted(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    backed_up(cluster, vault, "signing")
    vault.delete("signing")

    cluster.apply(keyrestore("no-purge", vault.url, keybackup="keys", strategy="RestoreOnly"))
    status = cluster.wait_for_phase("keyrestore", "no-purge", "Failed")

    assert entry(status, "signing")["reason"] == "KeySoftDeleted"
    assert vault.is_soft_deleted("signing")


def test_recover_only_fails_a_key_that_is_not_soft_deleted_with_its_reason(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    backed_up(cluster, vault, "signing", "wrapping")
    vault.delete("signing")
    vault.delete_and_purge("wrapping")

    cluster.apply(keyrestore("recover", vault.url, keybackup="keys", strategy="RecoverOnly"))
    status = cluster.wait_for_phase("keyrestore", "recover", "PartiallyFailed")

    assert key_results(status) == {"signing": "Recovered", "wrapping": "Failed"}
    assert entry(status, "wrapping")["reason"] == "KeyNotDeleted"
    assert "nothing to recover" in str(entry(status, "wrapping")["message"])
    assert not vault.exists("wrapping")
    assert cluster.ready_condition("keyrestore", "recover")["reason"] == "PartiallyFailed"


@pytest.mark.parametrize(
    ("on_conflict", "phase", "result"),
    [("Skip", "Succeeded", "Skipped"), ("Fail", "Failed", "Failed")],
)
def test_an_active_key_is_left_untouched_whether_the_conflict_is_skipped_or_failed(
    operator: OperatorProcess,
    cluster: Cluster,
    vault: VaultUnderTest,
    on_conflict: str,
    phase: str,
    result: str,
) -> None:
    backed_up(cluster, vault, "signing")
    vault.create_rsa_key("signing")  # a third version, made after the backup
    current = vault.version_ids("signing")

    cluster.apply(keyrestore("over", vault.url, keybackup="keys", onConflict=on_conflict))
    status = cluster.wait_for_phase("keyrestore", "over", phase)

    assert key_results(status) == {"signing": result}
    assert entry(status, "signing")["reason"] == "KeyExists"
    assert vault.version_ids("signing") == current


def test_an_altered_artifact_is_refused_by_its_checksum_and_the_other_keys_are_restored(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest
) -> None:
    versions = backed_up(cluster, vault, "signing", "wrapping")
    for name in versions:
        vault.delete_and_purge(name)
    packs = cluster.secrets("kvbackup.io/keybackup=keys,kvbackup.io/role=artifact")
    tampered = next(s for s in packs if "signing" in s["data"])
    data = bytearray(base64.b64decode(tampered["data"]["signing"]))
    data[len(data) // 2] ^= 0xFF
    cluster.plane.kubectl(
        "patch",
        "secret",
        tampered["metadata"]["name"],
        "-n",
        cluster.namespace,
        "--type=merge",
        "-p",
        json.dumps({"data": {"signing": base64.b64encode(bytes(data)).decode()}}),
    )

    cluster.apply(keyrestore("verify", vault.url, keybackup="keys"))
    status = cluster.wait_for_phase("keyrestore", "verify", "PartiallyFailed")

    assert key_results(status) == {"signing": "Failed", "wrapping": "Restored"}
    assert entry(status, "signing")["reason"] == "IntegrityCheckFailed"
    assert "sha256" in str(entry(status, "signing")["message"])
    assert not vault.exists("signing")
    assert vault.version_ids("wrapping") == versions["wrapping"]
