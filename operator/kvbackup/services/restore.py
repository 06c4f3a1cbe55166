"""One restore: for each item (key, secret, certificate), recover it, restore it from the
snapshot, or leave it be."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial

from kvbackup.api.conditions import Phase
from kvbackup.api.keybackup import PRIMARY, SecretDestination
from kvbackup.api.keyrestore import (
    BlobSnapshotSource,
    KeyRestoreSpec,
    OnConflict,
    SnapshotSource,
    Strategy,
    purge_field,
)
from kvbackup.api.kinds import ITEM_KINDS, ItemRef
from kvbackup.errors import ConflictError, KvBackupError
from kvbackup.services.copy_reads import CopyFallback
from kvbackup.services.journal import RestoreJournal
from kvbackup.services.outcomes import ItemOutcome, ItemResult, phase_of
from kvbackup.services.ports import (
    Clock,
    ItemState,
    OpenedSnapshot,
    SnapshotStores,
    VaultItems,
    VaultReads,
)
from kvbackup.services.progress import Progress
from kvbackup.services.snapshot import Artifact
from kvbackup.services.workers import DEFAULT_CONCURRENCY, for_each_item


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
    spec: KeyRestoreSpec, item: ItemRef, state: ItemState, *, restored_earlier: bool = False
) -> Decision:
    """What to do with one item, given its state in the target vault.

    ``restored_earlier``: the item is active with exactly the snapshot's versions while an
    interrupted attempt of this same restore is being resumed, so that attempt brought it
    back; it is neither a conflict nor to be done again.
    """
    kind = item.kind.camel
    if state is ItemState.ACTIVE and restored_earlier:
        return Decision(
            Action.ALREADY_RESTORED,
            "Restored",
            "an interrupted attempt of this restore brought it back with the snapshot's versions",
        )
    if state is ItemState.ACTIVE:
        if spec.on_conflict is OnConflict.SKIP:
            return Decision(Action.SKIP, f"{kind}Exists", f"{item} is active; onConflict is Skip")
        return Decision(Action.REFUSE, f"{kind}Exists", f"{item} is active; onConflict is Fail")
    if state is ItemState.SOFT_DELETED:
        if item.kind in spec.purge_deleted and spec.strategy is not Strategy.RECOVER_ONLY:
            return Decision(Action.PURGE_AND_RESTORE)
        if spec.strategy is Strategy.RESTORE_ONLY:
            return Decision(
                Action.REFUSE,
                f"{kind}SoftDeleted",
                f"{item} is soft-deleted; strategy RestoreOnly cannot restore over it "
                f"(set {purge_field(item.kind)}: true to purge it first, or use Auto to "
                "recover it)",
            )
        return Decision(Action.RECOVER)
    if spec.strategy is Strategy.RECOVER_ONLY:
        return Decision(
            Action.REFUSE,
            f"{kind}NotDeleted",
            f"{item} is neither active nor soft-deleted; strategy RecoverOnly has nothing "
            "to recover",
        )
    return Decision(Action.RESTORE)


@asynccontextmanager
async def opened_snapshot(
    stores: SnapshotStores, namespace: str, source: SnapshotSource | BlobSnapshotSource
) -> AsyncIterator[OpenedSnapshot]:
    """The snapshot a KeyRestore names, ready to be read.

    A KeyBackup reference looks in the copy it names (its destination unless it names
    another), falling back to the other copies, or in Secrets once the object is gone; a
    blob path needs no object at all.
    """
    if isinstance(source, BlobSnapshotSource):
        async with stores.snapshot_at_path(namespace, source) as snapshot:
            yield snapshot
        return
    destinations = await stores.destinations_of(namespace, source.keybackup)
    async with AsyncExitStack() as stack:
        copies = CopyFallback(
            stack, stores, namespace, source, destinations or {PRIMARY: SecretDestination()}
        )
        yield await copies.open(source.snapshot)


@dataclass(frozen=True)
class RestoreReport:
    snapshot_id: str
    start_time: datetime.datetime
    completion_time: datetime.datetime
    outcomes: list[ItemOutcome]
    #: Nothing was changed: ``outcomes`` tell what a real restore would do.
    dry_run: bool = False
    #: The KeyBackup copy the manifest was read from; empty for a snapshot found by path.
    copy: str = ""
    #: What was read from another copy than the one named, and why.
    fallbacks: tuple[str, ...] = ()
    #: What a dry run reminds the user of before a real restore: that Key Vault restores a
    #: backup only where its rules allow it, when the target is another vault.
    reminder: str = ""

    @property
    def phase(self) -> Phase:
        # A dry run succeeds when it could tell about every item, whatever it found.
        return Phase.SUCCEEDED if self.dry_run else phase_of(self.outcomes)


async def _assess(
    spec: KeyRestoreSpec, vault: VaultReads, artifact: Artifact, *, resumed: bool
) -> Decision:
    """The decision for one item from its state in the vault: reads only."""
    item = ItemRef(artifact.kind, artifact.name)
    state = await vault.item_state(*item)
    restored_earlier = (
        resumed
        and state is ItemState.ACTIVE
        and set((await vault.list_versions(*item)).ids) == set(artifact.versions)
    )
    return decide(spec, item, state, restored_earlier=restored_earlier)


def _from_backup(artifact: Artifact) -> str:
    return f"{len(artifact.versions)} version(s) from the backup"


#: A dry run's result for each action a real restore would take, with its reason (after
#: the item's kind: ``KeyAbsent``, ``SecretSoftDeleted``).
_PREVIEWS = {
    Action.RESTORE: (ItemResult.WOULD_RESTORE, "Absent"),
    Action.PURGE_AND_RESTORE: (ItemResult.WOULD_RESTORE, "SoftDeleted"),
    Action.RECOVER: (ItemResult.WOULD_RECOVER, "SoftDeleted"),
    Action.SKIP: (ItemResult.WOULD_SKIP, ""),
    Action.REFUSE: (ItemResult.WOULD_FAIL, ""),
}


async def _preview_item(
    spec: KeyRestoreSpec, snapshot: OpenedSnapshot, vault: VaultReads, item: ItemRef
) -> ItemOutcome:
    """What a real restore would do with one item, from the same verification and the same
    decision, with reads only. A backup that fails its checksum fails the item, as in a
    real run, except under RecoverOnly, which never uses the backup: the item's message
    then tells of it."""
    kind, name = item
    artifact = snapshot.manifest.artifact(kind, name)
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
    message = decision.message  # why an item is skipped or refused
    if decision.action is Action.RESTORE:
        versions, message = artifact.versions, f"would restore {_from_backup(artifact)}"
    elif decision.action is Action.PURGE_AND_RESTORE:
        versions = artifact.versions
        message = f"would purge the soft-deleted {kind} and restore {_from_backup(artifact)}"
    elif decision.action is Action.RECOVER:
        message = f"would recover the soft-deleted {kind}"
    if unusable is not None:
        message = f"{message}; its backup is unusable: {unusable.message}"
    return ItemOutcome(
        name,
        result,
        versions,
        reason=f"{kind.camel}{reason}" if reason else decision.reason,
        message=message,
        kind=kind,
    )


@dataclass(frozen=True)
class _RestoreRun:
    """What every item of one (real) restore attempt works with."""

    spec: KeyRestoreSpec
    snapshot: OpenedSnapshot
    vault: VaultItems
    #: What each item came to in earlier attempts; this one's results are recorded in it.
    journal: RestoreJournal
    #: Each item's place in the journal.
    places: Mapping[ItemRef, int]
    #: An earlier attempt was interrupted, and may have restored items it did not record.
    resumed: bool


async def run_restore(
    spec: KeyRestoreSpec,
    snapshot: OpenedSnapshot,
    vault: VaultItems,
    *,
    clock: Clock,
    resumed: bool = False,
    journal: RestoreJournal | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int], Progress] | None = None,
) -> RestoreReport:
    """Bring back every chosen item; ``resumed`` when an earlier attempt was interrupted.

    With ``spec.dry_run``, only read: every item gets the decision a real run would take,
    told as ``Would...``, and the vault is left as it was.

    ``journal`` holds what each item came to in earlier attempts, and records this one's:
    an item restored, recovered or skipped before is reported so without a call to the
    vault.
    """
    start = clock()
    manifest = snapshot.manifest
    items = chosen_items(spec, snapshot)
    work: Callable[[ItemRef], Awaitable[ItemOutcome]]
    if spec.dry_run:  # a dry run changes nothing, so it has nothing to carry over
        work = partial(_preview_item, spec, snapshot, vault)
    else:
        journal = journal if journal is not None else RestoreJournal()
        journal.begin(manifest.snapshot_id, len(items))
        places = {item: index for index, item in enumerate(items)}
        work = partial(_restore_item, _RestoreRun(spec, snapshot, vault, journal, places, resumed))
    tracker = progress(len(items)) if progress else None
    outcomes = await for_each_item(
        items, work, concurrency=concurrency, on_done=tracker.item_done if tracker else None
    )
    if spec.dry_run:
        # An item that could not be assessed (not in the snapshot, refused by the vault)
        # would fail in a real run too.
        outcomes = [
            replace(o, result=ItemResult.WOULD_FAIL) if o.result is ItemResult.FAILED else o
            for o in outcomes
        ]
    return RestoreReport(
        manifest.snapshot_id,
        start,
        clock(),
        outcomes,
        dry_run=spec.dry_run,
        copy=snapshot.copy,
        fallbacks=tuple(snapshot.fallbacks),
        reminder=other_vault_reminder(manifest.vault_url, spec.vault_url) if spec.dry_run else "",
    )


def other_vault_reminder(source: str, target: str) -> str:
    """Empty when ``target`` is the vault the snapshot came from; else what Key Vault
    requires of a restore into another vault, for the user to check before a real one."""
    if source.rstrip("/").lower() == target.rstrip("/").lower():
        return ""
    return (
        f"the snapshot is of {source}, not {target}: Key Vault restores a backup only into a "
        "vault of the same Azure subscription and the same geography (and a Managed HSM "
        "backup only into a Managed HSM sharing its security domain); check that "
        f"{target} is such a vault, or the real restore fails for every item"
    )


def chosen_items(spec: KeyRestoreSpec, snapshot: OpenedSnapshot) -> list[ItemRef]:
    """The items the spec names, kind by kind; without names, every item of the snapshot."""
    if spec.items is None:
        return [ItemRef(a.kind, a.name) for a in snapshot.manifest.artifacts]
    return [ItemRef(kind, name) for kind in ITEM_KINDS for name in spec.items.get(kind, ())]


async def _restore_item(run: _RestoreRun, item: ItemRef) -> ItemOutcome:
    """One item: as an earlier attempt left it, or brought back now and recorded."""
    place = run.places[item]
    earlier = run.journal.earlier(place)
    if earlier is not None and earlier is not ItemResult.FAILED:
        return await _carried(run, item, earlier)
    # An item that failed is tried again: it may have been an item-scoped refusal since
    # lifted.
    outcome = await _bring_back(run, item, unrecorded=earlier is None)
    run.journal.record(place, outcome.result)
    return outcome


async def _carried(run: _RestoreRun, item: ItemRef, result: ItemResult) -> ItemOutcome:
    """An item an earlier attempt restored, recovered or skipped, reported as it was done."""
    kind, name = item
    artifact = run.snapshot.manifest.artifact(kind, name)
    if result is ItemResult.RESTORED:
        message = f"restored {len(artifact.versions)} version(s) by an earlier attempt"
        return ItemOutcome(
            name, result, artifact.versions, reason="Restored", message=message, kind=kind
        )
    if result is ItemResult.RECOVERED:
        versions = (await run.vault.list_versions(kind, name)).ids
        message = f"recovered the soft-deleted {kind} in an earlier attempt"
        return ItemOutcome(name, result, versions, reason="Recovered", message=message, kind=kind)
    skip = decide(run.spec, item, ItemState.ACTIVE)
    return ItemOutcome(name, result, reason=skip.reason, message=skip.message, kind=kind)


def _restored(item: ItemRef, artifact: Artifact) -> ItemOutcome:
    # A restore brings back exactly the versions the backup holds.
    return ItemOutcome(
        item.name,
        ItemResult.RESTORED,
        artifact.versions,
        reason="Restored",
        message=f"restored {_from_backup(artifact)}",
        kind=artifact.kind,
    )


async def _bring_back(run: _RestoreRun, item: ItemRef, *, unrecorded: bool) -> ItemOutcome:
    """Recover the item, restore it from the snapshot, or leave it be, as its state in the
    vault decides; ``unrecorded``: no attempt recorded what this item came to."""
    spec, snapshot, vault = run.spec, run.snapshot, run.vault
    kind, name = item
    # An item the snapshot lacks fails before the vault is called.
    artifact = snapshot.manifest.artifact(kind, name)
    if spec.strategy is not Strategy.RECOVER_ONLY:
        # Most restores go into a vault that lacks the item, where restoring at once is
        # one call instead of three. Key Vault refuses it when the name is taken,
        # active or soft-deleted; then the item's state decides, as for every item.
        async with snapshot.verified(artifact) as data:
            try:
                await vault.restore(kind, data)
            except KvBackupError as refusal:
                if refusal.temporary:
                    raise
            else:
                return _restored(item, artifact)
    # An interrupted attempt may have restored an item without recording it (the one it
    # was working on when the error came, or the last seconds before a crash).
    decision = await _assess(spec, vault, artifact, resumed=run.resumed and unrecorded)
    if decision.action is Action.ALREADY_RESTORED:
        return ItemOutcome(
            name,
            ItemResult.RESTORED,
            artifact.versions,
            reason=decision.reason,
            message=decision.message,
            kind=kind,
        )
    if decision.action in (Action.SKIP, Action.REFUSE):
        result = ItemResult.SKIPPED if decision.action is Action.SKIP else ItemResult.FAILED
        return ItemOutcome(
            name, result, reason=decision.reason, message=decision.message, kind=kind
        )
    if decision.action is Action.RECOVER:
        await vault.recover(kind, name)
        return ItemOutcome(
            name,
            ItemResult.RECOVERED,
            (await vault.list_versions(kind, name)).ids,
            reason="Recovered",
            message=f"recovered the soft-deleted {kind}",
            kind=kind,
        )
    # Read and verify before purging: an item must never be purged for a bad backup.
    async with snapshot.verified(artifact) as data:
        if decision.action is Action.PURGE_AND_RESTORE:
            await vault.purge(kind, name)
        try:
            await vault.restore(kind, data)
        except ConflictError as error:
            raise ConflictError(
                f"{item} appeared in the vault while restoring: {error.message}"
            ) from None
    return _restored(item, artifact)
