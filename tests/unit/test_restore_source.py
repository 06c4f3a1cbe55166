"""Which snapshot a KeyRestore reads, and from where, before any vault is touched."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest

from kvbackup.api.fields import BlobContainer
from kvbackup.api.keybackup import PRIMARY, BlobDestination, Destination, SecretDestination
from kvbackup.api.keyrestore import BlobSnapshotSource, SnapshotSource
from kvbackup.api.kinds import ItemKind
from kvbackup.errors import MissingReferenceError
from kvbackup.services.backup import run_backup
from kvbackup.services.outcomes import ItemResult
from kvbackup.services.ports import OpenedSnapshot, SnapshotStore
from kvbackup.services.restore import opened_snapshot, run_restore
from tests.unit.fakes import (
    MOMENT,
    NAMESPACE,
    REF,
    InMemoryStore,
    InMemoryVault,
    backup_spec,
    clock,
    restore_spec,
)

OFFSITE = BlobDestination(BlobContainer("https://acct.blob.core.windows.net", "backups"), "prod")
OLDER, NEWER = "20240501-020000-aaaa", "20240502-020000-bbbb"


class InMemoryStores:
    """``SnapshotStores``: a store per destination, and the KeyBackups that exist."""

    def __init__(self) -> None:
        self.stores: dict[Destination, InMemoryStore] = {}
        self.keybackups: dict[str, Destination] = {}
        #: Further copies of a KeyBackup, by its name, then the copy's.
        self.copies: dict[str, dict[str, Destination]] = {}
        self.paths_opened: list[str] = []

    def at(self, destination: Destination) -> InMemoryStore:
        return self.stores.setdefault(destination, InMemoryStore())

    @asynccontextmanager
    async def store(self, namespace: str, destination: Destination) -> AsyncIterator[SnapshotStore]:
        yield self.at(destination)

    @asynccontextmanager
    async def snapshot_at_path(
        self, namespace: str, source: BlobSnapshotSource
    ) -> AsyncIterator[OpenedSnapshot]:
        self.paths_opened.append(source.path)
        store = self.at(BlobDestination(source.container))
        [manifest] = store.manifests
        yield OpenedSnapshot(
            manifest,
            partial(store.read_artifact, NAMESPACE, REF.name, manifest.snapshot_id),
        )

    async def destinations_of(
        self, namespace: str, keybackup: str
    ) -> dict[str, Destination] | None:
        if keybackup not in self.keybackups:
            return None
        return {PRIMARY: self.keybackups[keybackup]} | self.copies.get(keybackup, {})


async def chosen(stores: InMemoryStores, source: SnapshotSource | BlobSnapshotSource) -> str:
    async with opened_snapshot(stores, NAMESPACE, source) as snapshot:
        await snapshot.read_artifact(snapshot.manifest.artifact(ItemKind.KEY, "app-key"))
        return snapshot.manifest.snapshot_id


async def test_a_keybackup_reference_reads_the_latest_snapshot_of_its_own_destination() -> None:
    stores = InMemoryStores()
    stores.keybackups[REF.name] = OFFSITE
    for snapshot_id in (OLDER, NEWER):
        stores.at(OFFSITE).add_snapshot(snapshot_id)
    stores.at(SecretDestination()).add_snapshot("20240503-020000-cccc")  # not this KeyBackup's

    assert await chosen(stores, SnapshotSource(REF.name)) == NEWER
    assert await chosen(stores, SnapshotSource(REF.name, OLDER)) == OLDER


async def test_the_snapshots_of_a_keybackup_that_is_gone_are_looked_for_in_secrets() -> None:
    stores = InMemoryStores()
    stores.at(SecretDestination()).add_snapshot(OLDER)

    assert await chosen(stores, SnapshotSource(REF.name)) == OLDER


async def test_a_snapshot_that_does_not_exist_is_a_missing_reference_named_by_its_id() -> None:
    stores = InMemoryStores()
    stores.at(SecretDestination()).add_snapshot(OLDER)

    with pytest.raises(MissingReferenceError, match=NEWER) as missing:
        await chosen(stores, SnapshotSource(REF.name, NEWER))
    assert missing.value.reason == "SourceNotFound"


async def test_a_blob_path_is_read_without_any_keybackup() -> None:
    stores = InMemoryStores()
    container = BlobContainer("https://acct.blob.core.windows.net", "backups")
    stores.at(BlobDestination(container)).add_snapshot(OLDER)
    path = f"prod/{NAMESPACE}/{REF.name}/{OLDER}"

    assert await chosen(stores, BlobSnapshotSource(container, path)) == OLDER
    assert stores.paths_opened == [path]


async def test_a_differential_snapshot_is_restored_whole_from_the_snapshots_holding_its_items() -> (
    None
):
    store, target = InMemoryStore(), InMemoryVault()
    source = InMemoryVault()
    names = ("changed", "kept-1", "kept-2", "kept-3", "kept-4")
    for name in names:
        source.add(name, versions=(f"{name}-v1",))
    first = await run_backup(backup_spec(*names), REF, OLDER, source, store, clock=clock)
    source.change("changed", MOMENT, versions=("changed-v1", "changed-v2"))
    await run_backup(backup_spec(*names), REF, NEWER, source, store, clock=later)
    stores = InMemoryStores()
    stores.stores[SecretDestination()] = store

    async with opened_snapshot(stores, NAMESPACE, SnapshotSource(REF.name)) as snapshot:
        report = await run_restore(restore_spec(), snapshot, target, clock=clock)

    assert store.manifests[-1].base == first.snapshot_id
    assert [(o.name, o.result, o.versions) for o in report.outcomes] == [
        ("changed", ItemResult.RESTORED, ("changed-v1", "changed-v2")),
        *((name, ItemResult.RESTORED, (f"{name}-v1",)) for name in names[1:]),
    ]


def later() -> datetime.datetime:
    """An hour after ``clock``: within a day of OLDER's run, so nothing is due afresh."""
    return MOMENT + datetime.timedelta(hours=1)
