"""Which snapshots retention removes, and removing them.

The newest complete snapshot and the newest fully successful one are never removed,
whatever the policy says: a bounded history must never lose the last good backup.

Snapshots are incremental: a kept snapshot may need an earlier one's artifacts or its
manifest (``Manifest.references``). Before anything is deleted, every snapshot a kept one
needs, directly or through another, is found; the policy's choices among those are held
(kept, and said to be) instead of deleted. Only snapshots nothing kept needs are deleted,
so retention killed at any point has removed nothing a kept snapshot needs.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from kvbackup.api.keybackup import Retention
from kvbackup.services.ports import SnapshotStore, StoredSnapshot
from kvbackup.services.snapshot import SnapshotSummary, snapshot_time


def expired(
    complete: list[SnapshotSummary],
    stored: list[StoredSnapshot],
    retention: Retention,
    now: datetime.datetime,
    incomplete_grace: datetime.timedelta,
) -> list[str]:
    """Snapshot ids to delete; ``complete`` is newest first, as the stores list it."""
    protected = {complete[0].snapshot_id} if complete else set()
    newest_good = next((s for s in complete if not s.failed_keys), None)
    if newest_good is not None:
        protected.add(newest_good.snapshot_id)
    doomed = []
    for index, summary in enumerate(complete):
        too_many = retention.keep_last is not None and index >= retention.keep_last
        too_old = (
            retention.max_age is not None and now - summary.completion_time > retention.max_age
        )
        if (too_many or too_old) and summary.snapshot_id not in protected:
            doomed.append(summary.snapshot_id)
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
    doomed = expired(complete, stored, retention, now, incomplete_grace)
    needed = await _needed(store, namespace, keybackup, complete, set(doomed)) if doomed else {}
    for snapshot_id in doomed:
        if snapshot_id not in needed:
            await store.delete_snapshot(namespace, keybackup, snapshot_id)
    held = {snapshot_id: needed[snapshot_id] for snapshot_id in doomed if snapshot_id in needed}
    return [
        Remaining(s, tuple(sorted(held.get(s.snapshot_id, ()), reverse=True)))
        for s in complete
        if s.snapshot_id not in doomed or s.snapshot_id in held
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
