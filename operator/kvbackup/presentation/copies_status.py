"""What a KeyBackup's status and Events say of its copies after a run: each copy's entry,
the CopiesComplete condition, and a Warning for each copy that failed."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from kvbackup.api.conditions import COPIES_COMPLETE, Condition, timestamp
from kvbackup.api.statuses import ConditionDocument, CopyDocument
from kvbackup.presentation.item_results import joined
from kvbackup.presentation.snapshot_list import snapshot_entries
from kvbackup.presentation.status import Event
from kvbackup.services.copies import CopyReport
from kvbackup.services.triggers import parse_time

COMPLETE = "Complete"
FAILED = "Failed"


def copy_entries(
    existing: Mapping[str, Any], copies: Sequence[CopyReport], moment: datetime.datetime
) -> list[CopyDocument] | None:
    """One entry per copy; None without copies, which removes an earlier run's entries."""
    if not copies:
        return None
    before = _last_complete_times(existing)
    return [_entry(copy, before.get(copy.name), moment) for copy in copies]


def _entry(copy: CopyReport, last_complete: str | None, moment: datetime.datetime) -> CopyDocument:
    return {
        "name": copy.name,
        "phase": COMPLETE if copy.complete else FAILED,
        "snapshotId": copy.snapshot_id,
        "location": copy.location,
        "reason": copy.reason or None,
        "message": copy.message or None,
        "written": copy.written,
        "writtenBytes": copy.written_bytes,
        "carried": copy.carried,
        "lastCompleteTime": timestamp(moment) if copy.complete else last_complete,
        "snapshots": snapshot_entries(copy.kept) if copy.kept is not None else None,
    }


def _last_complete_times(existing: Mapping[str, Any]) -> dict[str, str]:
    """Each copy's lastCompleteTime as the status says it, where it reads back as a time
    (a status can be edited by hand)."""
    entries = existing.get("copies")
    times: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping):
            continue
        name, last = entry.get("name"), entry.get("lastCompleteTime")
        moment = parse_time(last)
        if isinstance(name, str) and moment is not None:
            times[name] = timestamp(moment)
    return times


def with_copies_condition(
    conditions: list[ConditionDocument],
    copies: Sequence[CopyReport],
    generation: int,
    moment: datetime.datetime,
) -> list[ConditionDocument]:
    """CopiesComplete set from ``copies``; removed when the KeyBackup has none."""
    if not copies:
        return [c for c in conditions if c.get("type") != COPIES_COMPLETE]
    failed = [copy for copy in copies if not copy.complete]
    snapshot_id = copies[0].snapshot_id
    if failed:
        condition = Condition(
            COPIES_COMPLETE,
            False,
            "CopyFailed",
            "; ".join(f"copy {c.name} lacks snapshot {snapshot_id}: {c.message}" for c in failed),
            generation,
        )
    else:
        names = joined([copy.name for copy in copies])
        condition = Condition(
            COPIES_COMPLETE, True, COMPLETE, f"{names} hold(s) snapshot {snapshot_id}", generation
        )
    return condition.merged_into(conditions, moment)


def copy_events(copies: Sequence[CopyReport]) -> list[Event]:
    events = [
        Event(
            "Warning",
            "CopyFailed",
            f"copy {copy.name} lacks snapshot {copy.snapshot_id} ({copy.reason}): {copy.message}; "
            "the next run writes it again",
        )
        for copy in copies
        if not copy.complete
    ]
    events.extend(
        Event("Warning", "RetentionFailed", f"copy {copy.name}: {copy.retention_error.message}")
        for copy in copies
        if copy.retention_error is not None
    )
    return events
