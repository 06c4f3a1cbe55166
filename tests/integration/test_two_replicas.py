"""Two operator processes on one cluster elect a leader: every backup, schedule slot and
restore runs once, and killing the leader hands its work to the other."""

from __future__ import annotations

import json
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kvbackup.services.leadership import Timing
from tests.harness.controlplane import ControlPlane
from tests.harness.fault_proxy import FaultProxy
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess, start_operator
from tests.harness.vault import Vault, create_keys, purge_keys
from tests.integration.conftest import Cluster
from tests.integration.objects import key_results, keybackup, keyrestore, keys_counted

pytestmark = pytest.mark.integration

KEYS = [f"key-{index:03d}" for index in range(200)]
#: Shorter than the default 15 s, to keep the tests short; the bound scales with it.
LEASE_SECONDS = 6
TAKEOVER_BOUND = Timing(LEASE_SECONDS).takeover_bound
BACKUP_CALLS = "POST /keys/*/backup"
#: The gauges each KeyBackup has a series of, on the leader alone.
PER_KEYBACKUP = (
    "kvbackup_keybackup_last_success_timestamp_seconds",
    "kvbackup_keybackup_schedule_interval_seconds",
    "kvbackup_keybackup_failing",
)
RESTORE_CALLS = "POST /keys/restore"


class Replicas:
    """Operator processes sharing one Lease, all watching one namespace of their own."""

    def __init__(self, cluster: Cluster, lowkey: Lowkey, workdir: Path) -> None:
        self.cluster, self._lowkey, self._workdir = cluster, lowkey, workdir
        self.lease = f"kvbackup-{uuid.uuid4().hex[:6]}"
        self.processes: list[OperatorProcess] = []

    def start(self, **settings: str) -> OperatorProcess:
        env = {
            "KVBACKUP_WATCH_NAMESPACES": self.cluster.namespace,
            "KVBACKUP_LEADER_ELECTION_NAMESPACE": self.cluster.namespace,
            "KVBACKUP_LEADER_ELECTION_LEASE": self.lease,
            "KVBACKUP_LEADER_ELECTION_LEASE_SECONDS": str(LEASE_SECONDS),
            **self._lowkey.operator_env(),
            **settings,
        }
        log = self._workdir / f"replica-{len(self.processes)}.log"
        process = start_operator(self.cluster.plane.kubeconfig, log, env)
        self.processes.append(process)
        return process

    def holder(self) -> str | None:
        found = self.cluster.plane.kubectl(
            "get", "lease", self.lease, "-n", self.cluster.namespace, "-o", "json", check=False
        )
        if found.returncode != 0:
            return None
        holder: str | None = json.loads(found.stdout)["spec"].get("holderIdentity")
        return holder

    def leader(self) -> OperatorProcess:
        """The replica holding the lease, once one does."""
        self.cluster.wait_until("a replica holds the lease", lambda: self.holder() is not None)
        holder = self.holder()
        (leader,) = [p for p in self.processes if identity(p) == holder]
        return leader

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def identity(process: OperatorProcess) -> str:
    return f"{socket.gethostname()}-{process.process.pid}"


@pytest.fixture
def replicas(
    control_plane: ControlPlane, lowkey: Lowkey, tmp_path: Path
) -> Iterator[Callable[..., Replicas]]:
    started: list[Replicas] = []

    def two(**settings: str) -> Replicas:
        name = f"ha-{uuid.uuid4().hex[:8]}"
        control_plane.kubectl("create", "namespace", name)
        pair = Replicas(Cluster(control_plane, name), lowkey, tmp_path)
        started.append(pair)
        pair.start(**settings)
        pair.start(**settings)
        return pair

    yield two
    for pair in started:
        pair.stop()


def _manifests(cluster: Cluster, keybackup_name: str) -> list[dict[str, object]]:
    return cluster.secrets(f"kvbackup.io/keybackup={keybackup_name},kvbackup.io/role=manifest")


def test_two_replicas_back_up_200_keys_into_one_snapshot_and_restore_each_key_once(
    replicas: Callable[..., Replicas], proxy: FaultProxy, lowkey: Lowkey
) -> None:
    pair = replicas()
    cluster = pair.cluster
    vault = Vault(proxy.url, lowkey.certificate)
    create_keys(vault, KEYS)

    cluster.apply(keybackup("nightly", proxy.url))
    backed_up = cluster.wait_for_phase("keybackup", "nightly", "Succeeded")
    assert backed_up["lastRun"]["keysSucceeded"] == len(KEYS)
    assert len(_manifests(cluster, "nightly")) == 1
    assert cluster.event_count("nightly", "BackupStarted") == 1
    assert proxy.counts().by_operation[BACKUP_CALLS] == len(KEYS)

    purge_keys(vault, KEYS)
    cluster.apply(keyrestore("all-back", proxy.url, keybackup="nightly"))
    restored = cluster.wait_for_phase("keyrestore", "all-back", "Succeeded", "PartiallyFailed")
    assert restored["phase"] == "Succeeded"
    assert restored["counts"] == keys_counted(restored=len(KEYS), recovered=0, skipped=0, failed=0)
    assert set(key_results(restored).values()) == {"Restored"}
    assert proxy.counts().by_operation[RESTORE_CALLS] == len(KEYS)
    assert cluster.event_count("all-back", "RestoreStarted") == 1
    assert vault.key_names() == set(KEYS)
    # The follower wrote nothing: only the leader's pod name is in its log as leading.
    leading = [p for p in pair.processes if "leads now" in p.log()]
    assert leading == [pair.leader()]


def test_killing_the_leader_mid_backup_hands_the_run_to_the_other_replica_in_time(
    replicas: Callable[..., Replicas], proxy: FaultProxy, lowkey: Lowkey
) -> None:
    pair = replicas(KVBACKUP_VAULT_RATE_LIMIT="25")  # slow enough to kill it mid-run
    cluster = pair.cluster
    keys = KEYS
    create_keys(Vault(proxy.url, lowkey.certificate), keys)
    cluster.apply(keybackup("big", proxy.url))
    cluster.wait_until(
        "some keys are stored", lambda: len(cluster.secrets("kvbackup.io/keybackup=big")) >= 2
    )
    snapshot_id = cluster.status("keybackup", "big")["activeRun"]["snapshotId"]
    leader = pair.leader()
    leader.kill()
    killed_at = time.monotonic()
    # Counted before the other replica may lead: the killed one stores and sends nothing
    # more, and once the survivor has resumed, its first backups would blur the count.
    sent_before = proxy.counts().by_operation[BACKUP_CALLS]
    stored_before = sum(
        len(pack["data"]) - 1  # every entry but the pack's index
        for pack in cluster.secrets("kvbackup.io/keybackup=big,kvbackup.io/role=artifact")
    )
    (survivor,) = [p for p in pair.processes if p is not leader]
    cluster.wait_until(
        "the other replica holds the lease",
        lambda: pair.holder() == identity(survivor),
        timeout=TAKEOVER_BOUND + 5,
        interval=0.2,
    )
    took_over_in = time.monotonic() - killed_at
    assert 0 < stored_before < len(keys)

    status = cluster.wait_for_phase("keybackup", "big", "Succeeded")
    assert took_over_in <= TAKEOVER_BOUND + 1, took_over_in
    assert status["lastSnapshot"]["id"] == snapshot_id
    assert status["lastRun"]["keysSucceeded"] == len(keys)
    assert len(_manifests(cluster, "big")) == 1
    # Resumed into the same snapshot from what the killed leader stored, not redone.
    sent_after = proxy.counts().by_operation[BACKUP_CALLS] - sent_before
    assert sent_after == len(keys) - stored_before
    started = {e["message"] for e in cluster.events_for("big") if e["reason"] == "BackupStarted"}
    assert started == {f"backing up into {snapshot_id}"}


def test_with_two_replicas_a_schedule_fires_once_per_slot(
    replicas: Callable[..., Replicas], proxy: FaultProxy, lowkey: Lowkey
) -> None:
    pair = replicas()
    cluster = pair.cluster
    Vault(proxy.url, lowkey.certificate).create_ec_keys(["app-key", "db-key"])
    # Every run backs each key up afresh (fullBackupEvery), so each run's backup calls count it.
    cluster.apply(keybackup("every-3s", proxy.url, schedule="@every 3s", fullBackupEvery="1s"))
    cluster.wait_until(
        "three scheduled runs succeeded",
        lambda: cluster.event_count("every-3s", "BackupSucceeded") >= 3,
        timeout=60,
    )
    cluster.plane.kubectl(
        "patch", "kb", "every-3s", "-n", cluster.namespace, "--type=merge",
        "-p", '{"spec": {"suspend": true}}',
    )  # fmt: skip
    cluster.wait_until(
        "no run is in progress",
        lambda: not cluster.status("keybackup", "every-3s").get("activeRun"),
    )
    started = [
        e["message"]
        for e in cluster.events_for("every-3s")
        if e["reason"] == "BackupStarted"
        for _ in range(e.get("count", 1))
    ]
    succeeded = cluster.event_count("every-3s", "BackupSucceeded")
    # One run per slot, each into a snapshot of its own, and two backup calls per run.
    assert len(started) == len(set(started)) == succeeded
    assert proxy.counts().by_operation[BACKUP_CALLS] == 2 * succeeded


def _series(replicas: list[OperatorProcess], metric: str, name: str) -> int:
    """How many series of ``metric`` for KeyBackup ``name`` the replicas' scrapes hold."""
    return sum(
        1
        for replica in replicas
        for sample, labels in replica.metrics().values
        if sample == metric and ("name", name) in labels
    )


def test_a_leader_paused_past_its_lease_drops_its_keybackup_series_for_the_new_leaders(
    replicas: Callable[..., Replicas], proxy: FaultProxy, lowkey: Lowkey
) -> None:
    """A long pause (a frozen node, a stalled process) hands the lease over while the old
    leader lives on: after it, both replicas' scrapes together hold one series per
    KeyBackup, so alerts fire once and the rules' joins on (namespace, name) evaluate."""
    pair = replicas()
    cluster = pair.cluster
    Vault(proxy.url, lowkey.certificate).create_ec_keys(["app-key"])
    names = ("payments", "orders")
    for name in names:
        cluster.apply(keybackup(name, proxy.url, schedule="@every 1h"))
        cluster.plane.kubectl(
            "annotate", "kb", name, "-n", cluster.namespace, "kvbackup.io/backup-now=first"
        )
    for name in names:
        cluster.wait_for_phase("keybackup", name, "Succeeded")
    leader = pair.leader()
    (follower,) = [p for p in pair.processes if p is not leader]

    def one_series_each_by(shown_by: OperatorProcess) -> bool:
        return (
            all(
                _series([shown_by], metric, name) == 1
                and _series(pair.processes, metric, name) == 1
                for metric in PER_KEYBACKUP
                for name in names
            )
            and shown_by.metrics().get("kvbackup_leader") == 1
            and sum(p.metrics().get("kvbackup_leader") or 0 for p in pair.processes) == 1
        )

    cluster.wait_until("the leader alone shows the KeyBackups", lambda: one_series_each_by(leader))

    leader.process.send_signal(signal.SIGSTOP)
    try:
        cluster.wait_until(
            "the follower holds the lease",
            lambda: pair.holder() == identity(follower),
            timeout=TAKEOVER_BOUND + 5,
            interval=0.2,
        )
    finally:
        leader.process.send_signal(signal.SIGCONT)

    cluster.wait_until(
        "the new leader alone shows the KeyBackups", lambda: one_series_each_by(follower)
    )
    assert leader.metrics().get("kvbackup_leader") == 0
    assert "stepping down" in leader.log()
    # Events are the operator's own, whichever replica posted them.
    events = [event for name in names for event in cluster.events_for(name)]
    assert events
    for event in events:
        assert event["reportingComponent"] == "kvbackup-operator"
        assert event["source"]["component"] == "kvbackup-operator"
        assert event["reportingInstance"] == socket.gethostname()
        assert event["metadata"]["name"].startswith("kvbackup-operator-")
