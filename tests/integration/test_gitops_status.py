"""Flux, Argo CD and `kubectl wait` read the true state of the real operator's objects.

Each object is brought into one state by the operator as a real process, read back with
`kubectl get -o json`, and judged by kstatus (cli-utils' status.Compute, which Flux and
kpt use, through hack/kstatus) and by Argo CD's own Lua runner with our health checks
(through hack/argocd-health).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.controlplane import ControlPlane
from tests.harness.fault_proxy import FaultProxy, Faults
from tests.harness.gitops import (
    argocd_health,
    argocd_health_binary,
    health_script,
    kstatus,
    kstatus_binary,
)
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import Vault, create_certificate, create_secrets
from tests.integration.conftest import Cluster, VaultUnderTest, on_the_terminal
from tests.integration.objects import (
    EVERY,
    item_results,
    key_results,
    keybackup,
    keyrestore,
    vault_backup,
)

pytestmark = pytest.mark.integration

#: A finalizer of the test's own, which keeps a deleted object readable.
HOLD = "example.com/hold"


@dataclass(frozen=True)
class Tools:
    kstatus: Path
    argocd: Path

    def judge(self, document: dict[str, Any]) -> tuple[str, str]:
        """kstatus' verdict and Argo CD's health of ``document``."""
        (verdict,) = kstatus(self.kstatus, [document])
        health = argocd_health(self.argocd, health_script(document["kind"]), document)
        return verdict.status, health.status


@pytest.fixture(scope="module")
def tools(pytestconfig: pytest.Config) -> Tools:
    with on_the_terminal(pytestconfig):
        return Tools(kstatus_binary(), argocd_health_binary())


def _conditions(document: dict[str, Any]) -> dict[str, tuple[str, str, int]]:
    """Each condition's status, reason and generation, by type."""
    return {
        c["type"]: (c["status"], c["reason"], c["observedGeneration"])
        for c in document["status"].get("conditions", [])
    }


def _settled(cluster: Cluster, kind: str, name: str, *phases: str) -> dict[str, Any]:
    cluster.wait_for_phase(kind, name, *phases)
    return cluster.get(kind, name)


# --- before the operator writes anything --------------------------------------------------


def test_an_object_just_applied_reads_as_in_progress_before_the_operator_has_looked(
    control_plane: ControlPlane, tools: Tools
) -> None:
    # No operator watches this namespace: what Flux and Argo CD see right after an apply.
    idle = Cluster(control_plane, f"idle-{uuid.uuid4().hex[:8]}")
    control_plane.kubectl("create", "namespace", idle.namespace)
    vault = "https://idle.vault.azure.net"
    idle.apply(keybackup("fresh", vault, keys=["app-key"]))
    idle.apply(keyrestore("fresh", vault, keybackup="fresh"))

    for kind in ("KeyBackup", "KeyRestore"):
        document = idle.get(kind.lower(), "fresh")
        assert document["status"] == {"observedGeneration": -1}
        assert tools.judge(document) == ("InProgress", "Progressing")


# --- the shared operator's objects, state by state ------------------------------------------


def test_a_running_backup_is_reconciling(
    operator: OperatorProcess, cluster: Cluster, lowkey: Lowkey, proxy: FaultProxy, tools: Tools
) -> None:
    Vault(proxy.url, lowkey.certificate).create_ec_keys(["app-key"])
    proxy.set_faults(Faults(stall=True))  # the run waits on the vault until released
    try:
        cluster.apply(keybackup("running", proxy.url, keys=["app-key"]))
        cluster.wait_until(
            "the backup runs",
            lambda: cluster.status("keybackup", "running").get("phase") == "Running",
        )
        document = cluster.get("keybackup", "running")
    finally:
        proxy.set_faults(Faults())
        proxy.release_stalled()

    assert _conditions(document) == {
        "Ready": ("False", "BackupRunning", 1),
        "Reconciling": ("True", "BackupRunning", 1),
        "Stalled": ("False", "BackupRunning", 1),
    }
    assert tools.judge(document) == ("InProgress", "Progressing")
    cluster.wait_for_phase("keybackup", "running", "Succeeded")


def test_a_succeeded_one_shot_backup_and_its_restore_are_current_and_healthy(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, tools: Tools
) -> None:
    vault.create_rsa_key("app-key")
    cluster.apply(keybackup("done", vault.url, keys=["app-key"]))
    backup = _settled(cluster, "keybackup", "done", "Succeeded")
    cluster.apply(keyrestore("back", vault.url, keybackup="done"))
    restore = _settled(cluster, "keyrestore", "back", "Succeeded")

    for document in (backup, restore):
        assert _conditions(document) == {
            "Ready": ("True", "Succeeded", 1),
            "Reconciling": ("False", "Succeeded", 1),
            "Stalled": ("False", "Succeeded", 1),
        }
        assert tools.judge(document) == ("Current", "Healthy")
    # `kubectl get -o wide` shows Ready's message.
    wide = cluster.plane.kubectl("get", "kb", "done", "-n", cluster.namespace, "-o", "wide")
    assert "MESSAGE" in wide.stdout
    assert "backed up 1 of 1 key(s) into snapshot" in wide.stdout


def _one_of_each_kind(vault: VaultUnderTest) -> None:
    """Key app-key, secret db-password and certificate api-tls, whose key and secret Key
    Vault keeps beside it (managed, under its name)."""
    vault.create_rsa_key("app-key")
    create_secrets(vault, ["db-password"])
    create_certificate(vault, "api-tls")


def test_a_backup_of_every_key_is_healthy_and_says_it_left_out_a_certificates_key(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, tools: Tools
) -> None:
    _one_of_each_kind(vault)
    cluster.apply(keybackup("keys-only", vault.url))
    document = _settled(cluster, "keybackup", "keys-only", "Succeeded")

    status = document["status"]
    assert key_results(status) == {"app-key": "Succeeded"}
    left_out = status["lastRun"]["leftOut"]
    assert {k: v for k, v in left_out.items() if k != "message"} == {"keys": 1}
    assert "select the certificate in spec.certificates" in left_out["message"]
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready["message"].endswith(left_out["message"])
    assert "backed up 1 of 1 key(s) into snapshot" in ready["message"]
    assert tools.judge(document) == ("Current", "Healthy")
    (event,) = [e for e in cluster.events_for("keys-only") if e["reason"] == "BackupSucceeded"]
    assert event["message"] == ready["message"]


def test_a_backup_of_every_kind_and_a_dry_run_of_a_subset_are_current_and_healthy(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, tools: Tools
) -> None:
    _one_of_each_kind(vault)
    everything = vault_backup("whole", vault.url, keys=EVERY, secrets=EVERY, certificates=EVERY)
    cluster.apply(everything)
    backup = _settled(cluster, "keybackup", "whole", "Succeeded")
    subset = {"secrets": ["db-password"], "certificates": ["api-tls"]}
    cluster.apply(keyrestore("preview", vault.url, keybackup="whole", dryRun=True, **subset))
    preview = _settled(cluster, "keyrestore", "preview", "Succeeded")

    status = backup["status"]
    # The certificate's own key and secret are in its backup, not backed up alone.
    assert [item_results(status, plural) for plural in ("keys", "secrets", "certificates")] == [
        {"app-key": "Succeeded"},
        {"db-password": "Succeeded"},
        {"api-tls": "Succeeded"},
    ]
    assert "leftOut" not in status["lastRun"]
    assert (status["lastSnapshot"]["secrets"], status["lastSnapshot"]["certificates"]) == (1, 1)
    counts = preview["status"]["counts"]
    assert (counts["wouldSkip"], counts["secrets"]["wouldSkip"]) == (2, 1)
    assert "keys" not in counts
    assert "keys" not in preview["status"]
    (ready,) = [c for c in preview["status"]["conditions"] if c["type"] == "Ready"]
    assert ready["message"] == (
        "dry run: would restore 0, recover 0, skip 2 (1 secret, 1 certificate), fail 0; "
        "nothing was changed"
    )
    for document in (backup, preview):
        assert tools.judge(document) == ("Current", "Healthy")


def test_a_partially_failed_backup_is_stalled_naming_the_missing_key(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, tools: Tools
) -> None:
    vault.create_rsa_key("app-key")
    cluster.apply(keybackup("partial", vault.url, keys=["app-key", "gone-key"]))
    document = _settled(cluster, "keybackup", "partial", "PartiallyFailed")

    assert _conditions(document)["Stalled"] == ("True", "PartiallyFailed", 1)
    (stalled,) = [c for c in document["status"]["conditions"] if c["type"] == "Stalled"]
    assert stalled["message"].endswith("; gone-key: Failed (NotFound)")
    assert tools.judge(document) == ("Failed", "Degraded")


def test_an_invalid_spec_is_stalled(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, tools: Tools
) -> None:
    cluster.apply(keybackup("invalid", vault.url, keys=["app-key"], timeZone="Nowhere/Atlantis"))
    document = _settled(cluster, "keybackup", "invalid", "Failed")

    assert _conditions(document)["Stalled"] == ("True", "InvalidSpec", 1)
    assert _conditions(document)["Ready"] == ("False", "InvalidSpec", 1)
    assert tools.judge(document) == ("Failed", "Degraded")


def _wait_ready(cluster: Cluster, name: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    waited = cluster.plane.kubectl(
        "wait",
        "--for=condition=Ready",
        "--timeout=20s",
        "-n",
        cluster.namespace,
        f"keybackup/{name}",
        check=False,
    )
    return waited, time.monotonic() - started


def test_a_scheduled_backup_between_runs_and_after_an_edit_is_current_and_ready_at_once(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, tools: Tools
) -> None:
    vault.create_rsa_key("app-key")
    cluster.apply(keybackup("nightly", vault.url, keys=["app-key"], schedule="@every 1h"))
    waiting = _settled(cluster, "keybackup", "nightly", "Scheduled")
    assert tools.judge(waiting) == ("Current", "Healthy")
    cluster.plane.kubectl(
        "annotate", "kb", "nightly", "-n", cluster.namespace, "kvbackup.io/backup-now=1"
    )
    cluster.wait_until(
        "the run asked for has succeeded",
        lambda: cluster.status("keybackup", "nightly").get("lastHandledTrigger") == "1",
    )
    between_runs = cluster.get("keybackup", "nightly")
    assert between_runs["status"]["phase"] == "Succeeded"
    assert tools.judge(between_runs) == ("Current", "Healthy")

    patch = json.dumps({"spec": {"schedule": "@every 2h"}})
    cluster.plane.kubectl(
        "patch", "kb", "nightly", "-n", cluster.namespace, "--type=merge", "-p", patch
    )
    waited, elapsed = _wait_ready(cluster, "nightly")

    assert waited.returncode == 0, waited.stderr
    assert elapsed < 10
    edited = cluster.get("keybackup", "nightly")
    assert edited["metadata"]["generation"] == 2
    assert set(_conditions(edited).values()) == {
        ("True", "Succeeded", 2),
        ("False", "Succeeded", 2),
    }
    assert (
        edited["status"]["lastRun"]["snapshotId"] == between_runs["status"]["lastRun"]["snapshotId"]
    )  # the edit started no run
    assert tools.judge(edited) == ("Current", "Healthy")


def test_a_deleted_keybackup_is_terminating(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, tools: Tools
) -> None:
    vault.create_rsa_key("app-key")
    cluster.apply(keybackup("leaving", vault.url, keys=["app-key"], deletionPolicy="Delete"))
    cluster.wait_for_phase("keybackup", "leaving", "Succeeded")
    hold = json.dumps([{"op": "add", "path": "/metadata/finalizers/-", "value": HOLD}])
    cluster.plane.kubectl(
        "patch", "kb", "leaving", "-n", cluster.namespace, "--type=json", "-p", hold
    )
    cluster.plane.kubectl("delete", "kb", "leaving", "-n", cluster.namespace, "--wait=false")
    cluster.wait_until(
        "the operator has deleted its snapshots and let go",
        lambda: cluster.get("keybackup", "leaving")["metadata"].get("finalizers") == [HOLD],
    )
    document = cluster.get("keybackup", "leaving")
    cluster.plane.kubectl(
        "patch",
        "kb",
        "leaving",
        "-n",
        cluster.namespace,
        "--type=merge",
        "-p",
        '{"metadata": {"finalizers": null}}',
    )

    assert document["metadata"]["deletionTimestamp"]
    assert tools.judge(document) == ("Terminating", "Progressing")


# --- an operator of the test's own --------------------------------------------------------


def test_a_keybackup_refused_the_operators_identity_is_stalled(
    own_operator: Callable[..., Cluster], vault: VaultUnderTest, tools: Tools
) -> None:
    # Without identity rules, no namespace may use the operator's identity.
    cluster = own_operator("refused", KVBACKUP_DEFAULT_IDENTITY_RULES="")
    cluster.apply(keybackup("refused", vault.url, keys=["app-key"]))
    document = _settled(cluster, "keybackup", "refused", "Failed")

    assert _conditions(document)["Stalled"] == ("True", "IdentityNotAllowed", 1)
    assert tools.judge(document) == ("Failed", "Degraded")
