"""Key Vault's own limits, made visible before the service refuses: a key with more
versions than Key Vault backs up fails alone, with its own reason and advice, and no
backup call is made for it. Lowkey Vault has no such limit, so the refusal seen here is
the operator's own, counted from the version listing, through a proxy that counts every
request."""

from __future__ import annotations

import pytest

from tests.harness.fault_proxy import FaultProxy
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import Vault, create_keys
from tests.integration.conftest import Cluster
from tests.integration.objects import key_results, keybackup

pytestmark = pytest.mark.integration


def test_a_key_of_501_versions_fails_alone_as_too_many_versions_before_its_backup_call(
    operator: OperatorProcess, cluster: Cluster, lowkey: Lowkey, proxy: FaultProxy
) -> None:
    vault = Vault(proxy.url, lowkey.certificate)
    create_keys(vault, ["rotated"] * 501)  # 501 versions of one key
    vault.create_ec_keys(["steady", "signing"])
    assert len(vault.version_ids("rotated")) == 501

    cluster.apply(keybackup("limits", proxy.url, keys=["rotated", "steady", "signing"]))
    status = cluster.wait_for_phase("keybackup", "limits", "PartiallyFailed", "Succeeded")

    assert key_results(status) == {
        "rotated": "Failed",
        "steady": "Succeeded",
        "signing": "Succeeded",
    }
    (rotated,) = [entry for entry in status["keys"] if entry["name"] == "rotated"]
    assert rotated["reason"] == "TooManyVersions"
    assert "key rotated has 501 versions" in rotated["message"]
    assert "at most 500 versions" in rotated["message"]
    assert proxy.counts().by_operation.get("POST /keys/*/backup") == 2
