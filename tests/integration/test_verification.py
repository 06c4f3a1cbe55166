"""Verification (spec.verify, kvbackup.io/verify-now): every kept snapshot of every copy
read back and checked against its manifest, and the latest compared with the vault with
reads only. With the operator as a real process, Lowkey Vault behind a proxy that counts
every request, Azurite, and the real API server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.api import VERIFY_NOW_ANNOTATION
from tests.harness.azurite import Azurite
from tests.harness.fault_proxy import FaultProxy
from tests.harness.lowkey import Lowkey
from tests.harness.vault import Vault
from tests.integration.conftest import Cluster
from tests.integration.objects import blob_destination, keybackup
from tests.integration.runs import applied, next_second
from tests.integration.test_metrics import wait_for_metrics

pytestmark = pytest.mark.integration


def verified(cluster: Cluster, name: str, value: str) -> dict[str, Any]:
    """``status.verification`` once the verification verify-now ``value`` asked for ended."""
    next_second()
    cluster.plane.kubectl(
        "annotate", "--overwrite", "keybackup", name, "-n", cluster.namespace,
        f"{VERIFY_NOW_ANNOTATION}={value}",
    )  # fmt: skip
    cluster.wait_until(
        f"verify-now value {value} of {name} is handled",
        lambda: (
            (cluster.status("keybackup", name).get("verification") or {}).get("handledTrigger")
            == value
        ),
    )
    verification: dict[str, Any] = cluster.status("keybackup", name)["verification"]
    return verification


def problems(verification: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(f["copy"], f["name"], f["problem"]) for f in verification.get("findings") or []}


async def test_verification_finds_a_deleted_blob_and_a_tampered_secret_by_name_with_reads_only(
    own_operator: Callable[..., Cluster],
    lowkey: Lowkey,
    proxy: FaultProxy,
    azurite: Azurite,
    container: ContainerClient,
) -> None:
    cluster = own_operator("verification")
    vault = Vault(proxy.url, lowkey.certificate)
    for name in ("signing", "wrapping", "tokens"):
        vault.create_rsa_key(name)
    copy = {"name": "offsite", **blob_destination(cluster, azurite, container.container_name, "b")}
    status = applied(cluster, "audited", keybackup("audited", proxy.url, copies=[copy]))
    snapshot_id = status["lastRun"]["snapshotId"]

    sound = verified(cluster, "audited", "first")

    assert (sound["result"], sound["findingsTotal"], sound["unprotectedItems"]) == ("Passed", 0, 0)
    assert sound["comparedWith"] == snapshot_id
    assert [(c["name"], c["snapshots"], c["artifacts"]) for c in sound["copies"]] == [
        ("primary", 1, 3),
        ("offsite", 1, 3),
    ]
    ours = {"namespace": cluster.namespace, "name": "audited"}
    wait_for_metrics(
        cluster,
        "the verification is exported",
        lambda s: (
            s.get("kvbackup_keybackup_verification_failing", **ours) == 0
            and s.get("kvbackup_unprotected_items", **ours) == 0
            and (s.get("kvbackup_keybackup_last_verification_timestamp_seconds", **ours) or 0) > 0
        ),
    )

    folder = f"b/{cluster.namespace}/audited/{snapshot_id}"
    await container.delete_blob(f"{folder}/keys/wrapping")
    [pack] = cluster.secrets("kvbackup.io/keybackup=audited,kvbackup.io/role=artifact")
    cluster.plane.kubectl(
        "patch", "secret", pack["metadata"]["name"], "-n", cluster.namespace,
        "--type=merge", "-p", json.dumps({"data": {"signing": "YWx0ZXJlZA=="}}),
    )  # fmt: skip
    vault.create_ec_keys(["created-since-1", "created-since-2"])
    calls_before = proxy.counts().by_operation

    damaged = verified(cluster, "audited", "second")

    assert damaged["result"] == "Failed"
    assert problems(damaged) == {
        ("primary", "signing", "ChecksumMismatch"),
        ("offsite", "wrapping", "Missing"),
    }
    assert damaged["unprotectedItems"] == 2
    assert {(u["name"], u["reason"]) for u in damaged["unprotected"]} == {
        ("created-since-1", "NotInSnapshot"),
        ("created-since-2", "NotInSnapshot"),
    }
    calls = proxy.counts().by_operation
    sent = {op for op, n in calls.items() if n != calls_before.get(op, 0)}
    assert {op.split()[0] for op in sent} == {"GET"}, sent
    assert cluster.event_count("audited", "VerificationFailed") == 1
    assert cluster.event_count("audited", "UnprotectedItems") == 1
    wait_for_metrics(
        cluster,
        "the failed verification and the unprotected items are exported",
        lambda s: (
            s.get("kvbackup_keybackup_verification_failing", **ours) == 1
            and s.get("kvbackup_unprotected_items", **ours) == 2
            and s.get("kvbackup_keybackup_unprotected_since_timestamp_seconds", **ours) is not None
        ),
    )
    assert cluster.status("keybackup", "audited")["phase"] == "Succeeded"
