"""One backup run: choose the keys, store each key's backup bytes, then the manifest."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

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
    incomplete_grace: datetime.timedelta | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int], Progress] | None = None,
) -> BackupReport:
    """Back up every chosen key into snapshot ``snapshot_id``, ``concurrency`` at a time;
    ``progress`` makes the tracker of a run of that many keys. With ``incomplete_grace``,
    retention follows once a snapshot was kept (see ``_retained``).

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
    back_up = partial(_back_up_key, vault, store, keybackup, snapshot_id, stored_before)
    outcomes = await _each_chosen_key(spec, vault, back_up, concurrency, progress)
    stored = [o for o in outcomes if not o.failed]
    completion = clock()
    if stored:
        await store.write_manifest(
            _manifest(spec, keybackup, snapshot_id, start, completion, outcomes)
        )
    report = BackupReport(
        snapshot_id=snapshot_id,
        start_time=start,
        completion_time=completion,
        keys=outcomes,
        location=store.location(keybackup.namespace, keybackup.name, snapshot_id),
        manifest_written=bool(stored),
    )
    if incomplete_grace is None or not report.manifest_written:
        return report
    return await _retained(report, spec, keybackup, store, clock(), incomplete_grace)


async def _back_up_key(
    vault: VaultKeys,
    store: SnapshotStore,
    keybackup: KeyBackupRef,
    snapshot_id: str,
    stored_before: Mapping[str, KeyArtifact],
    name: str,
) -> KeyOutcome:
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


async def _each_chosen_key(
    spec: KeyBackupSpec,
    vault: VaultKeys,
    back_up: Callable[[str], Awaitable[KeyOutcome]],
    concurrency: int,
    progress: Callable[[int], Progress] | None,
) -> list[KeyOutcome]:
    """``back_up`` of the keys the spec names, or of those its selector matches in name
    order, as the vault lists them page by page."""
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
    return outcomes


def _manifest(
    spec: KeyBackupSpec,
    keybackup: KeyBackupRef,
    snapshot_id: str,
    start: datetime.datetime,
    completion: datetime.datetime,
    outcomes: Sequence[KeyOutcome],
) -> Manifest:
    return Manifest(
        snapshot_id=snapshot_id,
        keybackup=keybackup,
        vault_url=spec.vault_url,
        start_time=start,
        completion_time=completion,
        operator_version=__version__,
        keys=tuple(
            KeyArtifact(o.name, o.versions, o.sha256, o.size, o.location)
            for o in outcomes
            if not o.failed
        ),
        failures=tuple(KeyFailure(o.name, o.reason, o.message) for o in outcomes if o.failed),
    )


async def _retained(
    report: BackupReport,
    spec: KeyBackupSpec,
    keybackup: KeyBackupRef,
    store: SnapshotStore,
    now: datetime.datetime,
    incomplete_grace: datetime.timedelta,
) -> BackupReport:
    """``report`` once retention ran. A storage error during retention fails nothing that
    was stored: the report carries it."""
    namespace, name = keybackup.namespace, keybackup.name
    try:
        kept = await collect_garbage(store, namespace, name, spec.retention, now, incomplete_grace)
    except KvBackupError as error:
        return replace(report, retention_error=error)
    return replace(
        report,
        kept=tuple(
            KeptSnapshot(summary, store.location(namespace, name, summary.snapshot_id))
            for summary in kept
        ),
    )
