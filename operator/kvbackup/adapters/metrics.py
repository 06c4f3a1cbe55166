"""The operator's Prometheus metrics, how the operator records them, and the endpoint
that serves them (README, "Metrics and alerts", lists each one).

Labels are bounded: runs, item kinds, results, freshness and operations are fixed words, a
vault is its host (its series removed once the vault has gone unused for a while,
keyvault.py), and only the per-KeyBackup gauges carry an object's namespace and name,
removed when the object is deleted and when the replica stops leading (the leader alone
shows them). No item name is ever a label. Recording a Key Vault call costs a dict lookup
and an increment; the vaults' pace rates are read only when scraped.
"""

from __future__ import annotations

import collections
import importlib.metadata
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from kvbackup import __version__
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.services.outcomes import Freshness, ItemOutcome, ItemResult
from kvbackup.services.readings import KeyBackupReadings

BACKUP = "backup"
RESTORE = "restore"
#: A KeyRestore with spec.dryRun: reads only, its items' results are Would...
DRY_RUN = "dry-run"
#: What a run that finished can end as (a run interrupted by shutdown or deletion is not
#: counted): the phases a status shows; a run that raised is Failed.
RUN_RESULTS = ("Succeeded", "PartiallyFailed", "Failed")
#: The per-item results each run reports.
ITEM_RESULTS = {
    BACKUP: (ItemResult.SUCCEEDED, ItemResult.FAILED),
    RESTORE: (ItemResult.RESTORED, ItemResult.RECOVERED, ItemResult.SKIPPED, ItemResult.FAILED),
    DRY_RUN: (
        ItemResult.WOULD_RESTORE,
        ItemResult.WOULD_RECOVER,
        ItemResult.WOULD_SKIP,
        ItemResult.WOULD_FAIL,
    ),
}
#: Runs last from a fraction of a second (a few items) to many minutes (100,000 items).
RUN_DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: The ``code`` of a Key Vault call that succeeded: the SDK does not hand back the exact
#: status, and ``2xx`` still matches the usual ``code=~"2.."``.
ANSWERED_OK = "2xx"
#: The ``code`` of a call that got no answer (connection refused or broken, timeout).
NO_ANSWER = "none"

#: (vault host, its current pace in operations per second), read at each scrape.
PaceRates = Callable[[], Iterable[tuple[str, float]]]


class VaultOperation(StrEnum):
    """What a Key Vault call does, to an item of any kind (``kvbackup_keyvault_calls``'s
    ``operation``; its ``kind`` says which)."""

    LIST = "list"
    LIST_VERSIONS = "list_versions"
    GET_DELETED = "get_deleted"
    BACKUP = "backup"
    RESTORE = "restore"
    RECOVER = "recover"
    PURGE = "purge"


@dataclass
class RunRecord:
    """How one run ended; left unset, the run is not counted (it was interrupted)."""

    run: str
    result: str | None = None
    #: How many items of each kind ended with each result.
    items: collections.Counter[tuple[ItemKind, str]] = field(default_factory=collections.Counter)
    #: Of a backup: how many items of each kind it stored, by how it came by their artifacts.
    freshness: collections.Counter[tuple[ItemKind, Freshness]] = field(
        default_factory=collections.Counter
    )

    def finished(self, phase: str, outcomes: Sequence[ItemOutcome]) -> None:
        self.result = phase
        self.items.update((outcome.kind, outcome.result.value) for outcome in outcomes)
        if self.run == BACKUP:
            self.freshness.update((o.kind, o.freshness) for o in outcomes if not o.failed)

    def failed(self) -> None:
        self.result = "Failed"


class VaultCalls:
    """Counts one vault's calls; each (operation, kind, code) child is looked up once."""

    def __init__(self, counter: Counter, vault: str) -> None:
        self._counter = counter
        self._vault = vault
        self._children: dict[tuple[VaultOperation, ItemKind, str], Any] = {}

    def count(self, operation: VaultOperation, kind: ItemKind, code: str) -> None:
        labels = operation, kind, code
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._counter.labels(self._vault, *labels)
        child.inc()

    def forget(self) -> None:
        """Removes the vault's series, once the vault has gone unused long enough that
        keeping them would let vault names that come and go grow the registry for ever."""
        for labels in self._children:
            self._counter.remove(self._vault, *labels)
        self._children.clear()


class _PaceCollector:
    """The vaults' current pace, read when scraped instead of on every call."""

    def __init__(self) -> None:
        self.rates: PaceRates = tuple

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "kvbackup_keyvault_pace_rate",
            "Current pace of a vault in operations per second: starts at "
            "KVBACKUP_VAULT_RATE_LIMIT, halved by each 429 without Retry-After.",
            labels=["vault"],
        )
        for vault, rate in self.rates():
            family.add_metric([vault], rate)
        yield family


class OperatorMetrics:
    """Every metric of one operator process, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        registry = self.registry
        self.runs = Counter(
            "kvbackup_runs",
            "Runs that finished, by run (backup, restore, dry-run) and result.",
            ["run", "result"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "kvbackup_run_duration_seconds",
            "How long runs that finished took, by run.",
            ["run"],
            buckets=RUN_DURATION_BUCKETS,
            registry=registry,
        )
        self.runs_in_flight = Gauge(
            "kvbackup_runs_in_flight", "Runs going on now, by run.", ["run"], registry=registry
        )
        self.items = Counter(
            "kvbackup_items",
            "Vault items handled by finished runs, by run, item kind (key, secret, "
            "certificate) and per-item result (backup: Succeeded, Failed; restore: Restored, "
            "Recovered, Skipped, Failed; dry-run: Would...).",
            ["run", "kind", "result"],
            registry=registry,
        )
        self.item_freshness = Counter(
            "kvbackup_item_freshness",
            "Vault items stored by finished backup runs, by item kind and by how the run came "
            "by their artifacts: BackedUp (new or changed), Unchanged (carried forward from an "
            "earlier snapshot, no Key Vault call), Refreshed (unchanged, backed up afresh by "
            "spec.fullBackupEvery or a full run).",
            ["kind", "freshness"],
            registry=registry,
        )
        self.vault_calls = Counter(
            "kvbackup_keyvault_calls",
            "Key Vault calls by vault host, operation, item kind and HTTP status code "
            "(2xx: succeeded; none: no answer). Each retry of a call counts.",
            ["vault", "operation", "kind", "code"],
            registry=registry,
        )
        self.build_info = Gauge(
            "kvbackup_build_info",
            "Always 1; the operator's version and those of the Python and kopf it runs on.",
            ["version", "python_version", "kopf_version"],
            registry=registry,
        )
        self.build_info.labels(
            __version__, platform.python_version(), importlib.metadata.version("kopf")
        ).set(1)
        self.leader = Gauge(
            "kvbackup_leader",
            "1 while this replica leads (runs backups and restores), 0 while it stands by.",
            registry=registry,
        )
        labels = ["namespace", "name"]
        self.last_success = Gauge(
            "kvbackup_keybackup_last_success_timestamp_seconds",
            "When the KeyBackup's last successful run completed (status.lastSuccessfulTime).",
            labels,
            registry=registry,
        )
        self.schedule_interval = Gauge(
            "kvbackup_keybackup_schedule_interval_seconds",
            "Longest gap between consecutive slots of the KeyBackup's schedule; absent "
            "without a schedule or while suspended.",
            labels,
            registry=registry,
        )
        self.snapshot_bytes = Gauge(
            "kvbackup_keybackup_snapshot_bytes",
            "Backup bytes in the KeyBackup's newest complete snapshot.",
            labels,
            registry=registry,
        )
        self.oldest_artifact = Gauge(
            "kvbackup_keybackup_oldest_artifact_timestamp_seconds",
            "When the oldest backup in the KeyBackup's newest complete snapshot was taken "
            "(status.lastSnapshot.oldestArtifactTime). While runs succeed, its age stays "
            "within spec.fullBackupEvery and the time between runs.",
            labels,
            registry=registry,
        )
        self.failing = Gauge(
            "kvbackup_keybackup_failing",
            "1 while the KeyBackup's latest run failed or partially failed (also while it "
            "is retried), 0 once a run succeeds.",
            labels,
            registry=registry,
        )
        self.last_verification = Gauge(
            "kvbackup_keybackup_last_verification_timestamp_seconds",
            "When the KeyBackup's last verification (spec.verify, kvbackup.io/verify-now) "
            "completed, whatever it found.",
            labels,
            registry=registry,
        )
        self.verification_failing = Gauge(
            "kvbackup_keybackup_verification_failing",
            "1 while the KeyBackup's last verification found a kept backup missing, altered "
            "or unreadable in any copy, 0 once one finds none.",
            labels,
            registry=registry,
        )
        self.unprotected_items = Gauge(
            "kvbackup_unprotected_items",
            "Items of the KeyBackup's vault that its last verification found in no snapshot, "
            "or with versions the latest snapshot lacks.",
            labels,
            registry=registry,
        )
        self.unprotected_since = Gauge(
            "kvbackup_keybackup_unprotected_since_timestamp_seconds",
            "Since when every verification of the KeyBackup has found unprotected items; "
            "absent while the last found none.",
            labels,
            registry=registry,
        )
        self.copy_failing = Gauge(
            "kvbackup_keybackup_copy_failing",
            "1 while a copy of the KeyBackup (spec.copies, by name) lacks the latest run's "
            "snapshot, 0 once it holds it.",
            [*labels, "copy"],
            registry=registry,
        )
        #: The copies each KeyBackup's series were set for, to remove those that went.
        self._copies: dict[tuple[str, str], set[str]] = {}
        self._paces = _PaceCollector()
        registry.register(self._paces)
        # Every series a user graphs exists from the start, so rate() sees the first run.
        for run, item_results in ITEM_RESULTS.items():
            self.runs_in_flight.labels(run).set(0)
            self.run_duration.labels(run)
            for run_result in RUN_RESULTS:
                self.runs.labels(run, run_result)
            for kind in ITEM_KINDS:
                for item_result in item_results:
                    self.items.labels(run, kind, item_result.value)
        for kind in ITEM_KINDS:
            for freshness in Freshness:
                self.item_freshness.labels(kind, freshness.value)

    def serve(self, port: int, address: str) -> None:
        """Serves /metrics on ``address`` (0.0.0.0: every IPv4 address) from a thread of its
        own."""
        start_http_server(port, addr=address, registry=self.registry)

    def follow_paces(self, rates: PaceRates) -> None:
        self._paces.rates = rates

    def vault(self, host: str) -> VaultCalls:
        return VaultCalls(self.vault_calls, host)

    @contextmanager
    def run(self, run: str) -> Iterator[RunRecord]:
        """Counts the run (BACKUP, RESTORE or DRY_RUN) in flight while it lasts, then its
        result, duration and items."""
        record, started = RunRecord(run), time.monotonic()
        in_flight = self.runs_in_flight.labels(run)
        in_flight.inc()
        try:
            yield record
        finally:
            in_flight.dec()
            if record.result is not None:
                self.runs.labels(run, record.result).inc()
                self.run_duration.labels(run).observe(time.monotonic() - started)
                for (kind, item_result), count in record.items.items():
                    self.items.labels(run, kind, item_result).inc(count)
                for (kind, freshness), count in record.freshness.items():
                    self.item_freshness.labels(kind, freshness.value).inc(count)

    def observe_keybackup(self, namespace: str, name: str, readings: KeyBackupReadings) -> None:
        for gauge, value in (
            (self.last_success, readings.last_success),
            (self.schedule_interval, readings.schedule_interval),
            (self.snapshot_bytes, readings.snapshot_bytes),
            (self.oldest_artifact, readings.oldest_artifact),
            (self.last_verification, readings.verification_time),
            (self.unprotected_items, readings.unprotected_items),
            (self.unprotected_since, readings.unprotected_since),
        ):
            if value is None:
                gauge.remove(namespace, name)
            else:
                gauge.labels(namespace, name).set(value)
        failing = self.failing.labels(namespace, name)
        if readings.failing is not None:
            failing.set(int(readings.failing))
        if readings.verification_failing is not None:
            self.verification_failing.labels(namespace, name).set(
                int(readings.verification_failing)
            )
        shown = self._copies.setdefault((namespace, name), set())
        for gone in shown - set(readings.copies_failing):
            self.copy_failing.remove(namespace, name, gone)
        for copy, copy_failing in readings.copies_failing.items():
            self.copy_failing.labels(namespace, name, copy).set(int(copy_failing))
        shown.clear()
        shown.update(readings.copies_failing)

    def _keybackup_gauges(self) -> tuple[Gauge, ...]:
        return (
            self.last_success,
            self.schedule_interval,
            self.snapshot_bytes,
            self.oldest_artifact,
            self.failing,
            self.last_verification,
            self.verification_failing,
            self.unprotected_items,
            self.unprotected_since,
        )

    def forget_keybackup(self, namespace: str, name: str) -> None:
        """Removes a deleted KeyBackup's series."""
        for gauge in self._keybackup_gauges():
            gauge.remove(namespace, name)
        for copy in self._copies.pop((namespace, name), set()):
            self.copy_failing.remove(namespace, name, copy)

    def started_leading(self) -> None:
        self.leader.set(1)

    def stopped_leading(self) -> None:
        """Removes every KeyBackup's series, once this replica's loops have stopped: the
        new leader shows them, and two replicas' copies would fire alerts twice and break
        the alert rules' joins on (namespace, name)."""
        self.leader.set(0)
        for gauge in (*self._keybackup_gauges(), self.copy_failing):
            gauge.clear()
        self._copies.clear()
