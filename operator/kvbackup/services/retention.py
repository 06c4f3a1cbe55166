"""Which snapshots retention removes, and removing them.

The policy's keep rules (``keepLast``, and the calendar tiers ``keepDaily`` to
``keepYearly`` with restic's meaning) each keep some snapshots; a snapshot none keeps is
removed, and ``maxAge`` removes any older than it. The newest complete snapshot and the
newest fully successful one are never removed, whatever the policy says: a bounded
history must never lose the last good backup. Each kept snapshot says why it is kept.

Snapshots are incremental: a kept snapshot may need an earlier one's artifacts or its
manifest (``Manifest.references``). Before anything is deleted, every snapshot a kept one
needs, directly or through another, is found; the policy's choices among those are held
(kept, and said to be) instead of deleted. Only snapshots nothing kept needs are deleted,
so retention killed at any point has removed nothing a kept snapshot needs.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from kvbackup.api.keybackup import Retention
from kvbackup.errors import DeletionRefusedError
from kvbackup.services.ports import SnapshotStore, StoredSnapshot
from kvbackup.services.snapshot import SnapshotSummary, snapshot_time


class KeptFor(StrEnum):
    """Why the policy keeps a snapshot; the keep rules by their spec fields."""

    NEWEST = "newest"
    NEWEST_SUCCESSFUL = "newestSuccessful"
    #: No keep rule is set: every snapshot younger than ``maxAge`` (if any) is kept.
    NO_KEEP_RULE = "noKeepRule"
    KEEP_LAST = "keepLast"
    KEEP_DAILY = "keepDaily"
    KEEP_WEEKLY = "keepWeekly"
    KEEP_MONTHLY = "keepMonthly"
    KEEP_YEARLY = "keepYearly"


#: A tier's period of a local time: snapshots of one period share it.
_PERIODS: dict[str, Callable[[datetime.datetime], tuple[int, ...]]] = {
    "keepDaily": lambda local: (local.year, local.month, local.day),
    "keepWeekly": lambda local: tuple(local.isocalendar()[:2]),
    "keepMonthly": lambda local: (local.year, local.month),
    "keepYearly": lambda local: (local.year,),
}


def kept_by_policy(
    complete: list[SnapshotSummary], retention: Retention, now: datetime.datetime
) -> dict[str, tuple[KeptFor, ...]]:
    """Why each snapshot the policy keeps is kept, by id; ``complete`` is newest first, as
    the stores list them. A snapshot absent from the answer is to be removed."""
    reasons: dict[str, list[KeptFor]] = {s.snapshot_id: [] for s in complete}
    if complete:
        reasons[complete[0].snapshot_id].append(KeptFor.NEWEST)
    newest_good = next((s for s in complete if not s.failed_keys), None)
    if newest_good is not None:
        reasons[newest_good.snapshot_id].append(KeptFor.NEWEST_SUCCESSFUL)

    def young(summary: SnapshotSummary) -> bool:
        max_age = retention.max_age
        return max_age is None or now - summary.completion_time <= max_age

    if not retention.has_keep_rule:
        for summary in filter(young, complete):
            reasons[summary.snapshot_id].append(KeptFor.NO_KEEP_RULE)
    for summary in filter(young, complete[: retention.keep_last or 0]):
        reasons[summary.snapshot_id].append(KeptFor.KEEP_LAST)
    for tier, count in retention.tiers.items():
        for summary in _newest_of_each_period(complete, tier, count, retention.time_zone):
            if young(summary):
                reasons[summary.snapshot_id].append(KeptFor(tier))
    return {snapshot_id: tuple(why) for snapshot_id, why in reasons.items() if why}


def _newest_of_each_period(
    complete: list[SnapshotSummary], tier: str, count: int, zone: datetime.tzinfo
) -> list[SnapshotSummary]:
    """The newest snapshot of each of the last ``count`` periods (days, weeks...) that
    have one, by when each started on ``zone``'s calendar."""
    period_of = _PERIODS[tier]
    chosen: list[SnapshotSummary] = []
    last: tuple[int, ...] | None = None
    for summary in complete:
        if len(chosen) == count:
            break
        period = period_of(summary.start_time.astimezone(zone))
        if period != last:
            chosen.append(summary)
            last = period
    return chosen


def expired(
    complete: list[SnapshotSummary],
    stored: list[StoredSnapshot],
    retention: Retention,
    now: datetime.datetime,
    incomplete_grace: datetime.timedelta,
) -> list[str]:
    """Snapshot ids to delete; ``complete`` is newest first, as the stores list them."""
    return _expired(
        kept_by_policy(complete, retention, now), complete, stored, now, incomplete_grace
    )


def _expired(
    kept: dict[str, tuple[KeptFor, ...]],
    complete: list[SnapshotSummary],
    stored: list[StoredSnapshot],
    now: datetime.datetime,
    incomplete_grace: datetime.timedelta,
) -> list[str]:
    doomed = [s.snapshot_id for s in complete if s.snapshot_id not in kept]
    # Leftovers of runs that died before their manifest: kept for a while in case the
    # run is resumed, then removed.
    for snapshot in stored:
        started = snapshot_time(snapshot.snapshot_id)
        if not snapshot.complete and started is not None and now - started > incomplete_grace:
            doomed.append(snapshot.snapshot_id)
    return doomed


@dataclass(frozen=True)
class Remaining:
    """A complete snapshot retention left in place."""

    summary: SnapshotSummary
    #: The kept snapshots that need it, when the policy alone would have removed it
    #: (newest first); empty for a snapshot the policy keeps.
    held_by: tuple[str, ...] = ()
    #: Why the policy keeps it; empty for a snapshot kept only because others need it.
    kept_for: tuple[KeptFor, ...] = ()
    #: Why storage refused to delete it when retention removed it (e.g. an immutable
    #: blob); the next retention asks again. Empty when it was not refused.
    deletion_refused: str = ""


async def collect_garbage(
    store: SnapshotStore,
    namespace: str,
    keybackup: str,
    retention: Retention,
    now: datetime.datetime,
    incomplete_grace: datetime.timedelta,
) -> list[Remaining]:
    """Apply retention; returns the complete snapshots that remain, newest first."""
    complete = await store.list_snapshots(namespace, keybackup)
    stored = await store.list_stored(namespace, keybackup)
    kept = kept_by_policy(complete, retention, now)
    doomed = _expired(kept, complete, stored, now, incomplete_grace)
    needed = await _needed(store, namespace, keybackup, complete, set(doomed)) if doomed else {}
    refused: dict[str, str] = {}
    for snapshot_id in doomed:
        if snapshot_id not in needed:
            try:
                await store.delete_snapshot(namespace, keybackup, snapshot_id)
            except DeletionRefusedError as refusal:
                # Storage that refuses deletion (WORM) keeps backups by design: the others
                # are still removed, and this one is asked for again next time.
                refused[snapshot_id] = refusal.message
    held = {snapshot_id: needed[snapshot_id] for snapshot_id in doomed if snapshot_id in needed}
    return [
        Remaining(
            s,
            tuple(sorted(held.get(s.snapshot_id, ()), reverse=True)),
            kept.get(s.snapshot_id, ()),
            refused.get(s.snapshot_id, ""),
        )
        for s in complete
        if s.snapshot_id not in doomed or s.snapshot_id in held or s.snapshot_id in refused
    ]


async def _needed(
    store: SnapshotStore,
    namespace: str,
    keybackup: str,
    complete: list[SnapshotSummary],
    doomed: set[str],
) -> dict[str, set[str]]:
    """Every snapshot the kept ones need, directly or through another they need, each
    with the kept snapshots that need it. Read from their manifests as stored, before
    anything is deleted; a manifest that cannot be read fails retention, deleting nothing."""
    needed: dict[str, set[str]] = {}
    references: dict[str, frozenset[str]] = {}
    ids = {s.snapshot_id for s in complete}
    for holder in ids - doomed:
        pending, seen = [holder], {holder}
        while pending:
            snapshot_id = pending.pop()
            if snapshot_id not in references:
                manifest = await store.read_manifest(namespace, keybackup, snapshot_id)
                references[snapshot_id] = manifest.references
            for reference in references[snapshot_id] - seen:
                seen.add(reference)
                needed.setdefault(reference, set()).add(holder)
                # What a kept snapshot needs is found from it in its own turn.
                if reference in doomed and reference in ids:
                    pending.append(reference)
    return needed


async def delete_all_snapshots(store: SnapshotStore, namespace: str, keybackup: str) -> int:
    """Every snapshot of a KeyBackup, complete or not; returns how many there were."""
    stored = await store.list_stored(namespace, keybackup)
    for snapshot in stored:
        await store.delete_snapshot(namespace, keybackup, snapshot.snapshot_id)
    return len(stored)
