"""A KeyRestore's status beside its one reader: the documents and Events of a restore
attempt (started, progress with its journal, finished, failed), and
``read_keyrestore_status``, all the operator reads back of it to finish or resume one."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from kvbackup.api.conditions import Phase, Standing, timestamp
from kvbackup.api.fields import SNAPSHOT_ID
from kvbackup.api.statuses import KeyRestoreStatus, RestoreAttempt
from kvbackup.presentation.item_results import entries_by_kind, restore_counts, restore_summary
from kvbackup.presentation.status import (
    PHASE_STANDING,
    Event,
    Update,
    failed_standing,
    failure_event,
    finished_event,
    finished_standing,
    merged_conditions,
)
from kvbackup.services.journal import KeyRestoreStatusView, RestoreJournal
from kvbackup.services.restore import RestoreReport
from kvbackup.services.retry_policy import Verdict

#: Ready's and Reconciling's reason while a run is under way.
RESTORE_RUNNING = "RestoreRunning"


def read_keyrestore_status(status: Mapping[str, Any]) -> KeyRestoreStatusView:
    """What the operator reads back of a KeyRestore's status. Anyone who may patch the
    status can write anything into it: a generation that is not a number reads as absent,
    and an id that is not a snapshot id (in full) carries no journal over."""
    active = status.get("activeRun")
    attempt = active if isinstance(active, Mapping) else {}
    observed, generation = status.get("observedGeneration"), attempt.get("generation")
    snapshot_id = attempt.get("snapshotId")
    if not isinstance(snapshot_id, str) or not SNAPSHOT_ID.fullmatch(snapshot_id):
        snapshot_id = ""
    return KeyRestoreStatusView(
        observed_generation=observed if isinstance(observed, int) else None,
        attempt_generation=generation if isinstance(generation, int) else None,
        journal_snapshot_id=snapshot_id,
        item_results=str(attempt.get("itemResults") or "") if snapshot_id else "",
    )


def _journal_fields(journal: RestoreJournal) -> RestoreAttempt:
    if not journal.begun:  # this attempt got no further than the earlier one
        return {}
    return {"snapshotId": journal.snapshot_id, "itemResults": journal.encoded()}


def restore_started(
    existing: Mapping[str, Any], generation: int, moment: datetime.datetime, *, dry_run: bool
) -> Update[KeyRestoreStatus]:
    started = timestamp(moment)
    attempt: RestoreAttempt = {"generation": generation, "startTime": started}
    if read_keyrestore_status(existing).resumes(generation):
        attempt["startTime"] = started = existing["activeRun"].get("startTime", started)
    else:  # nothing of an attempt at another generation carries over
        attempt |= {"itemsDone": None, "itemsTotal": None, "snapshotId": None, "itemResults": None}
    doing = (
        "dry run: reading the snapshot and the vault"
        if dry_run
        else "restoring from the snapshot into the vault"
    )
    standing = Standing(False, RESTORE_RUNNING, doing, reconciling=RESTORE_RUNNING)
    return Update(
        {
            "phase": Phase.RUNNING.value,
            "startTime": started,
            "activeRun": attempt,
            "conditions": merged_conditions(existing, standing, generation, moment),
        }
    )


def restore_progress(done: int, total: int, journal: RestoreJournal) -> Update[KeyRestoreStatus]:
    """``done`` of ``total`` items, of every kind the restore brings back, and the journal."""
    attempt: RestoreAttempt = {"itemsDone": done, "itemsTotal": total, **_journal_fields(journal)}
    return Update({"activeRun": attempt})


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
    items_limit: int,
) -> Update[KeyRestoreStatus]:
    """The restore's outcome; each kind's list holds at most ``items_limit`` entries."""
    moment = report.completion_time
    phase = report.phase
    reason, ready = PHASE_STANDING.get(phase, ("Failed", False))
    outcomes = report.outcomes
    message = restore_summary(outcomes, dry_run=report.dry_run)
    if report.reminder:
        message = f"{message}; {report.reminder}"
    event = finished_event("Restore", phase, message)
    if report.dry_run:
        reason = "DryRunSucceeded"
        event = Event(event.type, reason, message)
    standing = finished_standing(reason, ready, message, outcomes)
    return Update(
        {
            "phase": phase.value,
            "observedGeneration": generation,
            "activeRun": None,
            "dryRun": report.dry_run,
            "startTime": timestamp(report.start_time),
            "completionTime": timestamp(moment),
            "source": {
                "keyBackup": keybackup,
                "snapshotId": report.snapshot_id,
                "copy": report.copy or None,
                "fellBack": list(report.fallbacks) or None,
            },
            "counts": restore_counts(outcomes, dry_run=report.dry_run),
            **entries_by_kind(outcomes, items_limit, with_version_ids=True),
            "conditions": merged_conditions(existing, standing, generation, moment),
        },
        (event, *_fallback_events(report), *_reminder_events(report)),
    )


def _reminder_events(report: RestoreReport) -> tuple[Event, ...]:
    if not report.reminder:
        return ()
    return (Event("Warning", "OtherVault", report.reminder),)


def _fallback_events(report: RestoreReport) -> tuple[Event, ...]:
    if not report.fallbacks:
        return ()
    return (
        Event(
            "Warning",
            "ReadFromOtherCopy",
            f"fell back to another copy than the one named ({len(report.fallbacks)} "
            f"time(s); the manifest came from copy {report.copy}): {report.fallbacks[0]}",
        ),
    )


def restore_failed(
    existing: Mapping[str, Any],
    verdict: Verdict,
    generation: int,
    moment: datetime.datetime,
    journal: RestoreJournal,
) -> Update[KeyRestoreStatus]:
    """A restore that could not finish; a final verdict ends this generation, and any other
    leaves what each item came to for the next attempt."""
    conditions = merged_conditions(existing, failed_standing(verdict), generation, moment)
    status: KeyRestoreStatus = {"phase": Phase.FAILED.value, "conditions": conditions}
    if verdict.final:
        status |= {"observedGeneration": generation, "activeRun": None}
    elif journal_fields := _journal_fields(journal):
        status["activeRun"] = journal_fields
    return Update(status, (failure_event(verdict),))
