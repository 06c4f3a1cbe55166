"""A KeyBackup's status beside its one reader: the documents and Events of a backup run
(started, progress, finished, failed), of a schedule acknowledged and of a deletion, and
``read_keybackup_status``, all the operator reads back of it to plan the next run."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from kvbackup.api.conditions import READY, Phase, Standing, all_of_generation, restamped, timestamp
from kvbackup.api.fields import NAMESPACE_NAME, SNAPSHOT_ID
from kvbackup.api.keybackup import COPIES_MAX
from kvbackup.api.kinds import ItemKind
from kvbackup.api.statuses import (
    BackupRunRequest,
    BackupRunSummary,
    KeyBackupStatus,
    LastSnapshot,
    LeftOut,
)
from kvbackup.errors import InvalidSpecError
from kvbackup.presentation.copies_status import (
    COMPLETE,
    FAILED,
    copy_entries,
    copy_events,
    with_copies_condition,
)
from kvbackup.presentation.item_results import (
    count,
    entries_by_kind,
    joined,
    kinds_of,
    of_kind,
)
from kvbackup.presentation.snapshot_list import snapshot_entries
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
from kvbackup.presentation.verification_status import read_verification
from kvbackup.services.backup import BackupReport
from kvbackup.services.copies import CopyReport
from kvbackup.services.outcomes import Freshness, ItemOutcome, ItemResult
from kvbackup.services.retry_policy import Verdict
from kvbackup.services.triggers import (
    InterruptedRun,
    KeyBackupStatusView,
    RunRequest,
    parse_time,
)

#: Ready's and Reconciling's reason while a run is under way.
BACKUP_RUNNING = "BackupRunning"


def read_keybackup_status(status: Mapping[str, Any]) -> KeyBackupStatusView:
    """What the operator reads back of a KeyBackup's status. Anyone who may patch the
    status can write anything into it: a field of the wrong type, a time that is not a
    Kubernetes timestamp or an id that is not a snapshot id (in full) reads as absent."""
    snapshot = _mapping(status.get("lastSnapshot"))
    snapshot_bytes = snapshot.get("bytes")
    return KeyBackupStatusView(
        phase=_text(status.get("phase")),
        observed_generation=_number(status.get("observedGeneration")),
        last_handled_trigger=_text(status.get("lastHandledTrigger")),
        last_schedule_time=parse_time(status.get("lastScheduleTime")),
        last_successful_time=parse_time(status.get("lastSuccessfulTime")),
        last_snapshot_bytes=snapshot_bytes if isinstance(snapshot_bytes, int) else None,
        oldest_artifact_time=parse_time(snapshot.get("oldestArtifactTime")),
        interrupted=_interrupted(_mapping(status.get("activeRun"))),
        copies_failing=_copies_failing(status.get("copies")),
        verification=read_verification(status.get("verification")),
    )


def _copies_failing(entries: Any) -> dict[str, bool]:
    """Each copy's phase, for entries whose name is a copy's and phase one it can have; at
    most as many as a spec may name, so an edited status cannot grow the metrics."""
    failing: dict[str, bool] = {}
    for entry in entries if isinstance(entries, list) else ():
        if len(failing) == COPIES_MAX:
            break
        entry = _mapping(entry)
        name, phase = entry.get("name"), entry.get("phase")
        if (
            isinstance(name, str)
            and len(name) <= 63
            and NAMESPACE_NAME.fullmatch(name)
            and phase in (COMPLETE, FAILED)
        ):
            failing[name] = phase == FAILED
    return failing


def _interrupted(active: Mapping[str, Any]) -> InterruptedRun | None:
    """The run ``activeRun`` records, when each of its fields reads back."""
    generation, trigger, slot = (active.get(k) for k in ("generation", "trigger", "slot"))
    snapshot_id, slot_time = active.get("snapshotId"), parse_time(slot)
    if (
        not isinstance(generation, int)
        or (trigger is not None and not isinstance(trigger, str))
        or (slot is not None and slot_time is None)
        or not isinstance(snapshot_id, str)
        or not SNAPSHOT_ID.fullmatch(snapshot_id)
    ):
        return None
    return InterruptedRun(RunRequest(generation, trigger, slot_time), snapshot_id)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _handled(request: RunRequest) -> KeyBackupStatus:
    """The fields that mark ``request`` as handled, so it is not run again."""
    fields: KeyBackupStatus = {"observedGeneration": request.generation, "activeRun": None}
    if request.trigger is not None:
        fields["lastHandledTrigger"] = request.trigger
    if request.slot is not None:
        fields["lastScheduleTime"] = timestamp(request.slot)
    return fields


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
        wanted["conditions"] = merged_conditions(existing, standing, generation, moment)
    else:
        wanted["conditions"] = restamped(conditions, generation)
    return wanted


def _waiting(next_slot: datetime.datetime | None, *, first: bool) -> tuple[str, str]:
    """The reason and message of a KeyBackup waiting for its (first) scheduled run."""
    if next_slot is None:
        return "Suspended", "the schedule is suspended: no run until kvbackup.io/backup-now is set"
    return "Scheduled", f"{'first' if first else 'next'} run at {timestamp(next_slot)}"


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
            "conditions": merged_conditions(existing, standing, request.generation, moment),
        },
        (Event("Normal", "BackupStarted", f"backing up into {snapshot_id}"),),
    )


def backup_progress(done: int, total: int) -> Update[KeyBackupStatus]:
    """``done`` of ``total`` items, of every kind the run backs up."""
    return Update({"activeRun": {"itemsDone": done, "itemsTotal": total}})


def backup_finished(
    existing: Mapping[str, Any],
    report: BackupReport,
    request: RunRequest,
    items_limit: int,
    next_slot: datetime.datetime | None,
    copies: Sequence[CopyReport] = (),
) -> Update[KeyBackupStatus]:
    """The run's outcome, ``copies`` that of each copy (when the run kept a snapshot); each
    kind's list holds at most ``items_limit`` entries."""
    moment = report.completion_time
    phase = report.phase
    reason, ready = PHASE_STANDING.get(phase, ("Failed", False))
    outcomes = report.outcomes
    left_out = left_out_message(report.left_out)
    message = _run_summary(report)
    if left_out:
        message = f"{message}; {left_out}"
    standing = finished_standing(reason, ready, message, outcomes)
    last_run: BackupRunSummary = {
        "snapshotId": report.snapshot_id,
        "startTime": timestamp(report.start_time),
        "completionTime": timestamp(moment),
        "phase": phase.value,
        **_run_counts(outcomes),
        "backedUp": report.counted(Freshness.BACKED_UP),
        "refreshed": report.counted(Freshness.REFRESHED),
        "unchanged": report.counted(Freshness.UNCHANGED),
        "fullRun": report.full_reason or None,
        "comparedWith": report.compared_with or None,
        "bytes": report.total_bytes,
        "newBytes": report.new_bytes,
        "leftOut": _left_out(report.left_out, left_out),
    }
    conditions = merged_conditions(existing, standing, request.generation, moment)
    status: KeyBackupStatus = {
        **_handled(request),
        **schedule_status(next_slot),
        "phase": phase.value,
        "conditions": conditions,
        "lastRun": last_run,
        **entries_by_kind(outcomes, items_limit, with_version_ids=False),
    }
    if report.manifest_written:  # a run that kept no snapshot copied nothing
        status["copies"] = copy_entries(existing, copies, moment)
        status["conditions"] = with_copies_condition(conditions, copies, request.generation, moment)
    if report.kept is not None:
        status["snapshots"] = snapshot_entries(report.kept)
    if report.manifest_written:
        status["lastSnapshot"] = _last_snapshot(report)
    if phase is Phase.SUCCEEDED:
        status["lastSuccessfulTime"] = timestamp(moment)
    events = [finished_event("Backup", phase, message)]
    if report.retention_error is not None:
        events.append(Event("Warning", "RetentionFailed", report.retention_error.message))
    events.extend(copy_events(copies))
    refused = [k for k in report.kept or () if k.deletion_refused]
    if refused:
        events.append(
            Event(
                "Normal",
                "DeletionRefused",
                f"storage refused to delete {len(refused)} snapshot(s) retention removes, "
                f"so they are kept and asked for again by the next run: "
                f"{refused[0].summary.snapshot_id}: {refused[0].deletion_refused}",
            )
        )
    return Update(status, tuple(events))


def _run_summary(report: BackupReport) -> str:
    """One sentence of what the run stored and how it came by it. A full run names each
    kind: ``backed up 3 of 3 key(s) and 2 of 3 secret(s) into snapshot S in a full run
    (no earlier snapshot)``. An incremental run says what it backed up itself, as
    ``backed up 100 and refreshed 0 of 10,000 item(s) into snapshot S; 9,900 unchanged
    since snapshot P``, and how many failed, if any."""
    into = report.snapshot_id if report.manifest_written else f"{report.snapshot_id} (not kept)"
    outcomes = report.outcomes
    if not report.compared_with:
        summary = f"backed up {_backed_up(outcomes)} into snapshot {into}"
        return f"{summary} in a full run ({report.full_reason})" if report.full_reason else summary
    failed = sum(1 for outcome in outcomes if outcome.failed)
    summary = (
        f"backed up {report.counted(Freshness.BACKED_UP):,} and refreshed "
        f"{report.counted(Freshness.REFRESHED):,} of {len(outcomes):,} item(s) into snapshot "
        f"{into}; {report.counted(Freshness.UNCHANGED):,} unchanged since snapshot "
        f"{report.compared_with}"
    )
    return f"{summary}, {failed:,} failed" if failed else summary


def _backed_up(outcomes: Sequence[ItemOutcome]) -> str:
    """``1 of 2 key(s)``, or ``3 of 3 key(s), 2 of 3 secret(s) and 1 of 1 certificate(s)``."""
    parts = []
    for kind in kinds_of(outcomes):
        chosen = of_kind(outcomes, kind)
        stored = len(chosen) - count(chosen, ItemResult.FAILED)
        parts.append(f"{stored:,} of {len(chosen):,} {kind}(s)")
    return joined(parts) or "nothing"


def _run_counts(outcomes: Sequence[ItemOutcome]) -> BackupRunSummary:
    """Total, succeeded and failed items of each kind the run handled; None for the others,
    which removes an earlier run's counts of them."""

    def counts(kind: ItemKind) -> tuple[int | None, int | None, int | None]:
        chosen = of_kind(outcomes, kind)
        if not chosen:
            return None, None, None
        failed = count(chosen, ItemResult.FAILED)
        return len(chosen), len(chosen) - failed, failed

    keys, secrets, certificates = (
        counts(ItemKind.KEY),
        counts(ItemKind.SECRET),
        counts(ItemKind.CERTIFICATE),
    )
    return {
        "keysTotal": keys[0],
        "keysSucceeded": keys[1],
        "keysFailed": keys[2],
        "secretsTotal": secrets[0],
        "secretsSucceeded": secrets[1],
        "secretsFailed": secrets[2],
        "certificatesTotal": certificates[0],
        "certificatesSucceeded": certificates[1],
        "certificatesFailed": certificates[2],
    }


def left_out_message(left_out: Mapping[ItemKind, int]) -> str:
    """What a run left out and how to cover it; empty when it left nothing out."""
    parts = [f"{n} {kind}(s)" for kind, n in left_out.items() if n]
    if not parts:
        return ""
    return (
        f"left out {joined(parts)} that back a certificate this KeyBackup does not back up: "
        "Key Vault backs them up only with their certificate, so select the certificate "
        "in spec.certificates to cover them"
    )


def _left_out(left_out: Mapping[ItemKind, int], message: str) -> LeftOut | None:
    if not message:
        return None
    return {
        "keys": left_out.get(ItemKind.KEY) or None,
        "secrets": left_out.get(ItemKind.SECRET) or None,
        "message": message,
    }


def _last_snapshot(report: BackupReport) -> LastSnapshot:
    """What the snapshot the run kept holds; secrets and certificates are None when it
    holds none of them, which removes an earlier snapshot's counts."""

    def stored(kind: ItemKind) -> int:
        chosen = of_kind(report.outcomes, kind)
        return len(chosen) - count(chosen, ItemResult.FAILED)

    return {
        "id": report.snapshot_id,
        "startTime": timestamp(report.start_time),
        "completionTime": timestamp(report.completion_time),
        "keys": stored(ItemKind.KEY),
        "secrets": stored(ItemKind.SECRET) or None,
        "certificates": stored(ItemKind.CERTIFICATE) or None,
        "bytes": report.total_bytes,
        "oldestArtifactTime": _oldest_artifact_time(report),
        "location": report.location,
    }


def _oldest_artifact_time(report: BackupReport) -> str | None:
    oldest = report.oldest_artifact
    return timestamp(oldest) if oldest else None


def backup_failed(
    existing: Mapping[str, Any], verdict: Verdict, request: RunRequest, moment: datetime.datetime
) -> Update[KeyBackupStatus]:
    """A run that could not finish. A final verdict handles the request: it is not run
    again until something changes."""
    conditions = merged_conditions(existing, failed_standing(verdict), request.generation, moment)
    status: KeyBackupStatus = {"phase": Phase.FAILED.value, "conditions": conditions}
    if verdict.final:
        status |= _handled(request)
    return Update(status, (failure_event(verdict),))


def backups_deleted(count: int) -> Event:
    return Event("Normal", "BackupsDeleted", f"deleted {count} snapshot(s)")


def backups_not_deleted(verdict: Verdict, attempts: int, left_behind: str) -> Event:
    """``left_behind`` says where the snapshots that remain are."""
    return Event(
        "Warning",
        "BackupsNotDeleted",
        f"gave up after {attempts} attempt(s), left behind: {left_behind}; {verdict.error.message}",
    )
