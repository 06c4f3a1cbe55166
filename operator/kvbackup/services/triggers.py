"""When a KeyBackup needs a run, and which snapshot id that run writes into."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kvbackup.api.conditions import timestamp
from kvbackup.api.keybackup import KeyBackupSpec, backup_now_token, parse_spec, verify_now_token
from kvbackup.api.schedule import Schedule
from kvbackup.errors import InvalidSpecError
from kvbackup.services.snapshot import new_snapshot_id

#: How a backup-now value asks for a full run, e.g. ``full-2026-12-07``: every item
#: backed up afresh, whatever the previous snapshot records of it.
FULL_RUN_TRIGGER_PREFIX = "full"


@dataclass(frozen=True)
class RunRequest:
    """Why a run is due: a spec generation, a backup-now value, or a scheduled slot."""

    generation: int
    trigger: str | None = None
    slot: datetime.datetime | None = None

    @property
    def asks_full_run(self) -> bool:
        """Whether the backup-now value that started the run asks for a full run."""
        return self.trigger is not None and self.trigger.startswith(FULL_RUN_TRIGGER_PREFIX)

    def as_status(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "trigger": self.trigger,
            "slot": timestamp(self.slot) if self.slot else None,
        }

    def resumes(self, interrupted: RunRequest) -> bool:
        """Whether ``interrupted`` (read back from ``status.activeRun``) is this request."""
        return interrupted.as_status() == self.as_status()


@dataclass(frozen=True)
class InterruptedRun:
    """A run that started and did not finish: what it was for and the snapshot it wrote."""

    request: RunRequest
    snapshot_id: str


@dataclass(frozen=True)
class KeyBackupStatusView:
    """What the operator reads back of a KeyBackup's status, each field checked as
    ``presentation.keybackup_status.read_keybackup_status`` reads it: None where the status
    lacks the field or holds anything else, since a status can be edited by hand."""

    phase: str | None = None
    observed_generation: int | None = None
    last_handled_trigger: str | None = None
    last_schedule_time: datetime.datetime | None = None
    last_successful_time: datetime.datetime | None = None
    last_snapshot_bytes: int | None = None
    #: When the oldest backup the newest kept snapshot holds was taken.
    oldest_artifact_time: datetime.datetime | None = None
    #: None unless ``activeRun`` reads back in full, its snapshot id included.
    interrupted: InterruptedRun | None = None
    #: Whether each copy lacks the latest run's snapshot, by copy name.
    copies_failing: Mapping[str, bool] = field(default_factory=dict)
    verification: VerificationView = field(default_factory=lambda: VerificationView())


@dataclass(frozen=True)
class VerificationView:
    """What the operator reads back of ``status.verification``, checked as the rest."""

    #: The scheduled slot the last verification served.
    slot: datetime.datetime | None = None
    #: The last kvbackup.io/verify-now value handled.
    handled_trigger: str | None = None
    completion_time: datetime.datetime | None = None
    #: Whether the last verification found damaged snapshots; None before the first.
    failing: bool | None = None
    unprotected_items: int | None = None
    #: Since when verifications have found unprotected items, without a pause.
    unprotected_since: datetime.datetime | None = None


#: A Kubernetes timestamp as the API server and this operator write them.
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
#: How far ahead of this replica's clock a recorded slot is still believed: another
#: replica's clock may run ahead of this one's, but not by this much.
SLOT_CLOCK_TOLERANCE = datetime.timedelta(days=1)


def parse_time(text: Any) -> datetime.datetime | None:
    """A timestamp read back from status or metadata; None for anything else, since a
    status can be edited by hand and must not stop the object's loop."""
    if not isinstance(text, str) or not _TIMESTAMP.fullmatch(text):
        return None
    try:
        parsed = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:  # a month 13, a 31 February
        return None
    return parsed.replace(tzinfo=datetime.UTC)


def schedule_anchor(
    status: KeyBackupStatusView, created: datetime.datetime, now: datetime.datetime
) -> datetime.datetime:
    """Slots are counted from the last scheduled run, or from the object's creation. A
    last run recorded far in the future was not written by a replica of this operator
    (and year 9999 would overflow the next slot), so it is not believed."""
    return _believed_slot(status.last_schedule_time, created, now)


def _believed_slot(
    recorded: datetime.datetime | None, created: datetime.datetime, now: datetime.datetime
) -> datetime.datetime:
    if recorded is None or recorded > now + SLOT_CLOCK_TOLERANCE:
        return created
    return recorded


def due_run(
    *,
    schedule: Schedule | None,
    suspended: bool,
    status: KeyBackupStatusView,
    generation: int,
    trigger: str | None,
    created: datetime.datetime,
    now: datetime.datetime,
) -> RunRequest | None:
    """The run to start now, if any.

    A backup-now value not handled yet always runs, even when suspended. Without a
    schedule, each new spec generation runs once; with one, slots run instead, and
    slots missed while the operator was down collapse into a single run. Re-applying
    an unchanged manifest changes none of this, so it starts nothing.
    """
    if trigger is not None and trigger != status.last_handled_trigger:
        return RunRequest(generation, trigger=trigger)
    if schedule is None:
        return RunRequest(generation) if status.observed_generation != generation else None
    if suspended:
        return None
    anchor = schedule_anchor(status, created, now)
    slot = schedule.latest_slot(anchor, now)
    return RunRequest(generation, slot=slot) if slot > anchor else None


def snapshot_id_for(
    status: KeyBackupStatusView, request: RunRequest, moment: datetime.datetime
) -> str:
    """Resume the snapshot of an interrupted run of the same request, or start a new one.

    Reusing the id makes the redone run overwrite its own partial artifacts instead
    of leaving a second incomplete snapshot behind. Status can be edited by anyone who
    may patch it, and the id becomes a blob folder and Secret names: the reader keeps
    only an id that is a snapshot id in full, else the run starts a new snapshot.
    """
    interrupted = status.interrupted
    if interrupted is not None and request.resumes(interrupted.request):
        return interrupted.snapshot_id
    return new_snapshot_id(moment)


@dataclass(frozen=True)
class Plan:
    """What a KeyBackup asks for at one moment."""

    #: None when the spec is invalid: a run is still due once per generation, to report it.
    spec: KeyBackupSpec | None
    #: The run to start now, if any.
    request: RunRequest | None
    #: The next scheduled slot; None without a (running) schedule.
    next_slot: datetime.datetime | None

    def next_slot_after(self, request: RunRequest) -> datetime.datetime | None:
        """The slot after the one ``request`` served; the next slot for other requests."""
        schedule = self.spec.schedule if self.spec else None
        if schedule is not None and request.slot is not None:
            return schedule.next_slot(request.slot)
        return self.next_slot

    def seconds_to_next_slot(self, now: datetime.datetime) -> float | None:
        return (self.next_slot - now).total_seconds() if self.next_slot else None


def plan_run(
    spec_document: Mapping[str, Any],
    status: KeyBackupStatusView,
    meta: Mapping[str, Any],
    now: datetime.datetime,
    *,
    min_schedule_interval: datetime.timedelta = datetime.timedelta(0),
) -> Plan:
    """What a KeyBackup with this spec, status and metadata asks for at ``now``; a schedule
    that may run more often than ``min_schedule_interval`` makes the spec invalid."""
    spec: KeyBackupSpec | None
    try:
        spec = parse_spec(spec_document, min_schedule_interval=min_schedule_interval)
    except InvalidSpecError:
        spec = None  # the run reports it; it is due once per generation like any run
    generation = int(meta.get("generation") or 0)
    created = parse_time(meta.get("creationTimestamp")) or now
    trigger = backup_now_token(meta.get("annotations") or {})
    schedule = spec.schedule if spec else None
    suspended = spec.suspend if spec else False
    request = due_run(
        schedule=schedule,
        suspended=suspended,
        status=status,
        generation=generation,
        trigger=trigger,
        created=created,
        now=now,
    )
    next_slot = None
    if schedule is not None and not suspended:
        next_slot = schedule.next_slot(schedule_anchor(status, created, now))
    return Plan(spec, request, next_slot)


@dataclass(frozen=True)
class VerificationPlan:
    """When a KeyBackup's snapshots are to be verified."""

    #: The verification to make now, if any.
    request: RunRequest | None
    #: The next scheduled slot; None without ``spec.verify``.
    next_slot: datetime.datetime | None

    def seconds_to_next_slot(self, now: datetime.datetime) -> float | None:
        return (self.next_slot - now).total_seconds() if self.next_slot else None


def plan_verification(
    spec: KeyBackupSpec | None,
    status: KeyBackupStatusView,
    meta: Mapping[str, Any],
    now: datetime.datetime,
) -> VerificationPlan:
    """A kvbackup.io/verify-now value not handled yet, or a slot of ``spec.verify`` since
    the last one served (slots missed while the operator was down make one verification).
    Suspending the schedule of backups does not stop verifications: they change nothing."""
    generation = int(meta.get("generation") or 0)
    seen = status.verification
    trigger = verify_now_token(meta.get("annotations") or {})
    schedule = spec.verify if spec else None
    anchor = _believed_slot(seen.slot, parse_time(meta.get("creationTimestamp")) or now, now)
    next_slot = schedule.next_slot(anchor) if schedule is not None else None
    if trigger is not None and trigger != seen.handled_trigger:
        return VerificationPlan(RunRequest(generation, trigger=trigger), next_slot)
    if schedule is None:
        return VerificationPlan(None, None)
    slot = schedule.latest_slot(anchor, now)
    return VerificationPlan(RunRequest(generation, slot=slot) if slot > anchor else None, next_slot)
