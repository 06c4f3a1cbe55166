"""Status documents for KeyBackup and KeyRestore, built from run reports and errors.

Each function returns a merge patch for ``.status``; ``None`` values remove fields.
Backup bytes and credentials never reach these documents: only names, digests, sizes,
version ids and reasons do.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from kvbackup.api.conditions import Condition, Phase, timestamp
from kvbackup.errors import KvBackupError
from kvbackup.services.backup import BackupReport
from kvbackup.services.outcomes import KeyOutcome, KeyResult
from kvbackup.services.restore import RestoreReport

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
        if with_version_ids:
            entry["versions"] = list(outcome.versions)
        else:
            entry["versionCount"] = len(outcome.versions)
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


def backup_started(
    existing: Mapping[str, Any],
    generation: int,
    snapshot_id: str,
    trigger: str | None,
    moment: datetime.datetime,
) -> dict[str, Any]:
    return {
        "phase": Phase.RUNNING.value,
        "activeRun": {
            "snapshotId": snapshot_id,
            "generation": generation,
            "trigger": trigger,
            "startTime": timestamp(moment),
        },
        "conditions": _conditions(
            existing,
            Condition(
                READY, False, "Running", f"backing up into snapshot {snapshot_id}", generation
            ),
            moment,
        ),
    }


def backup_finished(
    existing: Mapping[str, Any],
    report: BackupReport,
    generation: int,
    trigger: str | None,
    keys_limit: int,
) -> dict[str, Any]:
    moment = report.completion_time
    phase = report.phase
    reason, ready = _SUMMARY.get(phase, ("Failed", False))
    failed = _count(report.keys, KeyResult.FAILED)
    succeeded = len(report.keys) - failed
    message = f"backed up {succeeded} of {len(report.keys)} key(s) into snapshot " + (
        report.snapshot_id if report.manifest_written else f"{report.snapshot_id} (not kept)"
    )
    status: dict[str, Any] = {
        "phase": phase.value,
        "observedGeneration": generation,
        "lastHandledTrigger": trigger,
        "activeRun": None,
        "conditions": _conditions(
            existing, Condition(READY, ready, reason, message, generation), moment
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
    generation: int,
    trigger: str | None,
    moment: datetime.datetime,
) -> dict[str, Any]:
    """A permanent failure: this generation and trigger are handled, no retry."""
    return run_failed(existing, error, generation, moment, None) | {
        "observedGeneration": generation,
        "lastHandledTrigger": trigger,
        "activeRun": None,
    }


def restore_started(
    existing: Mapping[str, Any], generation: int, moment: datetime.datetime
) -> dict[str, Any]:
    return {
        "phase": Phase.RUNNING.value,
        "startTime": timestamp(moment),
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
        "startTime": timestamp(report.start_time),
        "completionTime": timestamp(moment),
        "source": {"keyBackup": keybackup, "snapshotId": report.snapshot_id},
        "counts": counts,
        "keys": _key_entries(report.keys, keys_limit, with_version_ids=True),
        "conditions": _conditions(
            existing, Condition(READY, ready, reason, message, generation), moment
        ),
    }
