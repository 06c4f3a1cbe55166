"""A KeyBackup's further copies: the primary's snapshot written to each copy from the
primary's bytes, incrementally, with the copy's own retention, and a failure that is the
copy's alone."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kvbackup.api.fields import BlobContainer
from kvbackup.api.keybackup import BlobCopy, BlobDestination, Destination, Retention
from kvbackup.api.kinds import ItemKind
from kvbackup.errors import AccessDeniedError, NotFoundError, TransientError
from kvbackup.services.backup import BackupReport, run_backup
from kvbackup.services.copies import CopyReport, copy_snapshot, write_copies
from kvbackup.services.ports import SnapshotStore, StoredSnapshot, read_whole_manifest
from kvbackup.services.snapshot import Artifact, Manifest, new_snapshot_id
from tests.unit.fakes import (
    NAMESPACE,
    REF,
    InMemoryStore,
    InMemoryVault,
    Ticking,
    backup_spec,
)
from tests.unit.test_restore_source import InMemoryStores

GRACE = datetime.timedelta(hours=1)
KEYS = ("key-01", "key-02", "key-03", "key-04")
OFFSITE = BlobDestination(BlobContainer("https://offsite.blob.core.windows.net", "backups"), "kv")
VAULTED = BlobDestination(BlobContainer("https://vaulted.blob.core.windows.net", "backups"), "kv")


class ReadCountingStore(InMemoryStore):
    """An ``InMemoryStore`` that records the name of each artifact read from it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def read_artifact(
        self, namespace: str, keybackup: str, snapshot_id: str, artifact: Artifact
    ) -> bytes:
        self.reads.append(artifact.name)
        return await super().read_artifact(namespace, keybackup, snapshot_id, artifact)


def offsite(retention: Retention | None = None) -> BlobCopy:
    return BlobCopy("offsite", OFFSITE, retention or Retention())


def vault_of(*names: str) -> InMemoryVault:
    vault = InMemoryVault()
    for name in names:
        vault.add(name, versions=(f"{name}-v1",))
    return vault


async def back_up(
    vault: InMemoryVault, primary: InMemoryStore, clock: Ticking, *names: str
) -> BackupReport:
    """One run of the keys ``names`` (KEYS unless told), five minutes after the last, into
    a snapshot named after its start; the primary keeps every snapshot."""
    clock.advance(minutes=5)
    return await run_backup(
        backup_spec(*(names or KEYS)),
        REF,
        new_snapshot_id(clock()),
        vault,
        primary,
        clock=clock,
        incomplete_grace=GRACE,
    )


async def copied(
    report: BackupReport,
    primary: InMemoryStore,
    target: SnapshotStore,
    clock: Ticking,
    copy: BlobCopy | None = None,
) -> CopyReport:
    assert report.manifest is not None, "the run kept a snapshot"
    return await copy_snapshot(
        report.manifest, primary, copy or offsite(), target, clock=clock, incomplete_grace=GRACE
    )


async def whole(store: InMemoryStore, snapshot_id: str) -> Manifest:
    return await read_whole_manifest(store, NAMESPACE, REF.name, snapshot_id)


def items_of(manifest: Manifest) -> list[tuple[ItemKind, str, tuple[str, ...], str, int]]:
    """What a manifest says of each item's backup, wherever a store keeps its bytes."""
    return [(a.kind, a.name, a.versions, a.sha256, a.size) for a in manifest.artifacts]


async def assert_holds(store: InMemoryStore, manifest: Manifest) -> None:
    """Every backup ``manifest`` lists reads back from ``store`` as it recorded it."""
    for artifact in manifest.artifacts:
        artifact.verify(
            await store.read_artifact(NAMESPACE, REF.name, manifest.snapshot_id, artifact)
        )


def kept_ids(copy: CopyReport | BackupReport) -> list[str]:
    assert copy.kept is not None, "retention ran"
    return [kept.summary.snapshot_id for kept in copy.kept]


class TestACopyHoldsThePrimarysSnapshot:
    async def test_a_first_copy_writes_every_backup_and_lists_what_the_primary_lists(
        self,
    ) -> None:
        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), InMemoryStore(), Ticking()
        report = await back_up(vault, primary, clock)

        copy = await copied(report, primary, target, clock)

        assert copy.complete, copy.message
        assert (copy.name, copy.snapshot_id) == ("offsite", report.snapshot_id)
        assert copy.location == target.location(NAMESPACE, REF.name, report.snapshot_id)
        assert (copy.written, copy.carried) == (len(KEYS), 0)
        assert copy.written_bytes == report.total_bytes
        in_primary = await whole(primary, report.snapshot_id)
        in_copy = await whole(target, report.snapshot_id)
        assert items_of(in_copy) == items_of(in_primary)
        assert (in_copy.vault_url, in_copy.start_time, in_copy.completion_time) == (
            in_primary.vault_url,
            in_primary.start_time,
            in_primary.completion_time,
        )
        await assert_holds(target, in_copy)

    async def test_after_one_key_changed_the_copy_writes_that_key_alone_and_carries_the_rest(
        self,
    ) -> None:
        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), InMemoryStore(), Ticking()
        first = await back_up(vault, primary, clock)
        await copied(first, primary, target, clock)
        vault.change("key-02", clock(), versions=("key-02-v1", "key-02-v2"))
        second = await back_up(vault, primary, clock)
        target.writes.clear()

        copy = await copied(second, primary, target, clock)

        assert copy.complete, copy.message
        assert (copy.written, copy.carried) == (1, len(KEYS) - 1)
        assert target.writes == ["artifact key-02", "manifest"]
        in_primary = await whole(primary, second.snapshot_id)
        in_copy = await whole(target, second.snapshot_id)
        assert items_of(in_copy) == items_of(in_primary)
        # The unchanged keys are read where the copy's first snapshot stored them.
        assert {a.name: a.stored_in for a in in_copy.artifacts} == {
            "key-01": first.snapshot_id,
            "key-02": "",
            "key-03": first.snapshot_id,
            "key-04": first.snapshot_id,
        }
        await assert_holds(target, in_copy)


class TestACopyThatMissedRunsCatchesUp:
    async def test_a_copy_added_at_the_second_run_writes_every_backup_from_the_primarys_bytes(
        self,
    ) -> None:
        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), InMemoryStore(), Ticking()
        await back_up(vault, primary, clock)
        vault.change("key-02", clock(), versions=("key-02-v1", "key-02-v2"))
        second = await back_up(vault, primary, clock)

        copy = await copied(second, primary, target, clock)

        assert copy.complete, copy.message
        assert (copy.written, copy.carried) == (len(KEYS), 0)
        in_copy = await whole(target, second.snapshot_id)
        assert items_of(in_copy) == items_of(await whole(primary, second.snapshot_id))
        # Nothing in it refers to a snapshot the copy never held.
        assert {a.stored_in for a in in_copy.artifacts} == {""}
        await assert_holds(target, in_copy)

    async def test_a_copy_whose_latest_snapshot_was_deleted_writes_every_backup_again(
        self,
    ) -> None:
        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), InMemoryStore(), Ticking()
        first = await back_up(vault, primary, clock)
        await copied(first, primary, target, clock)
        await target.delete_snapshot(NAMESPACE, REF.name, first.snapshot_id)
        second = await back_up(vault, primary, clock)

        copy = await copied(second, primary, target, clock)

        assert copy.complete, copy.message
        assert (copy.written, copy.carried) == (len(KEYS), 0)
        await assert_holds(target, await whole(target, second.snapshot_id))

    async def test_a_copy_that_missed_a_run_writes_what_changed_since_its_own_latest_snapshot(
        self,
    ) -> None:
        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), InMemoryStore(), Ticking()
        first = await back_up(vault, primary, clock)
        await copied(first, primary, target, clock)
        vault.change("key-02", clock(), versions=("key-02-v1", "key-02-v2"))
        await back_up(vault, primary, clock)  # the copy misses this run
        vault.change("key-03", clock(), versions=("key-03-v1", "key-03-v2"))
        third = await back_up(vault, primary, clock)
        target.writes.clear()

        copy = await copied(third, primary, target, clock)

        # key-02 is carried in the primary from the run the copy missed: the copy has no
        # such bytes of its own, so it writes them.
        assert copy.complete, copy.message
        assert (copy.written, copy.carried) == (2, len(KEYS) - 2)
        assert sorted(target.writes) == ["artifact key-02", "artifact key-03", "manifest"]
        in_copy = await whole(target, third.snapshot_id)
        assert items_of(in_copy) == items_of(await whole(primary, third.snapshot_id))
        await assert_holds(target, in_copy)

    async def test_a_copy_redone_after_a_failure_reads_from_the_primary_only_what_it_lacks(
        self,
    ) -> None:
        vault, primary, clock = vault_of(*KEYS), ReadCountingStore(), Ticking()
        target = InMemoryStore()
        report = await back_up(vault, primary, clock)
        good = primary.artifacts.copy()
        primary.replace_artifact("key-03", b"tampered")
        failed = await copied(report, primary, target, clock)
        primary.artifacts = good
        primary.reads.clear()

        copy = await copied(report, primary, target, clock)

        assert not failed.complete
        assert copy.complete, copy.message
        assert primary.reads == ["key-03"]
        await assert_holds(target, await whole(target, report.snapshot_id))


class TestACopyFailsAlone:
    async def test_primary_bytes_that_do_not_match_the_manifest_fail_the_copy_without_a_manifest(
        self,
    ) -> None:
        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), InMemoryStore(), Ticking()
        report = await back_up(vault, primary, clock)
        primary.replace_artifact("key-03", b"not what was backed up")

        copy = await copied(report, primary, target, clock)

        assert not copy.complete
        assert copy.reason == "IntegrityCheckFailed"
        assert "key key-03 could not be copied" in copy.message
        assert "manifest recorded" in copy.message
        assert copy.kept is None
        # Without a manifest, the copy holds no snapshot a restore could take for whole.
        assert target.manifests == []
        assert await target.list_snapshots(NAMESPACE, REF.name) == []

    async def test_a_copy_whose_container_is_not_found_reports_the_stores_reason(self) -> None:
        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), InMemoryStore(), Ticking()
        report = await back_up(vault, primary, clock)
        target.unavailable = NotFoundError(
            "container backups does not exist", reason="ContainerNotFound"
        )

        copy = await copied(report, primary, target, clock)

        assert (copy.complete, copy.reason, copy.message) == (
            False,
            "ContainerNotFound",
            "container backups does not exist",
        )
        assert copy.snapshot_id == report.snapshot_id
        assert target.writes == []

    async def test_a_temporary_error_of_the_copy_is_its_report_too(self) -> None:
        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), InMemoryStore(), Ticking()
        report = await back_up(vault, primary, clock)
        target.unavailable = TransientError("blob storage did not answer")

        copy = await copied(report, primary, target, clock)

        assert (copy.complete, copy.reason) == (False, "Unavailable")

    async def test_an_unexpected_exception_is_reported_as_an_internal_error(self) -> None:
        class Broken(InMemoryStore):
            async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
                raise RuntimeError("disk on fire")

        vault, primary, clock = vault_of(*KEYS), InMemoryStore(), Ticking()
        report = await back_up(vault, primary, clock)

        copy = await copied(report, primary, Broken(), clock)

        assert (copy.complete, copy.reason) == (False, "InternalError")
        assert "RuntimeError: disk on fire" in copy.message

    async def test_a_retention_failure_in_the_copy_leaves_the_snapshot_complete_and_says_why(
        self,
    ) -> None:
        class ListsOnce(InMemoryStore):
            """Answers the copy's first listing, then fails: retention's own listing."""

            listed = False

            async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
                if self.listed:
                    raise AccessDeniedError("may not list")
                self.listed = True
                return await super().list_stored(namespace, keybackup)

        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), ListsOnce(), Ticking()
        report = await back_up(vault, primary, clock)

        copy = await copied(report, primary, target, clock)

        assert copy.complete, copy.message
        assert copy.kept is None
        assert copy.retention_error is not None
        assert copy.retention_error.reason == "AccessDenied"
        assert [m.snapshot_id for m in target.manifests] == [report.snapshot_id]


class TestEachCopyKeepsItsOwnRetention:
    async def test_a_copy_keeping_one_snapshot_keeps_one_while_the_primary_keeps_both(
        self,
    ) -> None:
        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), InMemoryStore(), Ticking()
        keep_one = offsite(Retention(keep_last=1))
        first = await back_up(vault, primary, clock)
        await copied(first, primary, target, clock, keep_one)
        for name in KEYS:  # nothing carried: the newest snapshot needs no older one
            vault.change(name, clock(), versions=(f"{name}-v1", f"{name}-v2"))
        second = await back_up(vault, primary, clock)

        copy = await copied(second, primary, target, clock, keep_one)

        assert kept_ids(copy) == [second.snapshot_id]
        assert [m.snapshot_id for m in target.manifests] == [second.snapshot_id]
        assert kept_ids(second) == [second.snapshot_id, first.snapshot_id]

    async def test_a_copy_keeps_an_older_snapshot_its_newest_refers_to(self) -> None:
        vault, primary, target, clock = vault_of(*KEYS), InMemoryStore(), InMemoryStore(), Ticking()
        keep_one = offsite(Retention(keep_last=1))
        first = await back_up(vault, primary, clock)
        await copied(first, primary, target, clock, keep_one)
        vault.change("key-02", clock(), versions=("key-02-v1", "key-02-v2"))
        second = await back_up(vault, primary, clock)

        copy = await copied(second, primary, target, clock, keep_one)

        assert copy.kept is not None
        assert [(k.summary.snapshot_id, k.held_by) for k in copy.kept] == [
            (second.snapshot_id, ()),
            (first.snapshot_id, (second.snapshot_id,)),
        ]
        await assert_holds(target, await whole(target, second.snapshot_id))


class FailingStores(InMemoryStores):
    """``InMemoryStores`` whose storage at one destination cannot be opened, raising
    ``error``; or, with ``on_close``, is opened and fails as it is closed."""

    def __init__(self, broken: Destination, error: Exception, *, on_close: bool = False) -> None:
        super().__init__()
        self.broken, self.error, self.on_close = broken, error, on_close

    @asynccontextmanager
    async def store(self, namespace: str, destination: Destination) -> AsyncIterator[SnapshotStore]:
        if destination == self.broken and not self.on_close:
            raise self.error
        async with super().store(namespace, destination) as store:
            yield store
        if destination == self.broken:
            raise self.error


class TestWriteCopies:
    async def test_a_run_that_kept_no_snapshot_is_copied_nowhere(self) -> None:
        vault, primary, clock = InMemoryVault(), InMemoryStore(), Ticking()
        stores = InMemoryStores()
        report = await back_up(vault, primary, clock)  # the vault lacks every key

        copies = await write_copies(
            report, [offsite()], primary, stores, clock=clock, incomplete_grace=GRACE
        )

        assert report.manifest is None
        assert copies == ()
        assert stores.stores == {}

    async def test_each_copy_gets_the_snapshot_and_a_report_in_the_spec_order(self) -> None:
        vault, primary, clock = vault_of(*KEYS), InMemoryStore(), Ticking()
        stores = InMemoryStores()
        report = await back_up(vault, primary, clock)
        copies = [offsite(), BlobCopy("vaulted", VAULTED, Retention())]

        reports = await write_copies(
            report, copies, primary, stores, clock=clock, incomplete_grace=GRACE
        )

        assert [(r.name, r.complete, r.written) for r in reports] == [
            ("offsite", True, len(KEYS)),
            ("vaulted", True, len(KEYS)),
        ]
        for destination in (OFFSITE, VAULTED):
            target = stores.at(destination)
            await assert_holds(target, await whole(target, report.snapshot_id))

    async def test_a_copy_whose_storage_cannot_be_opened_fails_alone(self) -> None:
        vault, primary, clock = vault_of(*KEYS), InMemoryStore(), Ticking()
        stores = FailingStores(OFFSITE, AccessDeniedError("the copy's credentials Secret is gone"))
        report = await back_up(vault, primary, clock)
        copies = [offsite(), BlobCopy("vaulted", VAULTED, Retention())]

        reports = await write_copies(
            report, copies, primary, stores, clock=clock, incomplete_grace=GRACE
        )

        assert [(r.name, r.complete, r.reason) for r in reports] == [
            ("offsite", False, "AccessDenied"),
            ("vaulted", True, ""),
        ]
        assert reports[0].message == "the copy's credentials Secret is gone"
        assert reports[0].snapshot_id == report.snapshot_id

    async def test_an_unexpected_error_opening_a_copys_storage_fails_that_copy_alone(
        self,
    ) -> None:
        vault, primary, clock = vault_of(*KEYS), InMemoryStore(), Ticking()
        stores = FailingStores(OFFSITE, ValueError("the SDK refused the account URL"))
        report = await back_up(vault, primary, clock)
        copies = [offsite(), BlobCopy("vaulted", VAULTED, Retention())]

        # Raised, it would fail the run whose snapshot the primary already holds.
        reports = await write_copies(
            report, copies, primary, stores, clock=clock, incomplete_grace=GRACE
        )

        assert [(r.name, r.complete, r.reason) for r in reports] == [
            ("offsite", False, "InternalError"),
            ("vaulted", True, ""),
        ]
        assert "ValueError: the SDK refused the account URL" in reports[0].message

    async def test_a_copy_whose_storage_fails_as_it_closes_has_one_report_all_the_same(
        self,
    ) -> None:
        vault, primary, clock = vault_of(*KEYS), InMemoryStore(), Ticking()
        stores = FailingStores(OFFSITE, TransientError("connection reset"), on_close=True)
        report = await back_up(vault, primary, clock)
        copies = [offsite(), BlobCopy("vaulted", VAULTED, Retention())]

        reports = await write_copies(
            report, copies, primary, stores, clock=clock, incomplete_grace=GRACE
        )

        # Status lists one entry per copy: two reports of one copy would contradict.
        assert [r.name for r in reports] == ["offsite", "vaulted"]
