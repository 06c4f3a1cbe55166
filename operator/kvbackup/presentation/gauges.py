"""What a KeyBackup's own gauges show, read from its status and its schedule, so that a
restarted operator shows the same values as before (README, "Metrics and alerts")."""

from __future__ import annotations

import datetime
import functools

from kvbackup.api.conditions import Phase
from kvbackup.api.schedule import Schedule
from kvbackup.services.readings import KeyBackupReadings
from kvbackup.services.triggers import KeyBackupStatusView, Plan

#: How many of a schedule's gaps are looked at for its longest: a cron schedule's gaps
#: differ (weekdays only, the first of each month), and an alert must wait out the longest.
GAPS_LOOKED_AT = 8

_FAILING = {Phase.FAILED.value, Phase.PARTIALLY_FAILED.value}


@functools.lru_cache(maxsize=256)
def longest_gap(schedule: Schedule, first_slot: datetime.datetime) -> float:
    """Seconds of the longest gap between the slots that follow ``first_slot``. Cached:
    KeyBackups sharing a schedule share their next slot, and it moves once per run."""
    if schedule.interval is not None:
        return schedule.interval.total_seconds()
    gaps, slot = [], first_slot
    for _ in range(GAPS_LOOKED_AT):
        following = schedule.next_slot(slot)
        gaps.append((following - slot).total_seconds())
        slot = following
    return max(gaps)


def keybackup_readings(status: KeyBackupStatusView, plan: Plan) -> KeyBackupReadings:
    """The gauges of a KeyBackup with this status, planned as ``plan``."""
    last_success, oldest_artifact = status.last_successful_time, status.oldest_artifact_time
    schedule = plan.spec.schedule if plan.spec else None
    phase, verification = status.phase, status.verification
    return KeyBackupReadings(
        last_success=last_success.timestamp() if last_success else None,
        schedule_interval=(
            longest_gap(schedule, plan.next_slot)
            if schedule is not None and plan.next_slot is not None
            else None
        ),
        snapshot_bytes=status.last_snapshot_bytes,
        oldest_artifact=oldest_artifact.timestamp() if oldest_artifact else None,
        failing=True if phase in _FAILING else False if phase == Phase.SUCCEEDED.value else None,
        copies_failing=status.copies_failing,
        verification_time=_seconds(verification.completion_time),
        verification_failing=verification.failing,
        unprotected_items=verification.unprotected_items,
        unprotected_since=_seconds(verification.unprotected_since),
    )


def _seconds(moment: datetime.datetime | None) -> float | None:
    return moment.timestamp() if moment else None
