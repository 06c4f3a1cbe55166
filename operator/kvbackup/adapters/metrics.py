"""The operator's Prometheus metrics, how the operator records them, and the endpoint
that serves them (README, "Metrics and alerts", lists each one).

Labels are bounded: kinds, results and operations are fixed words, a vault is its host
(its series removed once the vault has gone unused for a while, keyvault.py), and only
the per-KeyBackup gauges carry an object's namespace and name, removed when the object
is deleted and when the replica stops leading (the leader alone shows them). No key name
is ever a label. Recording a Key Vault call costs a dict lookup and an increment; the
vaults' pace rates are read only when scraped.
"""

from __future__ import annotations

import collections
import importlib.metadata
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from kvbackup.services.outcomes import KeyOutcome, KeyResult
from kvbackup.services.readings import KeyBackupReadings

BACKUP = "backup"
RESTORE = "restore"
#: A KeyRestore with spec.dryRun: reads only, its keys' results are Would...
DRY_RUN = "dry-run"
#: What a run that finished can end as (a run interrupted by shutdown or deletion is not
#: counted): the phases a status shows; a run that raised is Failed.
RUN_RESULTS = ("Succeeded", "PartiallyFailed", "Failed")
#: The per-key results each kind of run reports.
KEY_RESULTS = {
    BACKUP: (KeyResult.SUCCEEDED, KeyResult.FAILED),
    RESTORE: (KeyResult.RESTORED, KeyResult.RECOVERED, KeyResult.SKIPPED, KeyResult.FAILED),
    DRY_RUN: (
        KeyResult.WOULD_RESTORE,
        KeyResult.WOULD_RECOVER,
        KeyResult.WOULD_SKIP,
        KeyResult.WOULD_FAIL,
    ),
}
#: Runs last from a fraction of a second (a few keys) to many minutes (100,000 keys).
RUN_DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: The ``code`` of a Key Vault call that succeeded: the SDK does not hand back the exact
#: status, and ``2xx`` still matches the usual ``code=~"2.."``.
ANSWERED_OK = "2xx"
#: The ``code`` of a call that got no answer (connection refused or broken, timeout).
NO_ANSWER = "none"

#: (vault host, its current pace in operations per second), read at each scrape.
PaceRates = Callable[[], Iterable[tuple[str, float]]]


@dataclass
class RunRecord:
    """How one run ended; left unset, the run is not counted (it was interrupted)."""

    result: str | None = None
    keys: collections.Counter[str] = field(default_factory=collections.Counter)

    def finished(self, phase: str, outcomes: Sequence[KeyOutcome]) -> None:
        self.result = phase
        self.keys.update(outcome.result.value for outcome in outcomes)

    def failed(self) -> None:
        self.result = "Failed"


class VaultCalls:
    """Counts one vault's calls; each (operation, code) pair's child is looked up once."""

    def __init__(self, counter: Counter, vault: str) -> None:
        self._counter = counter
        self._vault = vault
        self._children: dict[tuple[str, str], Any] = {}

    def count(self, operation: str, code: str) -> None:
        child = self._children.get((operation, code))
        if child is None:
            child = self._children[(operation, code)] = self._counter.labels(
                self._vault, operation, code
            )
        child.inc()

    def forget(self) -> None:
        """Removes the vault's series, once the vault has gone unused long enough that
        keeping them would let vault names that come and go grow the registry for ever."""
        for operation, code in self._children:
            self._counter.remove(self._vault, operation, code)
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
            "Runs that finished, by kind (backup, restore, dry-run) and result.",
            ["kind", "result"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "kvbackup_run_duration_seconds",
            "How long runs that finished took, by kind.",
            ["kind"],
            buckets=RUN_DURATION_BUCKETS,
            registry=registry,
        )
        self.runs_in_flight = Gauge(
            "kvbackup_runs_in_flight", "Runs going on now, by kind.", ["kind"], registry=registry
        )
        self.keys = Counter(
            "kvbackup_keys",
            "Keys handled by finished runs, by kind and per-key result (backup: Succeeded, "
            "Failed; restore: Restored, Recovered, Skipped, Failed; dry-run: Would...).",
            ["kind", "result"],
            registry=registry,
        )
        self.vault_calls = Counter(
            "kvbackup_keyvault_calls",
            "Key Vault calls by vault host, operation and HTTP status code "
            "(2xx: succeeded; none: no answer). Each retry of a call counts.",
            ["vault", "operation", "code"],
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
        self.failing = Gauge(
            "kvbackup_keybackup_failing",
            "1 while the KeyBackup's latest run failed or partially failed (also while it "
            "is retried), 0 once a run succeeds.",
            labels,
            registry=registry,
        )
        self._paces = _PaceCollector()
        registry.register(self._paces)
        # Every series a user graphs exists from the start, so rate() sees the first run.
        for kind, results in KEY_RESULTS.items():
            self.runs_in_flight.labels(kind).set(0)
            self.run_duration.labels(kind)
            for run_result in RUN_RESULTS:
                self.runs.labels(kind, run_result)
            for key_result in results:
                self.keys.labels(kind, key_result.value)

    def serve(self, port: int, address: str) -> None:
        """Serves /metrics on ``address`` (0.0.0.0: every IPv4 address) from a thread of its
        own."""
        start_http_server(port, addr=address, registry=self.registry)

    def follow_paces(self, rates: PaceRates) -> None:
        self._paces.rates = rates

    def vault(self, host: str) -> VaultCalls:
        return VaultCalls(self.vault_calls, host)

    @contextmanager
    def run(self, kind: str) -> Iterator[RunRecord]:
        """Counts the run in flight while it lasts, then its result, duration and keys."""
        record, started = RunRecord(), time.monotonic()
        in_flight = self.runs_in_flight.labels(kind)
        in_flight.inc()
        try:
            yield record
        finally:
            in_flight.dec()
            if record.result is not None:
                self.runs.labels(kind, record.result).inc()
                self.run_duration.labels(kind).observe(time.monotonic() - started)
                for key_result, count in record.keys.items():
                    self.keys.labels(kind, key_result).inc(count)

    def observe_keybackup(self, namespace: str, name: str, readings: KeyBackupReadings) -> None:
        for gauge, value in (
            (self.last_success, readings.last_success),
            (self.schedule_interval, readings.schedule_interval),
            (self.snapshot_bytes, readings.snapshot_bytes),
        ):
            if value is None:
                gauge.remove(namespace, name)
            else:
                gauge.labels(namespace, name).set(value)
        failing = self.failing.labels(namespace, name)
        if readings.failing is not None:
            failing.set(int(readings.failing))

    def _keybackup_gauges(self) -> tuple[Gauge, ...]:
        return (self.last_success, self.schedule_interval, self.snapshot_bytes, self.failing)

    def forget_keybackup(self, namespace: str, name: str) -> None:
        """Removes a deleted KeyBackup's series."""
        for gauge in self._keybackup_gauges():
            gauge.remove(namespace, name)

    def started_leading(self) -> None:
        self.leader.set(1)

    def stopped_leading(self) -> None:
        """Removes every KeyBackup's series, once this replica's loops have stopped: the
        new leader shows them, and two replicas' copies would fire alerts twice and break
        the alert rules' joins on (namespace, name)."""
        self.leader.set(0)
        for gauge in self._keybackup_gauges():
            gauge.clear()
