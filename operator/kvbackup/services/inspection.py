"""Looking at stored snapshots without a KeyBackup run: which are there, whether each
item's backup (key, secret or certificate) is intact, and copying them out to files."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from kvbackup.api.kinds import ITEM_KINDS, ItemRef
from kvbackup.services.outcomes import ItemOutcome, ItemResult
from kvbackup.services.ports import OpenedSnapshot, SnapshotStore
from kvbackup.services.progress import Progress
from kvbackup.services.snapshot import Artifact, Manifest, SnapshotSummary, snapshot_time
from kvbackup.services.workers import DEFAULT_CONCURRENCY, for_each_item


@dataclass(frozen=True)
class ListedSnapshot:
    """A snapshot id with anything stored under it; ``summary`` only once it is complete."""

    snapshot_id: str
    summary: SnapshotSummary | None

    @property
    def complete(self) -> bool:
        return self.summary is not None

    @property
    def start_time(self) -> datetime.datetime | None:
        """From the summary, or for an incomplete snapshot from its id."""
        return self.summary.start_time if self.summary else snapshot_time(self.snapshot_id)


async def list_all_snapshots(
    store: SnapshotStore, namespace: str, keybackup: str
) -> list[ListedSnapshot]:
    """Complete and incomplete snapshots of a KeyBackup, newest first."""
    summaries = {s.snapshot_id: s for s in await store.list_snapshots(namespace, keybackup)}
    stored = await store.list_stored(namespace, keybackup)
    ids = sorted({s.snapshot_id for s in stored} | summaries.keys(), reverse=True)
    return [ListedSnapshot(snapshot_id, summaries.get(snapshot_id)) for snapshot_id in ids]


def _intact(artifact: Artifact, reason: str, message: str) -> ItemOutcome:
    if artifact.stored_in:
        message = f"{message}; stored with snapshot {artifact.stored_in}"
    return ItemOutcome(
        artifact.name,
        ItemResult.SUCCEEDED,
        artifact.versions,
        artifact.sha256,
        artifact.size,
        reason=reason,
        message=message,
        kind=artifact.kind,
        stored_in=artifact.stored_in,
    )


async def verify_snapshot(
    snapshot: OpenedSnapshot,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int], Progress] | None = None,
) -> list[ItemOutcome]:
    """Every item's stored bytes against the sha256 and size its manifest records, read
    wherever they are stored: an item carried forward is read from the earlier snapshot
    that holds it."""
    manifest = snapshot.manifest

    async def verify(item: ItemRef) -> ItemOutcome:
        artifact = manifest.artifact(*item)
        async with snapshot.verified(artifact):
            return _intact(artifact, "Verified", "sha256 and size match the manifest")

    return await _each_item(manifest, verify, concurrency, progress)


class ExportTarget(Protocol):
    """Where an exported snapshot goes: each item's exact bytes, then the manifest."""

    async def write_backup(self, artifact: Artifact, data: bytes) -> str:
        """Store one item's bytes; returns where they went, for people to read."""
        ...

    async def write_manifest(self, manifest: Manifest) -> None:
        """Store the manifest, self-contained (``Manifest.self_contained``): it lists every
        item, and each item's bytes lie beside it."""
        ...


async def export_snapshot(
    snapshot: OpenedSnapshot,
    target: ExportTarget,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int], Progress] | None = None,
) -> list[ItemOutcome]:
    """Each item's verified backup into ``target``, wherever the store keeps it, then the
    whole manifest as one that needs nothing but the export: every item's bytes beside it,
    no earlier snapshot named. An item whose backup fails verification is not written and
    fails alone."""
    manifest = snapshot.manifest

    async def export(item: ItemRef) -> ItemOutcome:
        artifact = manifest.artifact(*item)
        async with snapshot.verified(artifact) as data:
            where = await target.write_backup(artifact, data)
        return _intact(artifact, "Exported", f"wrote {where} ({artifact.size} bytes)")

    outcomes = await _each_item(manifest, export, concurrency, progress)
    await target.write_manifest(manifest.self_contained())
    return outcomes


async def _each_item(
    manifest: Manifest,
    work: Callable[[ItemRef], Awaitable[ItemOutcome]],
    concurrency: int,
    progress: Callable[[int], Progress] | None,
) -> list[ItemOutcome]:
    """``work`` for every item of the manifest, kind by kind, each in the manifest's order."""
    items = [
        ItemRef(kind, artifact.name) for kind in ITEM_KINDS for artifact in manifest.of_kind(kind)
    ]
    tracker = progress(len(items)) if progress else None
    return await for_each_item(
        items, work, concurrency=concurrency, on_done=tracker.item_done if tracker else None
    )
