"""One backup run: choose the items (keys, secrets, certificates), store each one's backup
bytes, then the manifest."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from kvbackup import __version__
from kvbackup.api.conditions import Phase
from kvbackup.api.keybackup import KeyBackupRef, KeyBackupSpec, Retention
from kvbackup.api.kinds import ITEM_KINDS, ItemKind, ItemRef
from kvbackup.errors import (
    IntegrityError,
    InvalidSpecError,
    KvBackupError,
    NotFoundError,
    TooLargeError,
    TooManyVersionsError,
)
from kvbackup.services.outcomes import Freshness, ItemOutcome, ItemResult, phase_of
from kvbackup.services.ports import Clock, ItemInfo, SnapshotStore, VaultItems, VaultReads
from kvbackup.services.progress import Progress
from kvbackup.services.retention import KeptFor, collect_garbage
from kvbackup.services.snapshot import (
    Artifact,
    ChangeRecord,
    ItemFailure,
    Manifest,
    SnapshotSummary,
    sha256_hex,
    snapshot_time,
)
from kvbackup.services.workers import DEFAULT_CONCURRENCY, for_each_item


@dataclass(frozen=True)
class KeptSnapshot:
    summary: SnapshotSummary
    #: Where a user finds it, e.g. a label selector or a blob path.
    location: str
    #: The kept snapshots that refer to this one's artifacts or manifest, when retention's
    #: policy alone would have removed it: it is kept for them (newest first).
    held_by: tuple[str, ...] = ()
    #: Why retention's policy keeps it; empty when only ``held_by`` does.
    kept_for: tuple[KeptFor, ...] = ()
    #: Why storage refused to delete it when retention removed it; retried next time.
    deletion_refused: str = ""


@dataclass(frozen=True)
class BackupReport:
    snapshot_id: str
    start_time: datetime.datetime
    completion_time: datetime.datetime
    #: One per item, keys first, then secrets, then certificates.
    outcomes: list[ItemOutcome]
    location: str
    #: False when no item could be stored: then no manifest was written.
    manifest_written: bool
    #: The complete snapshots retention kept, newest first; None when it did not run.
    kept: tuple[KeptSnapshot, ...] | None = None
    #: Why retention failed; what was stored is kept all the same.
    retention_error: KvBackupError | None = None
    #: Keys and secrets the selectors matched that back a certificate this run did not
    #: back up: Key Vault backs them up only with their certificate, so they are not covered.
    left_out: Mapping[ItemKind, int] = field(default_factory=dict)
    #: Why every item was backed up afresh (a full run), e.g. "requested by backup-now";
    #: empty for an incremental run, which compared the items with snapshot ``compared_with``.
    full_reason: str = ""
    #: The previous snapshot whose records the items were compared with; empty in a full run.
    compared_with: str = ""
    #: The whole manifest the written one lists differences from; empty when it is whole.
    manifest_base: str = ""
    #: The snapshot's whole manifest, as the copies are written from it; None when no
    #: manifest was written.
    manifest: Manifest | None = None

    @property
    def phase(self) -> Phase:
        return phase_of(self.outcomes)

    @property
    def total_bytes(self) -> int:
        """Bytes of every item the snapshot holds, wherever they are stored."""
        return sum(outcome.size for outcome in self.outcomes)

    @property
    def new_bytes(self) -> int:
        """Bytes this run stored: the items it backed up, not those it carried forward."""
        return sum(o.size for o in self.outcomes if not o.stored_in)

    def counted(self, freshness: Freshness) -> int:
        """Items stored in this snapshot that came by their artifact so."""
        return sum(1 for o in self.outcomes if not o.failed and o.freshness is freshness)

    @property
    def oldest_artifact(self) -> datetime.datetime | None:
        """When the oldest backup the snapshot holds was taken (the start of the run that
        took it); None when it holds none."""
        taken = [
            snapshot_time(o.stored_in or self.snapshot_id) for o in self.outcomes if not o.failed
        ]
        known = [moment for moment in taken if moment is not None]
        return min(known, default=None)


async def chosen_items(
    spec: KeyBackupSpec, vault: VaultReads
) -> AsyncIterator[tuple[ItemRef, ItemInfo | None]]:
    """The items ``spec`` chooses, kind by kind: named items as named, with no listing
    entry; a selector's matches with theirs, as the vault lists them page by page, the
    keys and secrets a certificate manages included (``ItemInfo.managed``)."""
    for kind, choice in spec.choices.items():
        if choice.names is not None:
            for name in choice.names:
                yield ItemRef(kind, name), None
            continue
        selector = choice.selector
        assert selector is not None, "parse_spec guarantees names or selector"
        async for info in vault.list_items(kind):
            if selector.matches(info.name, info.tags):
                yield ItemRef(kind, info.name), info


class _Listing:
    """The items a spec chooses, in ITEM_KINDS order, and the managed items its selectors
    matched (keys and secrets that back a certificate), which are not backed up alone."""

    def __init__(self, spec: KeyBackupSpec, vault: VaultReads) -> None:
        self._spec = spec
        self._vault = vault
        #: Lowercased names of managed items per kind.
        self.managed: dict[ItemKind, set[str]] = {}
        #: The listing's record of each listed item not yet taken by its backup.
        self._changes: dict[ItemRef, ChangeRecord] = {}

    def change_of(self, item: ItemRef) -> ChangeRecord | None:
        """What the listing said of ``item``; None for a named item, which is not listed."""
        return self._changes.pop(item, None)

    async def items(self, on_listed: Callable[[], None] | None = None) -> AsyncIterator[ItemRef]:
        """Named items first as named; a selector's matches as the vault lists them page
        by page (``on_listed`` is called for each: the total grows as the listing goes)."""
        async for item, info in chosen_items(self._spec, self._vault):
            if info is None:
                yield item
                continue
            if info.managed:
                self.managed.setdefault(item.kind, set()).add(info.name.lower())
                continue
            if on_listed is not None:
                on_listed()
            if info.change is not None:
                self._changes[item] = info.change
            yield item

    def left_out(self, outcomes: Sequence[ItemOutcome]) -> dict[ItemKind, int]:
        """Managed items whose certificate is not among this run's certificates."""
        certificates = {o.name.lower() for o in outcomes if o.kind is ItemKind.CERTIFICATE}
        counts = {kind: len(names - certificates) for kind, names in self.managed.items()}
        return {kind: count for kind, count in counts.items() if count}


def nothing_matched(spec: KeyBackupSpec) -> InvalidSpecError:
    """The run's error when every kind is chosen by a selector and none matched anything."""
    if list(spec.choices) == [ItemKind.KEY]:
        return InvalidSpecError(
            f"spec.keys.selector matches no key in {spec.vault_url}", reason="NoKeysMatched"
        )
    selectors = ", ".join(f"spec.{kind.plural}.selector" for kind in spec.choices)
    return InvalidSpecError(
        f"{selectors} match nothing in {spec.vault_url}", reason="NothingMatched"
    )


@dataclass(frozen=True)
class Previous:
    """The latest complete snapshot, which a run compares each item with."""

    #: Its manifest, listing every item.
    whole: Manifest
    #: The whole manifest a differential manifest of this run would be based on: the
    #: previous snapshot's own when it is whole, else its base.
    base: Manifest

    def home_time(self, artifact: Artifact) -> datetime.datetime | None:
        """When the run that took ``artifact`` (listed by this snapshot) started."""
        return snapshot_time(artifact.home(self.whole.snapshot_id))


async def previous_snapshot(
    vault_url: str, keybackup: KeyBackupRef, snapshot_id: str, store: SnapshotStore
) -> tuple[Previous | None, str]:
    """The snapshot to compare with, or None and why there is none. A previous snapshot
    that cannot be read, or is of another vault, makes the run a full one rather than
    fail it: a full run needs nothing from it."""
    namespace, name = keybackup.namespace, keybackup.name
    try:
        summaries = await store.list_snapshots(namespace, name)
    except (IntegrityError, NotFoundError, TooLargeError) as error:
        # Retention, which lists them too, reports what is wrong with them.
        return None, f"the earlier snapshots cannot be listed: {error.message}"
    latest = next((s.snapshot_id for s in summaries if s.snapshot_id != snapshot_id), None)
    if latest is None:
        return None, "no earlier snapshot"
    try:
        stored = await store.read_manifest(namespace, name, latest)
        base = await store.read_manifest(namespace, name, stored.base) if stored.base else stored
        whole = stored.merged_onto(base)
    except (IntegrityError, NotFoundError, TooLargeError) as error:
        return None, f"snapshot {latest} cannot be compared with: {error.message}"
    if whole.vault_url != vault_url:
        return None, f"snapshot {latest} is of vault {whole.vault_url}"
    if not any(artifact.change for artifact in whole.artifacts):
        return None, f"snapshot {latest} records no changes to compare with"
    return Previous(whole, base), ""


@dataclass(frozen=True)
class _Run:
    """What backing up one item needs to know of the run."""

    spec: KeyBackupSpec
    keybackup: KeyBackupRef
    snapshot_id: str
    vault: VaultItems
    store: SnapshotStore
    start: datetime.datetime
    listing: _Listing
    #: Items a resumed run (same snapshot id) finds stored and checked already.
    stored_before: Mapping[tuple[ItemKind, str], Artifact]
    previous: Previous | None
    #: Every item is backed up afresh (a full run was asked for).
    full: bool

    def unchanged(self, known: Artifact | None, change: ChangeRecord) -> bool:
        """Whether ``known`` (the previous snapshot's artifact of the item) is still a
        backup of it: the listing says the same, and the full-backup rule is not due."""
        if self.full or known is None or known.change != change or self.previous is None:
            return False
        taken = self.previous.home_time(known)
        return taken is not None and self.start - taken < self.spec.full_backup_every


async def run_backup(
    spec: KeyBackupSpec,
    keybackup: KeyBackupRef,
    snapshot_id: str,
    vault: VaultItems,
    store: SnapshotStore,
    *,
    clock: Clock,
    incomplete_grace: datetime.timedelta | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int], Progress] | None = None,
    full_requested: bool = False,
) -> BackupReport:
    """Back up every chosen item into snapshot ``snapshot_id``, ``concurrency`` at a time;
    ``progress`` makes the tracker of a run of that many items. With ``incomplete_grace``,
    retention follows once a snapshot was kept (see ``_retained``).

    Incremental: an item whose listing entry is what the previous snapshot recorded, and
    whose backup there is younger than ``spec.full_backup_every``, is not backed up again;
    the new manifest refers to the artifact already stored. ``full_requested`` backs up
    every item afresh.

    Writes are idempotent per (snapshot, kind, name), so a run interrupted by a crash can
    be redone under the same snapshot id without leaving duplicates. Backup bytes are
    handed to the store as soon as they arrive and are not kept, so memory stays flat
    however many items the vault holds.
    """
    start = clock()
    # A wrong container or credential fails here, before any work is done in the vault.
    await store.list_stored(keybackup.namespace, keybackup.name)
    previous, full_reason = await previous_snapshot(spec.vault_url, keybackup, snapshot_id, store)
    if full_requested:
        full_reason = "asked for by backup-now"
    # A resumed run (same snapshot id) keeps what the interrupted one stored and checked.
    stored_before = {
        (a.kind, a.name.lower()): a for a in await store.resumable(keybackup, snapshot_id)
    }
    listing = _Listing(spec, vault)
    run = _Run(
        spec,
        keybackup,
        snapshot_id,
        vault,
        store,
        start,
        listing,
        stored_before,
        previous,
        full_requested,
    )
    outcomes = await _each_chosen_item(
        spec, listing, partial(_back_up_item, run), concurrency, progress
    )
    stored = [o for o in outcomes if not o.failed]
    completion = clock()
    manifest_base, whole = "", None
    if stored:
        whole = _manifest(spec, keybackup, snapshot_id, start, completion, outcomes)
        written = as_written(whole, previous)
        manifest_base = written.base
        await store.write_manifest(written, whole.summary)
    report = BackupReport(
        snapshot_id=snapshot_id,
        start_time=start,
        completion_time=completion,
        outcomes=outcomes,
        location=store.location(keybackup.namespace, keybackup.name, snapshot_id),
        manifest_written=bool(stored),
        left_out=listing.left_out(outcomes),
        full_reason=full_reason,
        compared_with=previous.whole.snapshot_id if previous and not full_reason else "",
        manifest_base=manifest_base,
        manifest=whole,
    )
    if incomplete_grace is None or not report.manifest_written:
        return report
    return await _retained(report, spec, keybackup, store, clock(), incomplete_grace)


#: A differential manifest is written while it lists at most this share of the items;
#: beyond it, a whole one costs little more and gives later runs a new base.
DIFFERENTIAL_SHARE_MAX = 0.25


def as_written(whole: Manifest, previous: Previous | None) -> Manifest:
    """The manifest to store: differential on the previous snapshot's base while the
    differences are few, else whole."""
    if previous is None:
        return whole
    differences = whole.differences_from(previous.base)
    listed = len(differences.artifacts) + len(differences.removed)
    return differences if listed <= DIFFERENTIAL_SHARE_MAX * len(whole.artifacts) else whole


async def _back_up_item(run: _Run, item: ItemRef) -> ItemOutcome:
    kind, name = item
    earlier = run.stored_before.get((kind, name.lower()))
    if earlier is not None:
        return ItemOutcome(
            name,
            ItemResult.SUCCEEDED,
            earlier.versions,
            earlier.sha256,
            earlier.size,
            location=earlier.location,
            kind=kind,
        )
    known = run.previous.whole.find(kind, name) if run.previous else None
    change = run.listing.change_of(item)
    if known is not None and change is not None and run.unchanged(known, change):
        return _carried(run, known)
    versions = await run.vault.list_versions(kind, name)
    require_backup_allowed(item, versions.ids)
    if change is None:
        # A named item is not listed: its versions' record tells its changes instead.
        change = versions.change
        if known is not None and change is not None and run.unchanged(known, change):
            return _carried(run, known)
    data = await run.vault.backup(kind, name)
    location = await run.store.write_artifact(
        run.keybackup, run.snapshot_id, kind, name, data, versions.ids
    )
    same = known is not None and change is not None and known.change == change
    return ItemOutcome(
        name=name,
        result=ItemResult.SUCCEEDED,
        versions=versions.ids,
        sha256=sha256_hex(data),
        size=len(data),
        location=location,
        kind=kind,
        # A record read in the run's first second could miss a change later that second.
        change=change if change is not None and change.settled_before(run.start) else None,
        freshness=Freshness.REFRESHED if same else Freshness.BACKED_UP,
    )


#: Most versions of one item Key Vault backs up: "you can't back up an object with more
#: than 500 past versions" (Azure Key Vault backup documentation); it refuses the call.
BACKUP_VERSIONS_MAX = 500


def require_backup_allowed(item: ItemRef, versions: Sequence[str]) -> None:
    """Refuses, before its backup call, an item Key Vault would refuse to back up."""
    if len(versions) > BACKUP_VERSIONS_MAX:
        raise TooManyVersionsError(
            f"{item} has {len(versions):,} versions; Key Vault backs up an item of at most "
            f"{BACKUP_VERSIONS_MAX} versions, so it is not backed up. Versions cannot be "
            f"deleted one by one: move its users to a new {item.kind} (a new name, whose "
            "backups restart at one version), keep this one in a snapshot taken before it "
            "grew past the limit, and stop rotating it this often"
        )


def _carried(run: _Run, known: Artifact) -> ItemOutcome:
    """The outcome of an unchanged item: the previous snapshot's artifact, where it is."""
    assert run.previous is not None, "only a previous snapshot's artifact is carried"
    return outcome_of(known.carried_from(run.previous.whole.snapshot_id), Freshness.UNCHANGED)


async def _each_chosen_item(
    spec: KeyBackupSpec,
    listing: _Listing,
    back_up: Callable[[ItemRef], Awaitable[ItemOutcome]],
    concurrency: int,
    progress: Callable[[int], Progress] | None,
) -> list[ItemOutcome]:
    """``back_up`` of the items the spec names, and of those its selectors match, kind by
    kind, as the vault lists them page by page."""
    named = sum(len(choice.names) for choice in spec.choices.values() if choice.names)
    tracker = progress(named) if progress else None

    def listed() -> None:
        # Backups start with the first page; the total grows as the listing goes on.
        if tracker is not None:
            tracker.total += 1

    outcomes = await for_each_item(
        listing.items(listed),
        back_up,
        concurrency=concurrency,
        on_done=tracker.item_done if tracker else None,
    )
    selected = {kind for kind, choice in spec.choices.items() if choice.selector is not None}
    if selected == set(spec.choices) and not outcomes:
        raise nothing_matched(spec)
    # Kind by kind; listed items in name order, whatever order the vault lists them in,
    # named ones as named (the sort is stable).
    outcomes.sort(
        key=lambda o: (ITEM_KINDS.index(o.kind), o.name.lower() if o.kind in selected else "")
    )
    return outcomes


def _manifest(
    spec: KeyBackupSpec,
    keybackup: KeyBackupRef,
    snapshot_id: str,
    start: datetime.datetime,
    completion: datetime.datetime,
    outcomes: Sequence[ItemOutcome],
) -> Manifest:
    return Manifest(
        snapshot_id=snapshot_id,
        keybackup=keybackup,
        vault_url=spec.vault_url,
        start_time=start,
        completion_time=completion,
        operator_version=__version__,
        artifacts=tuple(artifact_of(o) for o in outcomes if not o.failed),
        failures=tuple(
            ItemFailure(o.name, o.reason, o.message, o.kind) for o in outcomes if o.failed
        ),
    )


def outcome_of(artifact: Artifact, freshness: Freshness) -> ItemOutcome:
    """A stored item's outcome, as its manifest entry says it."""
    a = artifact
    return ItemOutcome(
        a.name,
        ItemResult.SUCCEEDED,
        a.versions,
        a.sha256,
        a.size,
        location=a.location,
        kind=a.kind,
        stored_in=a.stored_in,
        change=a.change,
        freshness=freshness,
    )


def artifact_of(outcome: ItemOutcome) -> Artifact:
    """The manifest's entry of an item stored by a run."""
    o = outcome
    return Artifact(o.name, o.versions, o.sha256, o.size, o.location, o.kind, o.stored_in, o.change)


async def kept_snapshots(
    store: SnapshotStore,
    keybackup: KeyBackupRef,
    retention: Retention,
    now: datetime.datetime,
    incomplete_grace: datetime.timedelta,
) -> tuple[KeptSnapshot, ...]:
    """Retention in ``store``: the complete snapshots it keeps, newest first."""
    namespace, name = keybackup.namespace, keybackup.name
    kept = await collect_garbage(store, namespace, name, retention, now, incomplete_grace)
    return tuple(
        KeptSnapshot(
            left.summary,
            store.location(namespace, name, left.summary.snapshot_id),
            left.held_by,
            left.kept_for,
            left.deletion_refused,
        )
        for left in kept
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
    try:
        kept = await kept_snapshots(store, keybackup, spec.retention, now, incomplete_grace)
    except KvBackupError as error:
        return replace(report, retention_error=error)
    return replace(report, kept=kept)
