"""Which snapshots retention removes, and removing them.

The newest complete snapshot and the newest fully successful one are never removed,
whatever the policy says: a bounded history must never lose the last good backup.
"""

from __future__ import annotations

import datetime

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


async def collect_garbage(
    store: SnapshotStore,
    namespace: str,
    keybackup: str,
    retention: Retention,
    now: datetime.datetime,
    incomplete_grace: datetime.timedelta,
) -> list[SnapshotSummary]:
    """Apply retention; returns the complete snapshots that remain, newest first."""
    complete = await store.list_snapshots(namespace, keybackup)
    stored = await store.list_stored(namespace, keybackup)
    doomed = expired(complete, stored, retention, now, incomplete_grace)
    for snapshot_id in doomed:
        await store.delete_snapshot(namespace, keybackup, snapshot_id)
    return [s for s in complete if s.snapshot_id not in doomed]


async def delete_all_snapshots(store: SnapshotStore, namespace: str, keybackup: str) -> int:
    """Every snapshot of a KeyBackup, complete or not; returns how many there were."""
    stored = await store.list_stored(namespace, keybackup)
    for snapshot in stored:
        await store.delete_snapshot(namespace, keybackup, snapshot.snapshot_id)
    return len(stored)
