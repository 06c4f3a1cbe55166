"""What the status documents of both kinds share: an ``Update`` (a merge patch for
``.status``, in which ``None`` values remove fields, and the Events that tell the same
story) and the conditions of a run that finished or could not finish.

Each kind's writers and its one reader are beside each other: ``keybackup_status`` and
``keyrestore_status``. Backup bytes and credentials never reach these documents: only
names, digests, sizes, version ids and reasons do.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kvbackup.api.conditions import RETRY_SCHEDULED, Phase, Standing
from kvbackup.api.statuses import ConditionDocument, KeyBackupStatus, KeyRestoreStatus
from kvbackup.presentation.item_results import beyond_keys, item_label, joined, kinds_of
from kvbackup.services.outcomes import ItemOutcome
from kvbackup.services.retry_policy import Verdict

#: How many failed items a Stalled condition's message names (status.keys, status.secrets
#: and status.certificates list more).
FAILED_ITEMS_IN_MESSAGE = 5

#: The reason and readiness of a run that ended in each phase.
PHASE_STANDING = {
    Phase.SUCCEEDED: ("Succeeded", True),
    Phase.PARTIALLY_FAILED: ("PartiallyFailed", False),
    Phase.FAILED: ("Failed", False),
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


def merged_conditions(
    existing: Mapping[str, Any], standing: Standing, generation: int, moment: datetime.datetime
) -> list[ConditionDocument]:
    return standing.merged_into(list(existing.get("conditions") or []), generation, moment)


def finished_standing(
    reason: str, ready: bool, message: str, outcomes: Sequence[ItemOutcome]
) -> Standing:
    """A run that ended: Ready, or Stalled naming the items that failed, since running the
    same spec again would fail them again. Items are named after their kind once the run
    handled secrets or certificates."""
    if ready:
        return Standing(True, reason, message)
    with_kind = beyond_keys(outcomes)
    failed = [outcome for outcome in outcomes if outcome.result.failed]
    named = [
        f"{item_label(item, with_kind=with_kind)}: {item.result.value}"
        + (f" ({item.reason})" if item.reason else "")
        for item in failed[:FAILED_ITEMS_IN_MESSAGE]
    ]
    unnamed = failed[FAILED_ITEMS_IN_MESSAGE:]
    if unnamed:
        lists = joined([f"status.{kind.plural}" for kind in kinds_of(unnamed)])
        named.append(f"{len(unnamed)} more in {lists}")
    return Standing(False, reason, message, stalled="; ".join([message, *named]))


def failed_standing(verdict: Verdict) -> Standing:
    """A run that could not finish: Stalled when final, else Reconciling until its retry."""
    reason, described = verdict.error.reason, verdict.describe()
    if verdict.final:
        return Standing(False, reason, described, stalled=described)
    return Standing(False, reason, described, reconciling=RETRY_SCHEDULED)


#: The Event type and reason suffix of a finished run, by the phase it ended in.
_FINISHED_EVENTS = {
    Phase.SUCCEEDED: ("Normal", "Succeeded"),
    Phase.PARTIALLY_FAILED: ("Warning", "PartiallyFailed"),
    Phase.FAILED: ("Warning", "Failed"),
}


def finished_event(run: str, phase: Phase, message: str) -> Event:
    """The Event of a finished ``run`` ("Backup", "Restore"): e.g. BackupPartiallyFailed."""
    kind, outcome = _FINISHED_EVENTS[phase]
    return Event(kind, f"{run}{outcome}", message)


def failure_event(verdict: Verdict) -> Event:
    return Event("Warning", verdict.error.reason, verdict.error.message)
