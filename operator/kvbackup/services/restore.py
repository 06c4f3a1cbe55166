"""One restore: for each key, recover it, restore it from the snapshot, or leave it be."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial

from kvbackup.api.conditions import Phase
from kvbackup.api.keybackup import SecretDestination
from kvbackup.api.keyrestore import (
    LATEST,
    BlobSnapshotSource,
    KeyRestoreSpec,
    OnConflict,
    SnapshotSource,
    Strategy,
)
from kvbackup.errors import ConflictError, KvBackupError, MissingReferenceError
from kvbackup.services.journal import RestoreJournal
from kvbackup.services.outcomes import KeyOutcome, KeyResult, phase_of
from kvbackup.services.ports import (
    Clock,
    KeyState,
    OpenedSnapshot,
    SnapshotStores,
    VaultKeys,
    VaultReads,
)
from kvbackup.services.progress import Progress
from kvbackup.services.snapshot import KeyArtifact, SnapshotSummary
from kvbackup.services.workers import DEFAULT_CONCURRENCY, for_each_key


class Action(StrEnum):
    ALREADY_RESTORED = "AlreadyRestored"
    RESTORE = "Restore"
    RECOVER = "Recover"
    PURGE_AND_RESTORE = "PurgeAndRestore"
    SKIP = "Skip"
    REFUSE = "Refuse"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    message: str = ""


def decide(
    spec: KeyRestoreSpec, name: str, state: KeyState, *, restored_earlier: bool = False
) -> Decision:
    """What to do with one key, given its state in the target vault.

    ``restored_earlier``: the key is active with exactly the snapshot's versions while an
    interrupted attempt of this same restore is being resumed, so that attempt brought it
    back; it is neither a conflict nor to be done again.
    """
    if state is KeyState.ACTIVE and restored_earlier:
        return Decision(
            Action.ALREADY_RESTORED,
            "Restored",
            "an interrupted attempt of this restore brought it back with the snapshot's versions",
        )
    if state is KeyState.ACTIVE:
        if spec.on_conflict is OnConflict.SKIP:
            return Decision(Action.SKIP, "KeyExists", f"key {name} is active; onConflict is Skip")
        return Decision(Action.REFUSE, "KeyExists", f"key {name} is active; onConflict is Fail")
    if state is KeyState.SOFT_DELETED:
        if spec.purge_deleted and spec.strategy is not Strategy.RECOVER_ONLY:
            return Decision(Action.PURGE_AND_RESTORE)
        if spec.strategy is Strategy.RESTORE_ONLY:
            return Decision(
                Action.REFUSE,
                "KeySoftDeleted",
                f"key {name} is soft-deleted; strategy RestoreOnly cannot restore over it "
                "(set purgeDeletedKeys: true to purge it first, or use Auto to recover it)",
            )
        return Decision(Action.RECOVER)
    if spec.strategy is Strategy.RECOVER_ONLY:
        return Decision(
            Action.REFUSE,
            "KeyNotDeleted",
            f"key {name} is neither active nor soft-deleted; strategy RecoverOnly has nothing "
            "to recover",
        )
    return Decision(Action.RESTORE)


def choose_snapshot(
    snapshots: list[SnapshotSummary], wanted: str, keybackup: str
) -> SnapshotSummary:
    """``latest`` or a snapshot id among the complete snapshots (newest first)."""
    if not snapshots:
        raise MissingReferenceError(
            f"no complete snapshot of KeyBackup {keybackup} exists", reason="SourceNotFound"
        )
    if wanted == LATEST:
        return snapshots[0]
    for summary in snapshots:
        if summary.snapshot_id == wanted:
            return summary
    raise MissingReferenceError(
        f"KeyBackup {keybackup} has no complete snapshot {wanted}", reason="SourceNotFound"
    )


@asynccontextmanager
async def opened_snapshot(
    stores: SnapshotStores, namespace: str, source: SnapshotSource | BlobSnapshotSource
) -> AsyncIterator[OpenedSnapshot]:
    """The snapshot a KeyRestore names, ready to be read.

    A KeyBackup reference looks in that KeyBackup's own destination, or in Secrets once
    the object is gone; a blob path needs no object at all.
    """
    if isinstance(source, BlobSnapshotSource):
        async with stores.snapshot_at_path(namespace, source) as snapshot:
            yield snapshot
        return
    destination = await stores.destination_of(namespace, source.keybackup)
    async with stores.store(namespace, destination or SecretDestination()) as store:
        chosen = choose_snapshot(
            await store.list_snapshots(namespace, source.keybackup),
            source.snapshot,
            source.keybackup,
        )
        snapshot_id = chosen.snapshot_id
        yield OpenedSnapshot(
            await store.read_manifest(namespace, source.keybackup, snapshot_id),
            partial(store.read_artifact, namespace, source.keybackup, snapshot_id),
        )


@dataclass(frozen=True)
class RestoreReport:
    snapshot_id: str
    start_time: datetime.datetime
    completion_time: datetime.datetime
    keys: list[KeyOutcome]
    #: Nothing was changed: ``keys`` tell what a real restore would do.
    dry_run: bool = False

    @property
    def phase(self) -> Phase:
        # A dry run succeeds when it could tell about every key, whatever it found.
        return Phase.SUCCEEDED if self.dry_run else phase_of(self.keys)


async def _assess(
    spec: KeyRestoreSpec, vault: VaultReads, artifact: KeyArtifact, *, resumed: bool
) -> Decision:
    """The decision for one key from its state in the vault: reads only."""
    name = artifact.name
    state = await vault.key_state(name)
    restored_earlier = (
        resumed
        and state is KeyState.ACTIVE
        and set(await vault.list_versions(name)) == set(artifact.versions)
    )
    return decide(spec, name, state, restored_earlier=restored_earlier)


def _from_backup(artifact: KeyArtifact) -> str:
    return f"{len(artifact.versions)} version(s) from the backup"


#: A dry run's result for each action a real restore would take, with its reason.
_PREVIEWS = {
    Action.RESTORE: (KeyResult.WOULD_RESTORE, "KeyAbsent"),
    Action.PURGE_AND_RESTORE: (KeyResult.WOULD_RESTORE, "KeySoftDeleted"),
    Action.RECOVER: (KeyResult.WOULD_RECOVER, "KeySoftDeleted"),
    Action.SKIP: (KeyResult.WOULD_SKIP, ""),
    Action.REFUSE: (KeyResult.WOULD_FAIL, ""),
}


async def _preview_key(
    spec: KeyRestoreSpec, snapshot: OpenedSnapshot, vault: VaultReads, name: str
) -> KeyOutcome:
    """What a real restore would do with one key, from the same verification and the same
    decision, with reads only. A backup that fails its checksum fails the key, as in a
    real run, except under RecoverOnly, which never uses the backup: the key's message then
    tells of it."""
    artifact = snapshot.manifest.artifact(name)
    unusable: KvBackupError | None = None
    try:
        async with snapshot.verified(artifact):
            pass
    except KvBackupError as error:
        if error.temporary or spec.strategy is not Strategy.RECOVER_ONLY:
            raise
        unusable = error
    decision = await _assess(spec, vault, artifact, resumed=False)
    result, reason = _PREVIEWS[decision.action]
    versions: tuple[str, ...] = ()
    message = decision.message  # why a key is skipped or refused
    if decision.action is Action.RESTORE:
        versions, message = artifact.versions, f"would restore {_from_backup(artifact)}"
    elif decision.action is Action.PURGE_AND_RESTORE:
        versions = artifact.versions
        message = f"would purge the soft-deleted key and restore {_from_backup(artifact)}"
    elif decision.action is Action.RECOVER:
        message = "would recover the soft-deleted key"
    if unusable is not None:
        message = f"{message}; its backup is unusable: {unusable.message}"
    return KeyOutcome(name, result, versions, reason=reason or decision.reason, message=message)


@dataclass(frozen=True)
class _RestoreRun:
    """What every key of one (real) restore attempt works with."""

    spec: KeyRestoreSpec
    snapshot: OpenedSnapshot
    vault: VaultKeys
    #: What each key came to in earlier attempts; this one's results are recorded in it.
    journal: RestoreJournal
    #: Each key's place in the journal.
    places: Mapping[str, int]
    #: An earlier attempt was interrupted, and may have restored keys it did not record.
    resumed: bool


async def run_restore(
    spec: KeyRestoreSpec,
    snapshot: OpenedSnapshot,
    vault: VaultKeys,
    *,
    clock: Clock,
    resumed: bool = False,
    journal: RestoreJournal | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int], Progress] | None = None,
) -> RestoreReport:
    """Bring back every chosen key; ``resumed`` when an earlier attempt was interrupted.

    With ``spec.dry_run``, only read: every key gets the decision a real run would take,
    told as ``Would...``, and the vault is left as it was.

    ``journal`` holds what each key came to in earlier attempts, and records this one's:
    a key restored, recovered or skipped before is reported so without a call to the vault.
    """
    start = clock()
    manifest = snapshot.manifest
    names = list(spec.keys) if spec.keys else [artifact.name for artifact in manifest.keys]
    work: Callable[[str], Awaitable[KeyOutcome]]
    if spec.dry_run:  # a dry run changes nothing, so it has nothing to carry over
        work = partial(_preview_key, spec, snapshot, vault)
    else:
        journal = journal if journal is not None else RestoreJournal()
        journal.begin(manifest.snapshot_id, len(names))
        places = {name: index for index, name in enumerate(names)}
        work = partial(_restore_key, _RestoreRun(spec, snapshot, vault, journal, places, resumed))
    tracker = progress(len(names)) if progress else None
    outcomes = await for_each_key(
        names, work, concurrency=concurrency, on_done=tracker.key_done if tracker else None
    )
    if spec.dry_run:
        # A key that could not be assessed (not in the snapshot, refused by the vault)
        # would fail in a real run too.
        outcomes = [
            replace(o, result=KeyResult.WOULD_FAIL) if o.result is KeyResult.FAILED else o
            for o in outcomes
        ]
    return RestoreReport(manifest.snapshot_id, start, clock(), outcomes, dry_run=spec.dry_run)


async def _restore_key(run: _RestoreRun, name: str) -> KeyOutcome:
    """One key: as an earlier attempt left it, or brought back now and recorded."""
    place = run.places[name]
    earlier = run.journal.earlier(place)
    if earlier is not None and earlier is not KeyResult.FAILED:
        return await _carried(run, name, earlier)
    # A key that failed is tried again: it may have been a key-scoped refusal since lifted.
    outcome = await _bring_back(run, name, unrecorded=earlier is None)
    run.journal.record(place, outcome.result)
    return outcome


async def _carried(run: _RestoreRun, name: str, result: KeyResult) -> KeyOutcome:
    """A key an earlier attempt restored, recovered or skipped, reported as it was done."""
    artifact = run.snapshot.manifest.artifact(name)
    if result is KeyResult.RESTORED:
        message = f"restored {len(artifact.versions)} version(s) by an earlier attempt"
        return KeyOutcome(name, result, artifact.versions, reason="Restored", message=message)
    if result is KeyResult.RECOVERED:
        versions = await run.vault.list_versions(name)
        message = "recovered the soft-deleted key in an earlier attempt"
        return KeyOutcome(name, result, versions, reason="Recovered", message=message)
    skip = decide(run.spec, name, KeyState.ACTIVE)
    return KeyOutcome(name, result, reason=skip.reason, message=skip.message)


def _restored(name: str, artifact: KeyArtifact) -> KeyOutcome:
    # A restore brings back exactly the versions the backup holds.
    return KeyOutcome(
        name,
        KeyResult.RESTORED,
        artifact.versions,
        reason="Restored",
        message=f"restored {_from_backup(artifact)}",
    )


async def _bring_back(run: _RestoreRun, name: str, *, unrecorded: bool) -> KeyOutcome:
    """Recover the key, restore it from the snapshot, or leave it be, as its state in the
    vault decides; ``unrecorded``: no attempt recorded what this key came to."""
    spec, snapshot, vault = run.spec, run.snapshot, run.vault
    artifact = snapshot.manifest.artifact(name)  # a key the snapshot lacks fails before the vault
    if spec.strategy is not Strategy.RECOVER_ONLY:
        # Most restores go into a vault that lacks the key, where restoring at once is
        # one call instead of three. Key Vault refuses it when the name is taken,
        # active or soft-deleted; then the key's state decides, as for every key.
        async with snapshot.verified(artifact) as data:
            try:
                await vault.restore_key(data)
            except KvBackupError as refusal:
                if refusal.temporary:
                    raise
            else:
                return _restored(name, artifact)
    # An interrupted attempt may have restored a key without recording it (the key it
    # was working on when the error came, or the last seconds before a crash).
    decision = await _assess(spec, vault, artifact, resumed=run.resumed and unrecorded)
    if decision.action is Action.ALREADY_RESTORED:
        return KeyOutcome(
            name,
            KeyResult.RESTORED,
            artifact.versions,
            reason=decision.reason,
            message=decision.message,
        )
    if decision.action is Action.SKIP:
        return KeyOutcome(name, KeyResult.SKIPPED, reason=decision.reason, message=decision.message)
    if decision.action is Action.REFUSE:
        return KeyOutcome(name, KeyResult.FAILED, reason=decision.reason, message=decision.message)
    if decision.action is Action.RECOVER:
        await vault.recover_key(name)
        return KeyOutcome(
            name,
            KeyResult.RECOVERED,
            await vault.list_versions(name),
            reason="Recovered",
            message="recovered the soft-deleted key",
        )
    # Read and verify before purging: a key must never be purged for a bad backup.
    async with snapshot.verified(artifact) as data:
        if decision.action is Action.PURGE_AND_RESTORE:
            await vault.purge_key(name)
        try:
            await vault.restore_key(data)
        except ConflictError as error:
            raise ConflictError(
                f"key {name} appeared in the vault while restoring: {error.message}"
            ) from None
    return _restored(name, artifact)
