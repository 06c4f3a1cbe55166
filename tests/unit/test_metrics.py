"""The operator's metrics: what a KeyBackup's gauges read from its status and schedule,
how runs, their items of each kind and Key Vault calls are counted, and that a deleted
object leaves no series."""

from __future__ import annotations

import asyncio
import datetime
import importlib.metadata
import platform
from functools import partial
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kvbackup import __version__
from kvbackup.adapters.fairshare import FairSlots
from kvbackup.adapters.keyvault import KeyVaultItems, vault_host
from kvbackup.adapters.metrics import BACKUP, RESTORE, OperatorMetrics, VaultOperation
from kvbackup.adapters.ratelimit import VaultPace
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.errors import KvBackupError
from kvbackup.presentation.gauges import keybackup_readings
from kvbackup.presentation.keybackup_status import read_keybackup_status
from kvbackup.services.outcomes import Freshness, ItemOutcome, ItemResult
from kvbackup.services.readings import KeyBackupReadings
from kvbackup.services.retry_policy import retry_per_call
from kvbackup.services.triggers import plan_run

NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)  # a Wednesday
META = {"generation": 1, "creationTimestamp": "2026-11-01T00:00:00Z"}


def spec(**fields: Any) -> dict[str, Any]:
    return {"vaultUrl": "https://v.vault.azure.net", "keys": {"names": ["a"]}, **fields}


def readings(status: dict[str, Any], **fields: Any) -> KeyBackupReadings:
    seen = read_keybackup_status(status)
    return keybackup_readings(seen, plan_run(spec(**fields), seen, META, NOW))


def samples(metrics: OperatorMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: OperatorMetrics, metric: str, /, **labels: str) -> float | None:
    return samples(metrics).get((metric, frozenset(labels.items())))


# --- what a KeyBackup's gauges read ----------------------------------------------------


def test_the_last_success_and_snapshot_size_are_the_status_own() -> None:
    status = {
        "phase": "Succeeded",
        "lastSuccessfulTime": "2026-11-25T11:30:00Z",
        "lastSnapshot": {"bytes": 4015},
    }

    read = readings(status)

    assert (
        read.last_success
        == datetime.datetime(2026, 11, 25, 11, 30, tzinfo=datetime.UTC).timestamp()
    )
    assert read.snapshot_bytes == 4015
    assert read.failing is False


def test_a_keybackup_that_never_succeeded_has_no_last_success_or_snapshot() -> None:
    assert readings({}) == KeyBackupReadings()


@pytest.mark.parametrize(
    ("written", "oldest"),
    [
        pytest.param(
            "2026-11-24T12:00:00Z",
            datetime.datetime(2026, 11, 24, 12, tzinfo=datetime.UTC).timestamp(),
            id="a time",
        ),
        pytest.param(None, None, id="absent: a snapshot from before incremental runs"),
        pytest.param("yesterday", None, id="edited by hand"),
        pytest.param(1764000000, None, id="a number"),
    ],
)
def test_the_oldest_artifact_is_the_last_snapshots_own(written: Any, oldest: float | None) -> None:
    status = {"lastSnapshot": {"bytes": 4015, "oldestArtifactTime": written}}

    assert readings(status).oldest_artifact == oldest


@pytest.mark.parametrize(
    ("phase", "failing"),
    [
        pytest.param("Failed", True, id="failed"),
        pytest.param("PartiallyFailed", True, id="partially-failed"),
        pytest.param("Succeeded", False, id="succeeded"),
        pytest.param("Running", None, id="running: keeps what the last run said"),
        pytest.param(None, None, id="never ran"),
    ],
)
def test_failing_follows_the_phase_of_the_latest_finished_run(
    phase: str | None, failing: bool | None
) -> None:
    assert readings({"phase": phase}).failing is failing


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        pytest.param("@every 6h", 6 * 3600, id="every-6h"),
        pytest.param("0 2 * * *", 24 * 3600, id="daily"),
        pytest.param("0 2 * * 1-5", 3 * 24 * 3600, id="weekdays: Friday to Monday"),
        pytest.param("0 0 1 * *", 31 * 24 * 3600, id="monthly: the longest month"),
    ],
)
def test_the_schedule_interval_is_its_longest_gap(schedule: str, seconds: float) -> None:
    assert readings({}, schedule=schedule).schedule_interval == seconds


@pytest.mark.parametrize(
    "fields", [pytest.param({}, id="no schedule"), pytest.param({"suspend": True}, id="suspended")]
)
def test_no_interval_without_a_running_schedule(fields: dict[str, Any]) -> None:
    schedule = {"schedule": "@every 1h"} if fields else {}
    assert readings({}, **schedule, **fields).schedule_interval is None


# --- recording ---------------------------------------------------------------------


def test_a_finished_run_counts_its_result_duration_and_items_of_each_kind() -> None:
    metrics = OperatorMetrics()
    outcomes = [
        ItemOutcome("a", ItemResult.SUCCEEDED),
        ItemOutcome("b", ItemResult.SUCCEEDED),
        ItemOutcome("c", ItemResult.FAILED, reason="KeyAccessDenied"),
        ItemOutcome("a", ItemResult.SUCCEEDED, kind=ItemKind.SECRET),
        ItemOutcome("tls", ItemResult.FAILED, kind=ItemKind.CERTIFICATE),
    ]

    with metrics.run(BACKUP) as run:
        assert value(metrics, "kvbackup_runs_in_flight", run="backup") == 1
        run.finished("PartiallyFailed", outcomes)

    assert value(metrics, "kvbackup_runs_in_flight", run="backup") == 0
    assert value(metrics, "kvbackup_runs_total", run="backup", result="PartiallyFailed") == 1
    assert value(metrics, "kvbackup_run_duration_seconds_count", run="backup") == 1
    counted = {
        (kind, result): value(
            metrics, "kvbackup_items_total", run="backup", kind=kind, result=result
        )
        for kind in ITEM_KINDS
        for result in ("Succeeded", "Failed")
    }
    assert counted == {
        ("key", "Succeeded"): 2,
        ("key", "Failed"): 1,
        ("secret", "Succeeded"): 1,
        ("secret", "Failed"): 0,
        ("certificate", "Succeeded"): 0,
        ("certificate", "Failed"): 1,
    }


def test_a_finished_backup_counts_the_items_it_stored_of_each_kind_by_freshness() -> None:
    metrics = OperatorMetrics()
    outcomes = [
        ItemOutcome("new", ItemResult.SUCCEEDED),
        ItemOutcome("same", ItemResult.SUCCEEDED, stored_in="x", freshness=Freshness.UNCHANGED),
        ItemOutcome("same-2", ItemResult.SUCCEEDED, freshness=Freshness.UNCHANGED),
        ItemOutcome(
            "due", ItemResult.SUCCEEDED, kind=ItemKind.SECRET, freshness=Freshness.REFRESHED
        ),
        ItemOutcome("lost", ItemResult.FAILED, kind=ItemKind.CERTIFICATE),
    ]

    with metrics.run(BACKUP) as run:
        run.finished("PartiallyFailed", outcomes)

    counted = {
        (kind, freshness.value): value(
            metrics, "kvbackup_item_freshness_total", kind=kind, freshness=freshness.value
        )
        for kind in ITEM_KINDS
        for freshness in Freshness
    }
    assert {labels: n for labels, n in counted.items() if n} == {
        ("key", "BackedUp"): 1,
        ("key", "Unchanged"): 2,
        ("secret", "Refreshed"): 1,
    }
    assert set(counted.values()) == {0, 1, 2}  # every series exists from the start


def test_a_restore_counts_no_freshness() -> None:
    metrics = OperatorMetrics()

    with metrics.run(RESTORE) as run:
        run.finished("Succeeded", [ItemOutcome("a", ItemResult.RESTORED)])

    assert value(metrics, "kvbackup_item_freshness_total", kind="key", freshness="BackedUp") == 0


def test_an_interrupted_run_leaves_flight_but_is_not_counted() -> None:
    metrics = OperatorMetrics()

    with pytest.raises(asyncio.CancelledError), metrics.run(BACKUP):
        raise asyncio.CancelledError

    assert value(metrics, "kvbackup_runs_in_flight", run="backup") == 0
    assert value(metrics, "kvbackup_run_duration_seconds_count", run="backup") == 0
    assert sum(v for (name, _), v in samples(metrics).items() if name == "kvbackup_runs_total") == 0


def test_every_result_a_user_graphs_exists_at_zero_from_the_start() -> None:
    metrics = OperatorMetrics()
    for run in ("backup", "restore", "dry-run"):
        assert value(metrics, "kvbackup_runs_in_flight", run=run) == 0
        for result in ("Succeeded", "PartiallyFailed", "Failed"):
            assert value(metrics, "kvbackup_runs_total", run=run, result=result) == 0
    for kind in ("key", "secret", "certificate"):
        assert value(metrics, "kvbackup_items_total", run="backup", kind=kind, result="Failed") == 0
        assert (
            value(metrics, "kvbackup_items_total", run="restore", kind=kind, result="Recovered")
            == 0
        )
        assert (
            value(metrics, "kvbackup_items_total", run="dry-run", kind=kind, result="WouldRestore")
            == 0
        )
    # Only the results a run can report: a backup restores nothing.
    assert (
        value(metrics, "kvbackup_items_total", run="backup", kind="key", result="Restored") is None
    )


def test_a_running_keybackup_keeps_its_failing_flag_and_a_deleted_one_leaves_no_series() -> None:
    metrics = OperatorMetrics()
    ours = {"namespace": "payments", "name": "keys"}
    metrics.observe_keybackup(
        "payments", "keys", KeyBackupReadings(1.0e9, 86400.0, 4015, 0.9e9, failing=True)
    )
    metrics.observe_keybackup("payments", "keys", KeyBackupReadings(1.0e9, None, 4015, 0.9e9))

    assert value(metrics, "kvbackup_keybackup_failing", **ours) == 1
    assert value(metrics, "kvbackup_keybackup_schedule_interval_seconds", **ours) is None
    assert value(metrics, "kvbackup_keybackup_last_success_timestamp_seconds", **ours) == 1.0e9
    assert value(metrics, "kvbackup_keybackup_oldest_artifact_timestamp_seconds", **ours) == 0.9e9

    metrics.forget_keybackup("payments", "keys")

    assert not [labels for (_, labels) in samples(metrics) if ("name", "keys") in labels]


def test_a_replica_that_stops_leading_drops_every_keybackups_series_and_says_it_stands_by() -> None:
    metrics = OperatorMetrics()
    assert value(metrics, "kvbackup_leader") == 0
    metrics.started_leading()
    for name in ("keys", "tokens"):
        metrics.observe_keybackup(
            "payments", name, KeyBackupReadings(1.0e9, 86400.0, 4015, 0.9e9, True)
        )
    assert value(metrics, "kvbackup_leader") == 1

    metrics.stopped_leading()

    assert value(metrics, "kvbackup_leader") == 0
    assert not [labels for (_, labels) in samples(metrics) if ("namespace", "payments") in labels]
    assert value(metrics, "kvbackup_runs_total", run="backup", result="Succeeded") == 0


def test_the_build_info_names_the_operator_python_and_kopf_versions() -> None:
    (labels,) = [
        dict(labels) for name, labels in samples(OperatorMetrics()) if name == "kvbackup_build_info"
    ]
    assert labels == {
        "version": __version__,
        "python_version": platform.python_version(),
        "kopf_version": importlib.metadata.version("kopf"),
    }
    assert value(OperatorMetrics(), "kvbackup_build_info", **labels) == 1


# --- Key Vault calls ---------------------------------------------------------------


def http_error(status_code: int) -> HttpResponseError:
    error = HttpResponseError(message="no", response=None)
    error.status_code = status_code
    return error


async def _no_sleep(_: float) -> None:
    return None


async def test_every_attempt_at_a_call_is_counted_by_operation_kind_and_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "kvbackup.adapters.keyvault.retry_per_call", partial(retry_per_call, sleep=_no_sleep)
    )
    metrics = OperatorMetrics()
    items = KeyVaultItems(
        sdk={},  # only _request is used
        pace=VaultPace(100.0),
        slots=FairSlots(1),
        calls=metrics.vault("v.vault.azure.net"),
    )
    answers: list[BaseException | bytes] = [
        http_error(429),  # retried
        http_error(503),  # retried
        http_error(404),  # the call fails
        ServiceRequestError("connection refused"),  # the next one too
        b"backup",
    ]

    async def send() -> bytes:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    with pytest.raises(KvBackupError, match="HTTP 404"):
        await items._request(VaultOperation.GET_DELETED, ItemKind.KEY, "read key a", send)
    with pytest.raises(KvBackupError, match="cannot reach"):
        await items._request(VaultOperation.BACKUP, ItemKind.SECRET, "back up secret a", send)
    assert (
        await items._request(VaultOperation.BACKUP, ItemKind.SECRET, "back up secret a", send)
        == b"backup"
    )

    def calls(operation: str, kind: str, code: str) -> float | None:
        return value(
            metrics,
            "kvbackup_keyvault_calls_total",
            vault="v.vault.azure.net",
            operation=operation,
            kind=kind,
            code=code,
        )

    assert [calls("get_deleted", "key", code) for code in ("429", "503", "404")] == [1, 1, 1]
    assert [calls("backup", "secret", code) for code in ("none", "2xx")] == [1, 1]
    assert calls("backup", "key", "2xx") is None
    # The 429 without Retry-After halved the vault's pace.
    assert items._pace.rate < 100.0


def test_each_vaults_pace_is_read_when_scraped() -> None:
    metrics = OperatorMetrics()
    rates = {"a.vault.azure.net": 200.0}
    metrics.follow_paces(lambda: rates.items())

    rates["a.vault.azure.net"] = 50.0

    assert value(metrics, "kvbackup_keyvault_pace_rate", vault="a.vault.azure.net") == 50.0


@pytest.mark.parametrize(
    ("url", "host"),
    [
        pytest.param("https://Payments.vault.azure.net", "payments.vault.azure.net", id="host"),
        pytest.param("https://payments.vault.azure.net/", "payments.vault.azure.net", id="slash"),
        pytest.param("https://127.0.0.1:8443", "127.0.0.1:8443", id="with-port"),
    ],
)
def test_a_vault_is_labelled_by_its_host_alone(url: str, host: str) -> None:
    assert vault_host(url) == host
