"""A restore from a KeyBackup with copies: the copy it names is read first, and what that
copy lacks, or holds altered, is read from the others and told as a fallback."""

from __future__ import annotations

import datetime

import pytest

from kvbackup.api.fields import BlobContainer
from kvbackup.api.keybackup import BlobCopy, BlobDestination, Retention, SecretDestination
from kvbackup.api.keyrestore import SnapshotSource
from kvbackup.api.kinds import ItemKind
from kvbackup.errors import MissingReferenceError, NotFoundError
from kvbackup.services.backup import run_backup
from kvbackup.services.copies import copy_snapshot
from kvbackup.services.copy_reads import FALLBACKS_TOLD
from kvbackup.services.outcomes import ItemResult
from kvbackup.services.ports import OpenedSnapshot
from kvbackup.services.restore import opened_snapshot, run_restore
from kvbackup.services.snapshot import Manifest
from tests.unit.fakes import (
    NAMESPACE,
    REF,
    SNAPSHOT_ID,
    InMemoryStore,
    InMemoryVault,
    backup_spec,
    clock,
    restore_spec,
)
from tests.unit.test_restore_source import InMemoryStores

GRACE = datetime.timedelta(hours=1)
KEYS = ("app-key", "db-key", "signing-key")
PRIMARY_AT = SecretDestination()
OFFSITE = BlobDestination(BlobContainer("https://offsite.blob.core.windows.net", "backups"), "kv")


async def snapshot_in_both(*keys: str) -> tuple[InMemoryStores, Manifest]:
    """A KeyBackup of ``keys`` (KEYS unless told) with an offsite copy; one run's snapshot,
    SNAPSHOT_ID, in its primary destination and copied offsite."""
    stores = InMemoryStores()
    stores.keybackups[REF.name] = PRIMARY_AT
    stores.copies[REF.name] = {"offsite": OFFSITE}
    vault = InMemoryVault()
    for name in keys or KEYS:
        vault.add(name, versions=(f"{name}-v1",))
    primary = stores.at(PRIMARY_AT)
    report = await run_backup(
        backup_spec(*(keys or KEYS)), REF, SNAPSHOT_ID, vault, primary, clock=clock
    )
    assert report.manifest is not None
    copy = await copy_snapshot(
        report.manifest,
        primary,
        BlobCopy("offsite", OFFSITE, Retention()),
        stores.at(OFFSITE),
        clock=clock,
        incomplete_grace=GRACE,
    )
    assert copy.complete, copy.message
    return stores, report.manifest


def lose(store: InMemoryStore, name: str) -> None:
    """Remove a key's stored backup behind the manifest's back, as a lost blob does."""
    [stored] = [place for place in store.artifacts if place[3] == name]
    del store.artifacts[stored]


async def read_every_key(snapshot: OpenedSnapshot) -> dict[str, bytes]:
    read = {}
    for artifact in snapshot.manifest.artifacts:
        async with snapshot.verified(artifact) as data:
            read[artifact.name] = data
    return read


class TestWhatTheNamedCopyLacksIsReadFromAnother:
    async def test_a_missing_backup_is_read_from_the_other_copy_and_told_by_item_and_copy(
        self,
    ) -> None:
        stores, _ = await snapshot_in_both()
        lose(stores.at(PRIMARY_AT), "db-key")

        async with opened_snapshot(stores, NAMESPACE, SnapshotSource(REF.name)) as snapshot:
            read = await read_every_key(snapshot)

            assert snapshot.copy == "primary"
            assert snapshot.fallbacks == [
                "key db-key in copy primary: backup of key db-key is missing"
            ]
        assert sorted(read) == sorted(KEYS)

    async def test_a_restore_reports_the_copy_it_read_and_its_fallbacks(self) -> None:
        stores, _ = await snapshot_in_both()
        lose(stores.at(PRIMARY_AT), "db-key")
        target = InMemoryVault()

        async with opened_snapshot(stores, NAMESPACE, SnapshotSource(REF.name)) as snapshot:
            report = await run_restore(restore_spec(), snapshot, target, clock=clock)

        assert [(o.name, o.result) for o in report.outcomes] == [
            (name, ItemResult.RESTORED) for name in KEYS
        ]
        assert report.copy == "primary"
        assert report.fallbacks == ("key db-key in copy primary: backup of key db-key is missing",)

    async def test_a_tampered_backup_is_read_from_the_other_copy_and_told_as_a_checksum_problem(
        self,
    ) -> None:
        stores, _ = await snapshot_in_both()
        stores.at(PRIMARY_AT).replace_artifact("db-key", b"not the backup")
        target = InMemoryVault()

        async with opened_snapshot(stores, NAMESPACE, SnapshotSource(REF.name)) as snapshot:
            report = await run_restore(restore_spec(), snapshot, target, clock=clock)

        assert {o.result for o in report.outcomes} == {ItemResult.RESTORED}
        assert target.items[(ItemKind.KEY, "db-key")].versions == ("db-key-v1",)
        [fallback] = report.fallbacks
        assert fallback.startswith("key db-key in copy primary: ")
        assert "sha256" in fallback
        assert "the manifest recorded" in fallback

    async def test_a_backup_every_copy_lacks_raises_the_named_copys_error(self) -> None:
        stores, manifest = await snapshot_in_both()
        for destination in (PRIMARY_AT, OFFSITE):
            lose(stores.at(destination), "db-key")

        async with opened_snapshot(stores, NAMESPACE, SnapshotSource(REF.name)) as snapshot:
            with pytest.raises(NotFoundError, match="db-key is missing") as missing:
                await snapshot.read_artifact(manifest.artifact(ItemKind.KEY, "db-key"))

            assert missing.value.reason == "ArtifactMissing"
            assert snapshot.fallbacks == [
                "key db-key in copy primary: backup of key db-key is missing",
                "key db-key in copy offsite: backup of key db-key is missing",
            ]

    async def test_beyond_ten_fallbacks_the_rest_are_counted_in_one_last_entry(self) -> None:
        keys = tuple(f"key-{index:02d}" for index in range(FALLBACKS_TOLD + 3))
        stores, _ = await snapshot_in_both(*keys)
        for name in keys:
            lose(stores.at(PRIMARY_AT), name)

        async with opened_snapshot(stores, NAMESPACE, SnapshotSource(REF.name)) as snapshot:
            read = await read_every_key(snapshot)

            assert len(read) == len(keys)
            assert snapshot.fallbacks == [
                *(
                    f"key {name} in copy primary: backup of key {name} is missing"
                    for name in keys[:FALLBACKS_TOLD]
                ),
                "and 3 more",
            ]


class TestTheCopyARestoreNames:
    async def test_naming_the_offsite_copy_reads_it_first_without_a_fallback(self) -> None:
        stores, _ = await snapshot_in_both()
        # Were the primary read at all, this would fail the read or be a fallback.
        lose(stores.at(PRIMARY_AT), "db-key")
        source = SnapshotSource(REF.name, copy="offsite")

        async with opened_snapshot(stores, NAMESPACE, source) as snapshot:
            read = await read_every_key(snapshot)

            assert (snapshot.copy, snapshot.fallbacks) == ("offsite", [])
        assert sorted(read) == sorted(KEYS)

    async def test_a_copy_the_keybackup_does_not_have_is_a_missing_copy(self) -> None:
        stores, _ = await snapshot_in_both()
        source = SnapshotSource(REF.name, copy="archive")

        with pytest.raises(MissingReferenceError, match="archive") as missing:
            async with opened_snapshot(stores, NAMESPACE, source):
                pass

        assert missing.value.reason == "CopyNotFound"
        assert "primary, offsite" in missing.value.message

    async def test_a_named_copy_without_any_snapshot_opens_the_next_copys_and_says_so(
        self,
    ) -> None:
        stores, _ = await snapshot_in_both()
        offsite = stores.at(OFFSITE)
        await offsite.delete_snapshot(NAMESPACE, REF.name, SNAPSHOT_ID)
        source = SnapshotSource(REF.name, copy="offsite")

        async with opened_snapshot(stores, NAMESPACE, source) as snapshot:
            opened_with = list(snapshot.fallbacks)
            read = await read_every_key(snapshot)

            assert snapshot.copy == "primary"
            assert snapshot.manifest.snapshot_id == SNAPSHOT_ID
            assert opened_with == [
                f"copy offsite: no complete snapshot of KeyBackup {REF.name} exists"
            ]
        assert sorted(read) == sorted(KEYS)

    async def test_a_named_copy_without_any_snapshot_is_told_once_however_many_backups_are_read(
        self,
    ) -> None:
        stores, manifest = await snapshot_in_both()
        await stores.at(OFFSITE).delete_snapshot(NAMESPACE, REF.name, SNAPSHOT_ID)
        source = SnapshotSource(REF.name, copy="offsite")

        async with opened_snapshot(stores, NAMESPACE, source) as snapshot:
            await snapshot.read_artifact(manifest.artifact(ItemKind.KEY, KEYS[0]))
            after_one = list(snapshot.fallbacks)
            await read_every_key(snapshot)

            # What the copy lacks as a whole is one fact: told once, not once per backup,
            # else it fills the entries told one by one and hides the items' own.
            assert snapshot.fallbacks == after_one
            assert len(set(after_one)) == len(after_one)
