"""Status documents and Events for KeyBackup and KeyRestore, built from run reports and
verdicts.

Each builder returns an ``Update``: a merge patch for ``.status`` (``None`` values remove
fields) and the Events that tell the same story. Backup bytes and credentials never reach
these documents: only names, digests, sizes, version ids and reasons do.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kvbackup.api.conditions import (
    READY,
    RETRY_SCHEDULED,
    Phase,
    Standing,
    all_of_generation,
    restamped,
    timestamp,
)
from kvbackup.api.fields import SNAPSHOT_ID
from kvbackup.api.statuses import (
    BackupRunRequest,
    ConditionDocument,
    KeyBackupStatus,
    KeyRestoreStatus,
    RestoreAttempt,
    SnapshotSummaryDocument,
)
from kvbackup.errors import InvalidSpecError
from kvbackup.presentation.key_results import count, key_entries, restore_counts, restore_summary
from kvbackup.services.backup import BackupReport, KeptSnapshot
from kvbackup.services.journal import RestoreJournal
from kvbackup.services.outcomes import KeyOutcome, KeyResult
from kvbackup.services.restore import RestoreReport
from kvbackup.services.retry_policy import Verdict
from kvbackup.services.triggers import RunRequest

#: How many snapshots a KeyBackup's status lists (storage may hold more).
SNAPSHOTS_IN_STATUS = 10
#: How many failed keys a Stalled condition's message names (status.keys lists more).
FAILED_KEYS_IN_MESSAGE = 5

#: Ready's and Reconciling's reason while a run is under way.
BACKUP_RUNNING = "BackupRunning"
RESTORE_RUNNING = "RestoreRunning"

_SUMMARY = {
    Phase.SUCCEEDED: ("Succeeded", True),
    Phase.PARTIALLY_FAILED: ("PartiallyFailed", False),
    Phase.FAILED: ("Failed", False),
}
_BACKUP_EVENTS = {
    Phase.SUCCEEDED: ("Normal", "BackupSucceeded"),
    Phase.PARTIALLY_FAILED: ("Warning", "BackupPartiallyFailed"),
    Phase.FAILED: ("Warning", "BackupFailed"),
}
_RESTORE_EVENTS = {
    Phase.SUCCEEDED: ("Normal", "RestoreSucceeded"),
    Phase.PARTIALLY_FAILED: ("Warning", "RestorePartiallyFailed"),
    Phase.FAILED: ("Warning", "RestoreFailed"),
}


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


StatusT = TypeVar("StatusT", KeyBackupStatus, KeyRestoreStatus)


@dataclass(frozen=True)
class Update(Generic[StatusT]):
    status: StatusT
    events: tuple[Event, ...] = ()


def _conditions(
    existing: Mapping[str, Any], standing: Standing, generation: int, moment: datetime.datetime
) -> list[ConditionDocument]:
    return standing.merged_into(list(existing.get("conditions") or []), generation, moment)


def _finished(reason: str, ready: bool, message: str, keys: Sequence[KeyOutcome]) -> Standing:
    """A run that ended: Ready, or Stalled naming the keys that failed, since running the
    same spec again would fail them again."""
    if ready:
        return Standing(True, reason, message)
    failed = [key for key in keys if key.result.failed]
    named = [
        f"{key.name}: {key.result.value}" + (f" ({key.reason})" if key.reason else "")
        for key in failed[:FAILED_KEYS_IN_MESSAGE]
    ]
    if len(failed) > FAILED_KEYS_IN_MESSAGE:
        named.append(f"{len(failed) - FAILED_KEYS_IN_MESSAGE} more in status.keys")
    return Standing(False, reason, message, stalled="; ".join([message, *named]))


def _failed(verdict: Verdict) -> Standing:
    """A run that could not finish: Stalled when final, else Reconciling until its retry."""
    reason, described = verdict.error.reason, verdict.describe()
    if verdict.final:
        return Standing(False, reason, described, stalled=described)
    return Standing(False, reason, described, reconciling=RETRY_SCHEDULED)


def _handled(request: RunRequest) -> KeyBackupStatus:
    """The fields that mark ``request`` as handled, so it is not run again."""
    fields: KeyBackupStatus = {"observedGeneration": request.generation, "activeRun": None}
    if request.trigger is not None:
        fields["lastHandledTrigger"] = request.trigger
    if request.slot is not None:
        fields["lastScheduleTime"] = timestamp(request.slot)
    return fields


def snapshot_entries(kept: Sequence[KeptSnapshot]) -> list[SnapshotSummaryDocument]:
    return [
        {
            "id": k.summary.snapshot_id,
            "completionTime": timestamp(k.summary.completion_time),
            "keys": k.summary.keys,
            "failedKeys": k.summary.failed_keys,
            "bytes": k.summary.total_bytes,
            "location": k.location,
        }
        for k in kept[:SNAPSHOTS_IN_STATUS]
    ]


def schedule_status(next_slot: datetime.datetime | None) -> KeyBackupStatus:
    return {"nextScheduleTime": timestamp(next_slot) if next_slot else None}


def schedule_acknowledged(
    existing: Mapping[str, Any],
    generation: int,
    next_slot: datetime.datetime | None,
    moment: datetime.datetime,
) -> KeyBackupStatus | None:
    """A scheduled KeyBackup's spec change starts no run, but status must reflect it, its
    conditions included, so that `kubectl wait --for=condition=Ready` after an apply
    returns; None when it does already.

    Before its first run it is Scheduled and Ready, saying when that run comes; so is one
    whose last verdict was an invalid spec, since this spec is valid. Otherwise its last
    run's outcome stands (a failed run stays Stalled until a run succeeds), now said of
    this generation.
    """
    wanted: KeyBackupStatus = {"observedGeneration": generation} | schedule_status(next_slot)
    conditions = list(existing.get("conditions") or [])
    ready = next((c for c in conditions if isinstance(c, dict) and c.get("type") == READY), {})
    waiting = existing.get("phase") in (None, Phase.SCHEDULED.value) or (
        ready.get("reason") == InvalidSpecError.reason
    )
    if waiting:
        wanted["phase"] = Phase.SCHEDULED.value
    if all(existing.get(key) == value for key, value in wanted.items()) and all_of_generation(
        conditions, generation
    ):
        return None
    if waiting:
        standing = Standing(True, *_waiting(next_slot, first="lastRun" not in existing))
        wanted["conditions"] = _conditions(existing, standing, generation, moment)
    else:
        wanted["conditions"] = restamped(conditions, generation)
    return wanted


def _waiting(next_slot: datetime.datetime | None, *, first: bool) -> tuple[str, str]:
    """The reason and message of a KeyBackup waiting for its (first) scheduled run."""
    if next_slot is None:
        return "Suspended", "the schedule is suspended: no run until kvbackup.io/backup-now is set"
    return "Scheduled", f"{'first' if first else 'next'} run at {timestamp(next_slot)}"


def _failure_event(verdict: Verdict) -> Event:
    return Event("Warning", verdict.error.reason, verdict.error.message)


def backup_started(
    existing: Mapping[str, Any], request: RunRequest, snapshot_id: str, moment: datetime.datetime
) -> Update[KeyBackupStatus]:
    active: BackupRunRequest = {
        "generation": request.generation,
        "trigger": request.trigger,
        "slot": timestamp(request.slot) if request.slot else None,
        "snapshotId": snapshot_id,
        "startTime": timestamp(moment),
    }
    message = f"backing up into snapshot {snapshot_id}"
    standing = Standing(False, BACKUP_RUNNING, message, reconciling=BACKUP_RUNNING)
    return Update(
        {
            "phase": Phase.RUNNING.value,
            "activeRun": active,
            "conditions": _conditions(existing, standing, request.generation, moment),
        },
        (Event("Normal", "BackupStarted", f"backing up into {snapshot_id}"),),
    )


def backup_progress(done: int, total: int) -> Update[KeyBackupStatus]:
    return Update({"activeRun": {"keysDone": done, "keysTotal": total}})


def backup_finished(
    existing: Mapping[str, Any],
    report: BackupReport,
    request: RunRequest,
    keys_limit: int,
    next_slot: datetime.datetime | None,
) -> Update[KeyBackupStatus]:
    moment = report.completion_time
    phase = report.phase
    reason, ready = _SUMMARY.get(phase, ("Failed", False))
    failed = count(report.keys, KeyResult.FAILED)
    succeeded = len(report.keys) - failed
    message = f"backed up {succeeded} of {len(report.keys)} key(s) into snapshot " + (
        report.snapshot_id if report.manifest_written else f"{report.snapshot_id} (not kept)"
    )
    standing = _finished(reason, ready, message, report.keys)
    status: KeyBackupStatus = (
        _handled(request)
        | schedule_status(next_slot)
        | {
            "phase": phase.value,
            "conditions": _conditions(existing, standing, request.generation, moment),
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
            "keys": key_entries(report.keys, keys_limit, with_version_ids=False),
        }
    )
    if report.kept is not None:
        status["snapshots"] = snapshot_entries(report.kept)
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
    kind, event_reason = _BACKUP_EVENTS[phase]
    events = [Event(kind, event_reason, message)]
    if report.retention_error is not None:
        events.append(Event("Warning", "RetentionFailed", report.retention_error.message))
    return Update(status, tuple(events))


def backup_failed(
    existing: Mapping[str, Any], verdict: Verdict, request: RunRequest, moment: datetime.datetime
) -> Update[KeyBackupStatus]:
    """A run that could not finish. A final verdict handles the request: it is not run
    again until something changes."""
    conditions = _conditions(existing, _failed(verdict), request.generation, moment)
    status: KeyBackupStatus = {"phase": Phase.FAILED.value, "conditions": conditions}
    if verdict.final:
        status |= _handled(request)
    return Update(status, (_failure_event(verdict),))


def restore_resumes(existing: Mapping[str, Any], generation: int) -> bool:
    """Whether an earlier attempt at this generation started and did not finish."""
    return bool((existing.get("activeRun") or {}).get("generation") == generation)


def restore_journal(existing: Mapping[str, Any], generation: int) -> RestoreJournal:
    """What each key came to in the interrupted attempt at this generation, if any."""
    if not restore_resumes(existing, generation):
        return RestoreJournal()
    attempt = existing["activeRun"]
    # Status may be edited: an id that is not a snapshot id carries nothing over.
    snapshot_id = attempt.get("snapshotId")
    if not isinstance(snapshot_id, str) or not SNAPSHOT_ID.fullmatch(snapshot_id):
        return RestoreJournal()
    return RestoreJournal(snapshot_id=snapshot_id, carried=str(attempt.get("keyResults") or ""))


def _journal_fields(journal: RestoreJournal) -> RestoreAttempt:
    if not journal.begun:  # this attempt got no further than the earlier one
        return {}
    return {"snapshotId": journal.snapshot_id, "keyResults": journal.encoded()}


def restore_finished_already(existing: Mapping[str, Any], generation: int) -> bool:
    """Whether this generation ended already (restored, or failed for good): a restart or
    another replica must not redo it. Only a final outcome sets ``observedGeneration``."""
    return existing.get("observedGeneration") == generation


def restore_started(
    existing: Mapping[str, Any], generation: int, moment: datetime.datetime, *, dry_run: bool
) -> Update[KeyRestoreStatus]:
    started = timestamp(moment)
    attempt: RestoreAttempt = {"generation": generation, "startTime": started}
    if restore_resumes(existing, generation):
        attempt["startTime"] = started = existing["activeRun"].get("startTime", started)
    else:  # nothing of an attempt at another generation carries over
        attempt |= {"keysDone": None, "keysTotal": None, "snapshotId": None, "keyResults": None}
    doing = "dry run: reading the snapshot and the vault" if dry_run else "restoring keys"
    standing = Standing(False, RESTORE_RUNNING, doing, reconciling=RESTORE_RUNNING)
    return Update(
        {
            "phase": Phase.RUNNING.value,
            "startTime": started,
            "activeRun": attempt,
            "conditions": _conditions(existing, standing, generation, moment),
        }
    )


def restore_progress(done: int, total: int, journal: RestoreJournal) -> Update[KeyRestoreStatus]:
    return Update({"activeRun": {"keysDone": done, "keysTotal": total} | _journal_fields(journal)})


def restore_source_opened(snapshot_id: str, *, dry_run: bool) -> Event:
    if dry_run:
        return Event(
            "Normal",
            "DryRunStarted",
            f"dry run: reading snapshot {snapshot_id} and the vault, changing nothing",
        )
    return Event("Normal", "RestoreStarted", f"restoring from snapshot {snapshot_id}")


def restore_finished(
    existing: Mapping[str, Any],
    report: RestoreReport,
    keybackup: str,
    generation: int,
    keys_limit: int,
) -> Update[KeyRestoreStatus]:
    moment = report.completion_time
    phase = report.phase
    reason, ready = _SUMMARY.get(phase, ("Failed", False))
    message = restore_summary(report.keys, dry_run=report.dry_run)
    kind, event_reason = _RESTORE_EVENTS[phase]
    if report.dry_run:
        reason = event_reason = "DryRunSucceeded"
    standing = _finished(reason, ready, message, report.keys)
    return Update(
        {
            "phase": phase.value,
            "observedGeneration": generation,
            "activeRun": None,
            "dryRun": report.dry_run,
            "startTime": timestamp(report.start_time),
            "completionTime": timestamp(moment),
            "source": {"keyBackup": keybackup, "snapshotId": report.snapshot_id},
            "counts": restore_counts(report.keys, dry_run=report.dry_run),
            "keys": key_entries(report.keys, keys_limit, with_version_ids=True),
            "conditions": _conditions(existing, standing, generation, moment),
        },
        (Event(kind, event_reason, message),),
    )


def restore_failed(
    existing: Mapping[str, Any],
    verdict: Verdict,
    generation: int,
    moment: datetime.datetime,
    journal: RestoreJournal,
) -> Update[KeyRestoreStatus]:
    """A restore that could not finish; a final verdict ends this generation, and any other
    leaves what each key came to for the next attempt."""
    conditions = _conditions(existing, _failed(verdict), generation, moment)
    status: KeyRestoreStatus = {"phase": Phase.FAILED.value, "conditions": conditions}
    if verdict.final:
        status |= {"observedGeneration": generation, "activeRun": None}
    elif journal_fields := _journal_fields(journal):
        status["activeRun"] = journal_fields
    return Update(status, (_failure_event(verdict),))


def backups_deleted(count: int) -> Event:
    return Event("Normal", "BackupsDeleted", f"deleted {count} snapshot(s)")


def backups_not_deleted(verdict: Verdict, attempts: int, left_behind: str) -> Event:
    """``left_behind`` says where the snapshots that remain are."""
    return Event(
        "Warning",
        "BackupsNotDeleted",
        f"gave up after {attempts} attempt(s), left behind: {left_behind}; {verdict.error.message}",
    )
