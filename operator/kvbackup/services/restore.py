"""One restore: for each key, recover it, restore it from the snapshot, or leave it be."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
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
from kvbackup.services.outcomes import KeyOutcome, KeyResult, phase_of
from kvbackup.services.ports import Clock, KeyState, OpenedSnapshot, SnapshotStores, VaultKeys
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

    @property
    def phase(self) -> Phase:
        return phase_of(self.keys)


async def run_restore(
    spec: KeyRestoreSpec,
    snapshot: OpenedSnapshot,
    vault: VaultKeys,
    *,
    clock: Clock,
    resumed: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int], Progress] | None = None,
) -> RestoreReport:
    """Bring back every chosen key; ``resumed`` when an earlier attempt was interrupted."""
    start = clock()
    manifest = snapshot.manifest
    names = list(spec.keys) if spec.keys else [artifact.name for artifact in manifest.keys]

    async def verified_backup(name: str) -> bytes:
        artifact = manifest.artifact(name)
        data = await snapshot.read_artifact(artifact)
        artifact.verify(data)
        return data

    def restored(name: str, artifact: KeyArtifact) -> KeyOutcome:
        # A restore brings back exactly the versions the backup holds.
        return KeyOutcome(
            name,
            KeyResult.RESTORED,
            artifact.versions,
            reason="Restored",
            message=f"restored {len(artifact.versions)} version(s) from the backup",
        )

    async def bring_back(name: str) -> KeyOutcome:
        artifact = manifest.artifact(name)  # a key the snapshot lacks fails before the vault
        if spec.strategy is not Strategy.RECOVER_ONLY:
            # Most restores go into a vault that lacks the key, where restoring at once is
            # one call instead of three. Key Vault refuses it when the name is taken,
            # active or soft-deleted; then the key's state decides, as for every key.
            data = await verified_backup(name)
            try:
                await vault.restore_key(data)
                return restored(name, artifact)
            except KvBackupError as refusal:
                if refusal.temporary:
                    raise
        state = await vault.key_state(name)
        restored_earlier = (
            resumed
            and state is KeyState.ACTIVE
            and set(await vault.list_versions(name)) == set(artifact.versions)
        )
        decision = decide(spec, name, state, restored_earlier=restored_earlier)
        if decision.action is Action.ALREADY_RESTORED:
            return KeyOutcome(
                name,
                KeyResult.RESTORED,
                artifact.versions,
                reason=decision.reason,
                message=decision.message,
            )
        if decision.action is Action.SKIP:
            return KeyOutcome(
                name, KeyResult.SKIPPED, reason=decision.reason, message=decision.message
            )
        if decision.action is Action.REFUSE:
            return KeyOutcome(
                name, KeyResult.FAILED, reason=decision.reason, message=decision.message
            )
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
        data = await verified_backup(name)
        if decision.action is Action.PURGE_AND_RESTORE:
            await vault.purge_key(name)
        try:
            await vault.restore_key(data)
        except ConflictError as error:
            raise ConflictError(
                f"key {name} appeared in the vault while restoring: {error.message}"
            ) from None
        return restored(name, artifact)

    tracker = progress(len(names)) if progress else None
    outcomes = await for_each_key(
        names, bring_back, concurrency=concurrency, on_done=tracker.key_done if tracker else None
    )
    return RestoreReport(manifest.snapshot_id, start, clock(), outcomes)
