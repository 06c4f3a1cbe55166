"""Status documents for KeyBackup and KeyRestore, built from run reports and errors.

Each function returns a merge patch for ``.status``; ``None`` values remove fields.
Backup bytes and credentials never reach these documents: only names, digests, sizes,
version ids and reasons do.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kvbackup.api.conditions import Condition, Phase, timestamp
from kvbackup.errors import KvBackupError
from kvbackup.services.backup import BackupReport
from kvbackup.services.outcomes import KeyOutcome, KeyResult
from kvbackup.services.restore import RestoreReport
from kvbackup.services.snapshot import Manifest
from kvbackup.services.triggers import RunRequest

READY = "Ready"

_SUMMARY = {
    Phase.SUCCEEDED: ("Succeeded", True),
    Phase.PARTIALLY_FAILED: ("PartiallyFailed", False),
    Phase.FAILED: ("Failed", False),
}


def _conditions(
    existing: Mapping[str, Any], condition: Condition, moment: datetime.datetime
) -> list[dict[str, Any]]:
    return condition.merged_into(list(existing.get("conditions") or []), moment)


def _key_entries(
    outcomes: Sequence[KeyOutcome], limit: int, *, with_version_ids: bool
) -> list[dict[str, Any]]:
    """Failures first, so a bounded list never hides a failed key behind successes."""
    ordered = sorted(outcomes, key=lambda o: (not o.failed, o.name.lower()))
    entries = []
    for outcome in ordered[:limit]:
        entry: dict[str, Any] = {"name": outcome.name, "result": outcome.result.value}
        entry["versionCount"] = len(outcome.versions)
        if with_version_ids:
            # Bounded: a key rotated daily for years has thousands of versions.
            entry["versions"] = list(outcome.versions[-VERSION_IDS_PER_KEY:])
        if outcome.sha256:
            entry["sha256"] = outcome.sha256
            entry["size"] = outcome.size
        if outcome.reason:
            entry["reason"] = outcome.reason
        if outcome.message:
            entry["message"] = outcome.message
        entries.append(entry)
    return entries


def _count(outcomes: Sequence[KeyOutcome], result: KeyResult) -> int:
    return sum(1 for outcome in outcomes if outcome.result is result)


#: How many (newest) version ids a restored key lists in status.
VERSION_IDS_PER_KEY = 20

#: How many snapshots a KeyBackup's status lists (storage may hold more).
SNAPSHOTS_IN_STATUS = 10


def _request_fields(request: RunRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {"observedGeneration": request.generation, "activeRun": None}
    if request.trigger is not None:
        fields["lastHandledTrigger"] = request.trigger
    if request.slot is not None:
        fields["lastScheduleTime"] = timestamp(request.slot)
    return fields


def snapshot_entries(snapshots: Sequence[Manifest], location: Callable[[str], str]) -> list[Any]:
    return [
        {
            "id": m.snapshot_id,
            "completionTime": timestamp(m.completion_time),
            "keys": len(m.keys),
            "failedKeys": len(m.failures),
            "bytes": m.total_bytes,
            "location": location(m.snapshot_id),
        }
        for m in snapshots[:SNAPSHOTS_IN_STATUS]
    ]


def backup_started(
    existing: Mapping[str, Any],
    request: RunRequest,
    snapshot_id: str,
    moment: datetime.datetime,
) -> dict[str, Any]:
    return {
        "phase": Phase.RUNNING.value,
        "activeRun": request.as_status()
        | {"snapshotId": snapshot_id, "startTime": timestamp(moment)},
        "conditions": _conditions(
            existing,
            Condition(
                READY,
                False,
                "Running",
                f"backing up into snapshot {snapshot_id}",
                request.generation,
            ),
            moment,
        ),
    }


def backup_finished(
    existing: Mapping[str, Any],
    report: BackupReport,
    request: RunRequest,
    keys_limit: int,
    snapshots: list[Any] | None,
) -> dict[str, Any]:
    """``snapshots``: entries of the snapshots kept after retention, None if unknown."""
    moment = report.completion_time
    phase = report.phase
    reason, ready = _SUMMARY.get(phase, ("Failed", False))
    failed = _count(report.keys, KeyResult.FAILED)
    succeeded = len(report.keys) - failed
    message = f"backed up {succeeded} of {len(report.keys)} key(s) into snapshot " + (
        report.snapshot_id if report.manifest_written else f"{report.snapshot_id} (not kept)"
    )
    status: dict[str, Any] = _request_fields(request) | {
        "phase": phase.value,
        "conditions": _conditions(
            existing, Condition(READY, ready, reason, message, request.generation), moment
        ),
        "lastRun": {
            "snapshotId": report.snapshot_id,
            "startTime": timestamp(report.start_time),
            "completionTime": timestamp(moment),
            "phase": phase.value,
            "keysTotal": len(report.keys),
            "keysSucceeded": succeeded,
            "keysFailed": failed,
            "bytes": report.total_bytes,
        },
        "keys": _key_entries(report.keys, keys_limit, with_version_ids=False),
    }
    if snapshots is not None:
        status["snapshots"] = snapshots
    if report.manifest_written:
        status["lastSnapshot"] = {
            "id": report.snapshot_id,
            "startTime": timestamp(report.start_time),
            "completionTime": timestamp(moment),
            "keys": succeeded,
            "bytes": report.total_bytes,
            "location": report.location,
        }
    if phase is Phase.SUCCEEDED:
        status["lastSuccessfulTime"] = timestamp(moment)
    return status


def schedule_status(next_run: datetime.datetime | None) -> dict[str, Any]:
    return {"nextScheduleTime": timestamp(next_run) if next_run else None}


def run_failed(
    existing: Mapping[str, Any],
    error: KvBackupError,
    generation: int,
    moment: datetime.datetime,
    retry_in: float | None,
) -> dict[str, Any]:
    """A run that could not finish; ``retry_in`` is None when only a spec change helps."""
    message = error.message + (f" (retrying in {retry_in:.0f}s)" if retry_in is not None else "")
    status: dict[str, Any] = {
        "phase": Phase.FAILED.value,
        "conditions": _conditions(
            existing, Condition(READY, False, error.reason, message, generation), moment
        ),
    }
    return status


def backup_given_up(
    existing: Mapping[str, Any],
    error: KvBackupError,
    request: RunRequest,
    moment: datetime.datetime,
) -> dict[str, Any]:
    """A permanent failure: this request is handled, no retry until something changes."""
    return run_failed(existing, error, request.generation, moment, None) | _request_fields(request)


def restore_resumes(existing: Mapping[str, Any], generation: int) -> bool:
    """Whether an earlier attempt at this generation started and did not finish."""
    return bool((existing.get("activeRun") or {}).get("generation") == generation)


def restore_started(
    existing: Mapping[str, Any], generation: int, moment: datetime.datetime
) -> dict[str, Any]:
    started = timestamp(moment)
    if restore_resumes(existing, generation):
        started = existing["activeRun"].get("startTime", started)
    return {
        "phase": Phase.RUNNING.value,
        "startTime": started,
        "activeRun": {"generation": generation, "startTime": started},
        "conditions": _conditions(
            existing, Condition(READY, False, "Running", "restoring keys", generation), moment
        ),
    }


def restore_finished(
    existing: Mapping[str, Any],
    report: RestoreReport,
    keybackup: str,
    generation: int,
    keys_limit: int,
) -> dict[str, Any]:
    moment = report.completion_time
    phase = report.phase
    reason, ready = _SUMMARY.get(phase, ("Failed", False))
    counts = {
        "restored": _count(report.keys, KeyResult.RESTORED),
        "recovered": _count(report.keys, KeyResult.RECOVERED),
        "skipped": _count(report.keys, KeyResult.SKIPPED),
        "failed": _count(report.keys, KeyResult.FAILED),
    }
    message = ", ".join(f"{count} {word}" for word, count in counts.items())
    return {
        "phase": phase.value,
        "observedGeneration": generation,
        "activeRun": None,
        "startTime": timestamp(report.start_time),
        "completionTime": timestamp(moment),
        "source": {"keyBackup": keybackup, "snapshotId": report.snapshot_id},
        "counts": counts,
        "keys": _key_entries(report.keys, keys_limit, with_version_ids=True),
        "conditions": _conditions(
            existing, Condition(READY, ready, reason, message, generation), moment
        ),
    }
