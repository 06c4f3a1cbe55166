"""Schedules, suspend and deletionPolicy, driven by the operator as a real process."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import pytest

from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api.keybackup import KeyBackupRef
from tests.harness.controlplane import ControlPlane, free_port
from tests.harness.fault_proxy import FaultProxy, Faults
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import Vault
from tests.integration.conftest import Cluster, OperatorBehindForwarder, store_snapshot
from tests.integration.objects import keybackup

pytestmark = pytest.mark.integration


def _keybackup(name: str, extra: str) -> str:
    return (
        f"apiVersion: kvbackup.io/v1alpha1\nkind: KeyBackup\nmetadata: {{name: {name}}}\n"
        f"spec:\n  vaultUrl: https://127.0.0.1:{free_port()}\n  keys: {{names: [app-key]}}\n"
        f"{extra}"
    )


def test_a_scheduled_keybackup_runs_at_each_slot_and_shows_the_next_one(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    cluster.broken_credentials_secret()
    cluster.apply(
        _keybackup("every-4s", '  schedule: "@every 4s"\n  credentials: {name: broken}\n')
    )
    cluster.wait_until(
        "two scheduled runs",
        lambda: cluster.event_count("every-4s", "BackupStarted") >= 2,
        timeout=60,
    )
    status = cluster.status("keybackup", "every-4s")
    assert status["lastScheduleTime"] < status["nextScheduleTime"]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cluster.columns("kb", "every-4s")["NEXT RUN"]
    )


def test_a_scheduled_keybackup_before_its_first_run_is_scheduled_and_ready(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    cluster.broken_credentials_secret()
    cluster.apply(_keybackup("nightly", '  schedule: "0 3 * * *"\n  credentials: {name: broken}\n'))

    waited = cluster.plane.kubectl(
        "wait", "--for=condition=Ready", "kb/nightly", "-n", cluster.namespace, "--timeout=60s",
        check=False,
    )  # fmt: skip

    assert waited.returncode == 0, waited.stderr
    next_run = cluster.status("keybackup", "nightly")["nextScheduleTime"]
    assert next_run.endswith("T03:00:00Z")
    assert cluster.ready_condition("keybackup", "nightly")["message"] == f"first run at {next_run}"
    cells = cluster.columns("kb", "nightly")
    assert (cells["PHASE"], cells["READY"], cells["NEXT RUN"]) == ("Scheduled", "True", next_run)


def test_a_scheduled_keybackup_does_not_run_on_creation_or_on_spec_changes(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    cluster.broken_credentials_secret()
    cluster.apply(_keybackup("nightly", '  schedule: "0 3 * * *"\n  credentials: {name: broken}\n'))
    cluster.wait_until(
        "the next slot is published",
        lambda: bool(cluster.status("keybackup", "nightly").get("nextScheduleTime")),
    )
    cluster.apply(_keybackup("nightly", '  schedule: "0 4 * * *"\n  credentials: {name: broken}\n'))
    cluster.wait_until(
        "the new generation is acknowledged with its new slot",
        lambda: (
            cluster.status("keybackup", "nightly").get("observedGeneration") == 2
            and cluster.status("keybackup", "nightly")["nextScheduleTime"].endswith("T04:00:00Z")
        ),
    )
    assert cluster.event_count("nightly", "BackupStarted") == 0


def test_suspend_stops_scheduled_runs_but_backup_now_still_runs(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    cluster.broken_credentials_secret()
    cluster.apply(
        _keybackup(
            "paused", '  schedule: "@every 2s"\n  suspend: true\n  credentials: {name: broken}\n'
        )
    )
    cluster.wait_until(
        "the suspended schedule is acknowledged",
        lambda: cluster.status("keybackup", "paused").get("observedGeneration") == 1,
    )
    assert "nextScheduleTime" not in cluster.status("keybackup", "paused")
    cluster.plane.kubectl(
        "annotate", "kb", "paused", "-n", cluster.namespace, "kvbackup.io/backup-now=please"
    )
    cluster.wait_until(
        "the on-demand run is handled",
        lambda: cluster.status("keybackup", "paused").get("lastHandledTrigger") == "please",
    )
    time.sleep(5)  # more than two slots of the schedule pass unused
    assert cluster.event_count("paused", "BackupStarted") == 1


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        pytest.param("Delete", 0, id="Delete removes them"),
        # Each snapshot: a pack, a manifest part and the manifest.
        pytest.param("Retain", 6, id="Retain keeps them"),
    ],
)
async def test_deleting_a_keybackup_applies_its_deletion_policy_to_its_snapshots(
    operator: OperatorProcess,
    cluster: Cluster,
    secret_store: SecretSnapshotStore,
    policy: str,
    kept: int,
) -> None:
    cluster.broken_credentials_secret()
    cluster.apply(
        _keybackup("old", f"  deletionPolicy: {policy}\n  credentials: {{name: broken}}\n")
    )
    cluster.wait_until(
        "the KeyBackup is handled",
        lambda: cluster.status("keybackup", "old").get("observedGeneration") == 1,
    )
    ref = KeyBackupRef(cluster.namespace, "old", "")
    for snapshot_id in ("20261128-010000-aaaa", "20261128-020000-bbbb"):
        await store_snapshot(secret_store, ref, snapshot_id, {"app-key": b"bytes"})

    cluster.plane.kubectl("delete", "kb", "old", "-n", cluster.namespace, "--timeout=60s")

    secrets = cluster.plane.kubectl(
        "get", "secrets", "-n", cluster.namespace, "-l", "kvbackup.io/keybackup=old", "-o", "name"
    ).stdout.split()
    assert len(secrets) == kept


def test_a_retain_keybackup_carries_no_finalizer_so_it_never_blocks_deletion(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    cluster.broken_credentials_secret()
    cluster.apply(_keybackup("plain", "  credentials: {name: broken}\n"))
    cluster.wait_until(
        "the KeyBackup is handled",
        lambda: cluster.status("keybackup", "plain").get("observedGeneration") == 1,
    )
    assert "finalizers" not in cluster.get("keybackup", "plain")["metadata"]
    cluster.apply(
        _keybackup("removable", "  deletionPolicy: Delete\n  credentials: {name: broken}\n")
    )
    cluster.wait_until(
        "a Delete-policy KeyBackup gets the finalizer that deletes its snapshots",
        lambda: (
            cluster.get("keybackup", "removable")["metadata"].get("finalizers")
            == ["kvbackup.io/finalizer"]
        ),
    )


KEYS_IN_FLIGHT = [f"key-{i:03d}" for i in range(60)]


def test_a_delete_policy_keybackup_deleted_while_its_run_writes_leaves_no_secret(
    control_plane: ControlPlane,
    lowkey: Lowkey,
    proxy: FaultProxy,
    operator_behind_forwarder: Callable[[str], OperatorBehindForwarder],
) -> None:
    cluster = Cluster(control_plane, f"deleted-{uuid.uuid4().hex[:8]}")
    control_plane.kubectl("create", "namespace", cluster.namespace)
    Vault(proxy.url, lowkey.certificate).create_ec_keys(KEYS_IN_FLIGHT)
    proxy.set_faults(Faults(latency_seconds=0.2))  # the run takes a few pack intervals
    # The forwarder keeps a write on its way: a pack of keys the run is writing when the
    # KeyBackup is deleted.
    operator = operator_behind_forwarder(cluster.namespace)
    operator.hold_writes()
    cluster.apply(keybackup("midway", proxy.url, deletionPolicy="Delete"))
    cluster.wait_until("a pack of keys is on its way", lambda: operator.api.held > 0, timeout=90)
    control_plane.kubectl("delete", "kb", "midway", "-n", cluster.namespace, "--wait=false")
    time.sleep(3)  # time enough to list the snapshots and let the object go
    operator.release_writes()
    cluster.wait_until(
        "the KeyBackup is gone",
        lambda: (
            control_plane.kubectl(
                "get", "kb", "midway", "-n", cluster.namespace, check=False
            ).returncode
            != 0
        ),
        timeout=60,
    )
    time.sleep(2)  # a write the clean-up missed would land meanwhile
    operator.process.stop()

    assert cluster.secrets("kvbackup.io/keybackup=midway") == []
    assert cluster.event_count("midway", "BackupsDeleted") == 1
