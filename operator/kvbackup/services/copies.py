"""A KeyBackup's further copies: once the primary destination holds a snapshot, the same
snapshot (same id, same bytes, same items) is written to each copy from there, without a
second read of the vault, and each copy keeps its own retention."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

from kvbackup.api.keybackup import BlobCopy, KeyBackupRef
from kvbackup.api.kinds import ItemRef
from kvbackup.errors import KvBackupError, UnexpectedError
from kvbackup.services.backup import (
    BackupReport,
    KeptSnapshot,
    Previous,
    artifact_of,
    as_written,
    kept_snapshots,
    outcome_of,
    previous_snapshot,
)
from kvbackup.services.outcomes import Freshness, ItemOutcome
from kvbackup.services.ports import Clock, OpenedSnapshot, SnapshotStore, SnapshotStores
from kvbackup.services.snapshot import Artifact, Manifest
from kvbackup.services.workers import DEFAULT_CONCURRENCY, for_each_item

#: How a copy came by each backup: written from the primary's bytes, or carried from
#: its own earlier snapshot.
WRITTEN, CARRIED = Freshness.BACKED_UP, Freshness.UNCHANGED


@dataclass(frozen=True)
class CopyReport:
    """How writing one snapshot to one copy went."""

    name: str
    snapshot_id: str
    #: Where a user finds the snapshot in the copy.
    location: str
    #: Why the copy does not hold the snapshot; empty when it does (complete).
    reason: str = ""
    message: str = ""
    #: Backups whose bytes this run wrote into the copy.
    written: int = 0
    #: Bytes of those backups.
    written_bytes: int = 0
    #: Backups the copy already held in an earlier snapshot, referred to from this one.
    carried: int = 0
    #: The complete snapshots the copy's retention kept, newest first; None when it did
    #: not run (the copy failed) or failed itself (``retention_error``).
    kept: tuple[KeptSnapshot, ...] | None = None
    retention_error: KvBackupError | None = None

    @property
    def complete(self) -> bool:
        return not self.reason


@dataclass(frozen=True)
class _CopyJob:
    keybackup: KeyBackupRef
    #: The snapshot as the primary holds it, read from there.
    source: OpenedSnapshot
    target: SnapshotStore
    #: The copy's own latest snapshot, whose backups it need not write again.
    previous: Previous | None
    #: Backups an interrupted copy of this same snapshot wrote and checked already.
    resumed: dict[tuple[str, str], Artifact]


async def copy_snapshot(
    manifest: Manifest,
    primary: SnapshotStore,
    copy: BlobCopy,
    target: SnapshotStore,
    *,
    clock: Clock,
    incomplete_grace: datetime.timedelta,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> CopyReport:
    """Write the snapshot whose whole manifest is ``manifest`` (held by ``primary``) to
    ``target``, then apply the copy's retention there.

    A backup the copy already holds with the same sha256, in its own latest snapshot, is
    referred to rather than written again, so a copy costs what the primary's run stored;
    a copy that missed runs (it failed, or is new) catches up from the primary's bytes,
    which are checked against the manifest on the way. Any failure is the copy's alone:
    it is reported, and the next run writes its next snapshot in full where needed.
    """
    keybackup, snapshot_id = manifest.keybackup, manifest.snapshot_id
    location = target.location(keybackup.namespace, keybackup.name, snapshot_id)
    try:
        report = await _copied(manifest, primary, target, concurrency)
    except KvBackupError as error:
        return CopyReport(copy.name, snapshot_id, location, error.reason, error.message)
    except Exception as error:  # a copy must never fail the primary's run
        unexpected = UnexpectedError.wrapping(error)
        return CopyReport(copy.name, snapshot_id, location, unexpected.reason, unexpected.message)
    report = replace(report, name=copy.name, location=location)
    try:
        kept = await kept_snapshots(target, keybackup, copy.retention, clock(), incomplete_grace)
    except KvBackupError as error:
        return replace(report, retention_error=error)
    return replace(report, kept=kept)


async def write_copies(
    report: BackupReport,
    copies: Sequence[BlobCopy],
    primary: SnapshotStore,
    stores: SnapshotStores,
    *,
    clock: Clock,
    incomplete_grace: datetime.timedelta,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> tuple[CopyReport, ...]:
    """The snapshot of ``report``, once the primary holds it, written to each copy in
    turn; nothing when the run kept no snapshot."""
    manifest = report.manifest
    if manifest is None:
        return ()
    namespace = manifest.keybackup.namespace
    reports = []
    for copy in copies:
        try:
            async with stores.store(namespace, copy.destination) as target:
                copied = await copy_snapshot(
                    manifest,
                    primary,
                    copy,
                    target,
                    clock=clock,
                    incomplete_grace=incomplete_grace,
                    concurrency=concurrency,
                )
        except Exception as error:  # the copy's storage could not be opened or closed
            failure = error if isinstance(error, KvBackupError) else UnexpectedError.wrapping(error)
            copied = CopyReport(
                copy.name, manifest.snapshot_id, "", failure.reason, failure.message
            )
        reports.append(copied)
    return tuple(reports)


async def _copied(
    manifest: Manifest, primary: SnapshotStore, target: SnapshotStore, concurrency: int
) -> CopyReport:
    keybackup, snapshot_id = manifest.keybackup, manifest.snapshot_id
    namespace, name = keybackup.namespace, keybackup.name
    # A wrong container or credential fails here, before anything is read.
    await target.list_stored(namespace, name)
    previous, _ = await previous_snapshot(manifest.vault_url, keybackup, snapshot_id, target)
    resumed = {
        (a.kind.value, a.name.lower()): a for a in await target.resumable(keybackup, snapshot_id)
    }
    source = OpenedSnapshot(manifest, partial(primary.read_artifact, namespace, name, snapshot_id))
    job = _CopyJob(keybackup, source, target, previous, resumed)
    outcomes = await for_each_item(
        [artifact.ref for artifact in manifest.artifacts],
        partial(_copy_artifact, job),
        concurrency=concurrency,
    )
    failed = next((o for o in outcomes if o.failed), None)
    if failed is not None:
        raise KvBackupError(
            f"{failed.kind} {failed.name} could not be copied: {failed.message}",
            reason=failed.reason,
        )
    whole = replace(manifest, artifacts=tuple(artifact_of(o) for o in outcomes))
    await target.write_manifest(as_written(whole, previous), whole.summary)
    written = [o for o in outcomes if o.freshness is WRITTEN]
    return CopyReport(
        name="",
        snapshot_id=snapshot_id,
        location="",
        written=len(written),
        written_bytes=sum(o.size for o in written),
        carried=len(outcomes) - len(written),
    )


async def _copy_artifact(job: _CopyJob, item: ItemRef) -> ItemOutcome:
    """One backup in the copy: as an interrupted copy wrote it, as the copy's latest
    snapshot holds it, or written now from the primary's bytes."""
    artifact = job.source.manifest.artifact(*item)
    resumed = job.resumed.get((item.kind.value, item.name.lower()))
    if resumed is not None and resumed.sha256 == artifact.sha256:
        return outcome_of(replace(artifact, location=resumed.location, stored_in=""), WRITTEN)
    known = job.previous.whole.find(*item) if job.previous else None
    if known is not None and (known.sha256, known.size) == (artifact.sha256, artifact.size):
        assert job.previous is not None
        carried = known.carried_from(job.previous.whole.snapshot_id)
        return outcome_of(
            replace(artifact, location=carried.location, stored_in=carried.stored_in), CARRIED
        )
    keybackup, snapshot_id = job.keybackup, job.source.manifest.snapshot_id
    async with job.source.verified(artifact) as data:
        location = await job.target.write_artifact(
            keybackup, snapshot_id, item.kind, item.name, data, artifact.versions
        )
    return outcome_of(replace(artifact, location=location, stored_in=""), WRITTEN)
