"""One backup run: choose the keys, store each key's backup bytes, then the manifest."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from kvbackup import __version__
from kvbackup.api.conditions import Phase
from kvbackup.api.keybackup import KeyBackupRef, KeyBackupSpec
from kvbackup.errors import InvalidSpecError, KvBackupError
from kvbackup.services.outcomes import KeyOutcome, KeyResult, phase_of
from kvbackup.services.ports import Clock, SnapshotStore, VaultKeys
from kvbackup.services.progress import Progress
from kvbackup.services.retention import collect_garbage
from kvbackup.services.snapshot import (
    KeyArtifact,
    KeyFailure,
    Manifest,
    SnapshotSummary,
    sha256_hex,
)
from kvbackup.services.workers import DEFAULT_CONCURRENCY, for_each_key


@dataclass(frozen=True)
class KeptSnapshot:
    summary: SnapshotSummary
    #: Where a user finds it, e.g. a label selector or a blob path.
    location: str


@dataclass(frozen=True)
class BackupReport:
    snapshot_id: str
    start_time: datetime.datetime
    completion_time: datetime.datetime
    keys: list[KeyOutcome]
    location: str
    #: False when no key could be stored: then no manifest was written.
    manifest_written: bool
    #: The complete snapshots retention kept, newest first; None when it did not run.
    kept: tuple[KeptSnapshot, ...] | None = None
    #: Why retention failed; what was stored is kept all the same.
    retention_error: KvBackupError | None = None

    @property
    def phase(self) -> Phase:
        return phase_of(self.keys)

    @property
    def total_bytes(self) -> int:
        return sum(outcome.size for outcome in self.keys)


async def selected_keys(spec: KeyBackupSpec, vault: VaultKeys) -> AsyncIterator[str]:
    """The vault's keys the selector matches, as its listing yields them page by page."""
    selector = spec.keys.selector
    assert selector is not None, "parse_spec guarantees names or selector"
    async for info in vault.list_keys():
        if not info.managed and selector.matches(info.name, info.tags):
            yield info.name


def no_keys_matched(spec: KeyBackupSpec) -> InvalidSpecError:
    return InvalidSpecError(
        f"spec.keys.selector matches no key in {spec.vault_url}", reason="NoKeysMatched"
    )


async def run_backup(
    spec: KeyBackupSpec,
    keybackup: KeyBackupRef,
    snapshot_id: str,
    vault: VaultKeys,
    store: SnapshotStore,
    *,
    clock: Clock,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int], Progress] | None = None,
) -> BackupReport:
    """Back up every chosen key into snapshot ``snapshot_id``, ``concurrency`` at a time;
    ``progress`` makes the tracker of a run of that many keys.

    Writes are idempotent per (snapshot, key), so a run interrupted by a crash can be
    redone under the same snapshot id without leaving duplicates. Backup bytes are
    handed to the store as soon as they arrive and are not kept, so memory stays flat
    however many keys the vault holds.
    """
    start = clock()
    # A wrong container or credential fails here, before any work is done in the vault.
    await store.list_stored(keybackup.namespace, keybackup.name)

    # A resumed run (same snapshot id) keeps what the interrupted one stored and checked.
    stored_before = {a.name.lower(): a for a in await store.resumable(keybackup, snapshot_id)}

    async def back_up(name: str) -> KeyOutcome:
        earlier = stored_before.get(name.lower())
        if earlier is not None:
            return KeyOutcome(
                name,
                KeyResult.SUCCEEDED,
                earlier.versions,
                earlier.sha256,
                earlier.size,
                location=earlier.location,
            )
        versions = await vault.list_versions(name)
        data = await vault.backup_key(name)
        location = await store.write_artifact(keybackup, snapshot_id, name, data, versions)
        return KeyOutcome(
            name=name,
            result=KeyResult.SUCCEEDED,
            versions=versions,
            sha256=sha256_hex(data),
            size=len(data),
            location=location,
        )

    explicit = spec.keys.names
    tracker = progress(len(explicit) if explicit is not None else 0) if progress else None

    async def listed() -> AsyncIterator[str]:
        # Backups start with the first page; the total grows as the listing goes on.
        async for name in selected_keys(spec, vault):
            if tracker is not None:
                tracker.total += 1
            yield name

    outcomes = await for_each_key(
        explicit if explicit is not None else listed(),
        back_up,
        concurrency=concurrency,
        on_done=tracker.key_done if tracker else None,
    )
    if explicit is None:
        if not outcomes:
            raise no_keys_matched(spec)
        # Listed keys are kept in name order, whatever order the vault lists them in.
        outcomes.sort(key=lambda outcome: outcome.name.lower())
    stored = [o for o in outcomes if not o.failed]
    completion = clock()
    if stored:
        await store.write_manifest(
            Manifest(
                snapshot_id=snapshot_id,
                keybackup=keybackup,
                vault_url=spec.vault_url,
                start_time=start,
                completion_time=completion,
                operator_version=__version__,
                keys=tuple(
                    KeyArtifact(o.name, o.versions, o.sha256, o.size, o.location) for o in stored
                ),
                failures=tuple(
                    KeyFailure(o.name, o.reason, o.message) for o in outcomes if o.failed
                ),
            )
        )
    return BackupReport(
        snapshot_id=snapshot_id,
        start_time=start,
        completion_time=completion,
        keys=outcomes,
        location=store.location(keybackup.namespace, keybackup.name, snapshot_id),
        manifest_written=bool(stored),
    )


async def back_up_and_retain(
    spec: KeyBackupSpec,
    keybackup: KeyBackupRef,
    snapshot_id: str,
    vault: VaultKeys,
    store: SnapshotStore,
    *,
    clock: Clock,
    incomplete_grace: datetime.timedelta,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int], Progress] | None = None,
) -> BackupReport:
    """One run: back up, then apply retention if a snapshot was kept.

    A storage error during retention fails nothing that was stored: the report carries it.
    """
    report = await run_backup(
        spec,
        keybackup,
        snapshot_id,
        vault,
        store,
        clock=clock,
        concurrency=concurrency,
        progress=progress,
    )
    if not report.manifest_written:
        return report
    namespace, name = keybackup.namespace, keybackup.name
    try:
        kept = await collect_garbage(
            store, namespace, name, spec.retention, clock(), incomplete_grace
        )
    except KvBackupError as error:
        return replace(report, retention_error=error)
    return replace(
        report,
        kept=tuple(
            KeptSnapshot(summary, store.location(namespace, name, summary.snapshot_id))
            for summary in kept
        ),
    )
