"""Scheduled verification: every kept backup of every copy read back, and the latest
snapshot compared with the live vault, which is only read."""

from __future__ import annotations

import asyncio

import pytest

from kvbackup.api.keybackup import ItemChoice, ItemSelector, KeyBackupSpec
from kvbackup.api.kinds import ItemKind, ItemRef
from kvbackup.errors import (
    IntegrityError,
    KvBackupError,
    NotFoundError,
    TooLargeError,
    TransientError,
)
from kvbackup.services.backup import run_backup
from kvbackup.services.ports import read_whole_manifest
from kvbackup.services.snapshot import Artifact, Manifest, SnapshotSummary, new_snapshot_id
from kvbackup.services.verification import (
    CopyCheck,
    Finding,
    NamedStore,
    Problem,
    UnprotectedItem,
    Unprotection,
    check_copies,
    unprotected_items,
    verify,
)
from tests.unit.fakes import (
    NAMESPACE,
    REF,
    InMemoryStore,
    InMemoryVault,
    Ticking,
    backup_spec,
)

KEY, SECRET = ItemKind.KEY, ItemKind.SECRET
KEYS = ("key-01", "key-02", "key-03")


class ReadBackStore(InMemoryStore):
    """An ``InMemoryStore`` that records each artifact read, by the snapshot holding its
    bytes, and the most reads in flight at once; and fails the reads it is told to."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        #: Raised by reads of an artifact, by the item's name.
        self.read_errors: dict[str, KvBackupError] = {}
        #: Raised by reads of a manifest, by snapshot id.
        self.manifest_errors: dict[str, KvBackupError] = {}
        self.listing_error: KvBackupError | None = None

    async def list_snapshots(self, namespace: str, keybackup: str) -> list[SnapshotSummary]:
        if self.listing_error is not None:
            raise self.listing_error
        return await super().list_snapshots(namespace, keybackup)

    async def read_manifest(self, namespace: str, keybackup: str, snapshot_id: str) -> Manifest:
        error = self.manifest_errors.get(snapshot_id)
        if error is not None:
            raise error
        return await super().read_manifest(namespace, keybackup, snapshot_id)

    async def read_artifact(
        self, namespace: str, keybackup: str, snapshot_id: str, artifact: Artifact
    ) -> bytes:
        self.reads.append((artifact.home(snapshot_id), artifact.name))
        error = self.read_errors.get(artifact.name)
        if error is not None:
            raise error
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            # As a real store's request would, this lets the other reads start meanwhile.
            await asyncio.sleep(0)
            return await super().read_artifact(namespace, keybackup, snapshot_id, artifact)
        finally:
            self.in_flight -= 1


def vault_of(*names: str) -> InMemoryVault:
    vault = InMemoryVault()
    for name in names:
        vault.add(name, versions=(f"{name}-v1",))
    return vault


def every_key() -> KeyBackupSpec:
    return backup_spec(selector=ItemSelector())


async def back_up(
    spec: KeyBackupSpec, vault: InMemoryVault, store: InMemoryStore, clock: Ticking
) -> str:
    """One run five minutes after the last; returns its snapshot's id."""
    clock.advance(minutes=5)
    snapshot_id = new_snapshot_id(clock())
    await run_backup(spec, REF, snapshot_id, vault, store, clock=clock)
    vault.calls.clear()
    return snapshot_id


async def two_snapshots() -> tuple[ReadBackStore, InMemoryVault, Ticking, str, str]:
    """A store of two snapshots of KEYS: the first stores them all; key-02 changed before
    the second, which stores it anew and carries key-01 and key-03 from the first."""
    vault, store, clock = vault_of(*KEYS), ReadBackStore(), Ticking()
    first = await back_up(every_key(), vault, store, clock)
    vault.change("key-02", clock(), versions=("key-02-v1", "key-02-v2"))
    second = await back_up(every_key(), vault, store, clock)
    return store, vault, clock, first, second


def mirror(store: ReadBackStore) -> ReadBackStore:
    """Another copy holding what ``store`` holds now, as an offsite copy does."""
    copy = ReadBackStore()
    copy.artifacts = dict(store.artifacts)
    copy.manifests = list(store.manifests)
    copy.summaries = dict(store.summaries)
    return copy


def found(findings: list[Finding]) -> list[tuple[str, str, Problem, ItemRef | None]]:
    """The findings without their messages."""
    return [(f.copy, f.snapshot_id, f.problem, f.item) for f in findings]


async def latest_of(store: InMemoryStore, snapshot_id: str) -> Manifest:
    return await read_whole_manifest(store, NAMESPACE, REF.name, snapshot_id)


class TestEveryKeptBackupIsReadBack:
    async def test_intact_copies_pass_and_each_stored_artifact_is_read_once(self) -> None:
        primary, _, _, first, second = await two_snapshots()
        offsite = mirror(primary)

        checks, findings = await check_copies(
            [NamedStore("primary", primary), NamedStore("offsite", offsite)], NAMESPACE, REF.name
        )

        stored_bytes = sum(len(data) for data in primary.artifacts.values())
        assert checks == [
            CopyCheck("primary", snapshots=2, artifacts=4, bytes=stored_bytes),
            CopyCheck("offsite", snapshots=2, artifacts=4, bytes=stored_bytes),
        ]
        assert findings == []
        # Two snapshots list three keys each, but key-01 and key-03 are stored once.
        stored_once = [(first, "key-01"), (first, "key-02"), (first, "key-03"), (second, "key-02")]
        assert sorted(primary.reads) == stored_once
        assert sorted(offsite.reads) == stored_once

    async def test_a_tampered_artifact_is_found_by_name_as_a_checksum_mismatch(self) -> None:
        store, _, _, first, _ = await two_snapshots()
        store.replace_artifact("key-03", b"forged")

        _, findings = await check_copies([NamedStore("primary", store)], NAMESPACE, REF.name)

        # Listed by both snapshots, stored by the first: one finding, against the first.
        assert found(findings) == [
            ("primary", first, Problem.CHECKSUM_MISMATCH, ItemRef(KEY, "key-03"))
        ]
        message = findings[0].message
        assert "key key-03" in message
        assert store.location(NAMESPACE, REF.name, first) in message
        assert "memory:key-03" in message
        assert "has sha256" in message

    async def test_a_deleted_artifact_is_found_missing_in_that_copy_only(self) -> None:
        primary, _, _, _, second = await two_snapshots()
        offsite = mirror(primary)
        del offsite.artifacts[(NAMESPACE, REF.name, second, "key-02")]

        checks, findings = await check_copies(
            [NamedStore("primary", primary), NamedStore("offsite", offsite)], NAMESPACE, REF.name
        )

        assert found(findings) == [("offsite", second, Problem.MISSING, ItemRef(KEY, "key-02"))]
        assert "is missing" in findings[0].message
        assert [check.artifacts for check in checks] == [4, 4]

    @pytest.mark.parametrize(
        ("error", "problem"),
        [
            pytest.param(NotFoundError("blob not found"), Problem.MISSING, id="not-found"),
            pytest.param(
                IntegrityError("content MD5 mismatch"), Problem.CHECKSUM_MISMATCH, id="integrity"
            ),
            pytest.param(TooLargeError("9 MiB is too large"), Problem.UNREADABLE, id="too-large"),
        ],
    )
    async def test_a_permanent_error_of_the_store_is_a_finding_with_its_message(
        self, error: KvBackupError, problem: Problem
    ) -> None:
        store, _, _, _, second = await two_snapshots()
        store.read_errors["key-02"] = error

        _, findings = await check_copies([NamedStore("primary", store)], NAMESPACE, REF.name)

        # The first snapshot's own key-02 fails to read too: both are reported.
        assert [(f.problem, f.item) for f in findings] == [(problem, ItemRef(KEY, "key-02"))] * 2
        assert findings[0].snapshot_id == second
        assert error.message in findings[0].message

    async def test_shared_bytes_whose_snapshot_is_gone_are_reported_against_the_newest_listing_them(
        self,
    ) -> None:
        store, _, _, first, second = await two_snapshots()
        store.manifests = [m for m in store.manifests if m.snapshot_id != first]
        store.replace_artifact("key-03", b"forged")

        _, findings = await check_copies([NamedStore("primary", store)], NAMESPACE, REF.name)

        assert found(findings) == [
            ("primary", second, Problem.CHECKSUM_MISMATCH, ItemRef(KEY, "key-03"))
        ]

    async def test_findings_are_ordered_by_copy_then_newest_snapshot_then_item(self) -> None:
        primary, _, _, first, second = await two_snapshots()
        offsite = mirror(primary)
        del offsite.artifacts[(NAMESPACE, REF.name, first, "key-01")]
        # Found in another order than reported: key-03's refusal comes before any check.
        primary.read_errors["key-03"] = TooLargeError("too large")
        primary.artifacts[(NAMESPACE, REF.name, first, "key-01")] = b"forged"
        primary.artifacts[(NAMESPACE, REF.name, second, "key-02")] = b"forged"

        _, findings = await check_copies(
            [NamedStore("offsite", offsite), NamedStore("primary", primary)], NAMESPACE, REF.name
        )

        assert found(findings) == [
            ("offsite", first, Problem.MISSING, ItemRef(KEY, "key-01")),
            ("primary", second, Problem.CHECKSUM_MISMATCH, ItemRef(KEY, "key-02")),
            ("primary", first, Problem.CHECKSUM_MISMATCH, ItemRef(KEY, "key-01")),
            ("primary", first, Problem.UNREADABLE, ItemRef(KEY, "key-03")),
        ]

    async def test_no_more_artifacts_are_read_at_once_than_the_concurrency(self) -> None:
        names = [f"key-{index:02d}" for index in range(12)]
        store = ReadBackStore()
        await back_up(every_key(), vault_of(*names), store, Ticking())

        checks, _ = await check_copies(
            [NamedStore("primary", store)], NAMESPACE, REF.name, concurrency=3
        )

        assert checks[0].artifacts == 12
        assert store.most_in_flight == 3


class TestWhatCannotBeReadIsReported:
    @pytest.mark.parametrize(
        ("error", "problem"),
        [
            pytest.param(
                IntegrityError("the snapshot manifest is unreadable: not a SnapshotManifest"),
                Problem.UNREADABLE,
                id="unparsable",
            ),
            pytest.param(NotFoundError("no manifest"), Problem.MISSING, id="missing"),
        ],
    )
    async def test_a_manifest_that_cannot_be_read_is_a_finding_and_the_other_snapshots_are_read(
        self, error: KvBackupError, problem: Problem
    ) -> None:
        store, _, _, first, second = await two_snapshots()
        store.manifest_errors[second] = error

        checks, findings = await check_copies([NamedStore("primary", store)], NAMESPACE, REF.name)

        assert found(findings) == [("primary", second, problem, None)]
        assert "the manifest of snapshot" in findings[0].message
        assert store.location(NAMESPACE, REF.name, second) in findings[0].message
        assert error.message in findings[0].message
        assert checks == [CopyCheck("primary", 1, 3, checks[0].bytes)]
        assert sorted(store.reads) == [(first, name) for name in KEYS]

    async def test_a_copy_whose_snapshots_cannot_be_listed_is_one_finding_beside_the_others(
        self,
    ) -> None:
        primary, _, _, _, _ = await two_snapshots()
        offsite = mirror(primary)
        offsite.listing_error = NotFoundError("container offsite-backups not found")

        checks, findings = await check_copies(
            [NamedStore("primary", primary), NamedStore("offsite", offsite)], NAMESPACE, REF.name
        )

        assert found(findings) == [("offsite", "", Problem.MISSING, None)]
        assert "container offsite-backups not found" in findings[0].message
        assert [(c.copy, c.snapshots, c.artifacts) for c in checks] == [
            ("primary", 2, 4),
            ("offsite", 0, 0),
        ]

    @pytest.mark.parametrize("failing", ["artifact", "manifest", "listing"])
    async def test_a_temporary_error_of_the_store_is_raised_for_a_later_retry(
        self, failing: str
    ) -> None:
        store, _, _, _, second = await two_snapshots()
        unavailable = TransientError("storage unreachable")
        if failing == "artifact":
            store.read_errors["key-02"] = unavailable
        elif failing == "manifest":
            store.manifest_errors[second] = unavailable
        else:
            store.listing_error = unavailable

        with pytest.raises(TransientError):
            await check_copies([NamedStore("primary", store)], NAMESPACE, REF.name)


class TestWhatTheLatestSnapshotDoesNotProtect:
    async def test_an_unchanged_listed_key_costs_no_version_call(self) -> None:
        vault, store = vault_of(*KEYS), InMemoryStore()
        latest = await back_up(every_key(), vault, store, Ticking())

        unprotected = await unprotected_items(every_key(), await latest_of(store, latest), vault)

        assert unprotected == []
        assert vault.calls == []

    async def test_two_keys_created_after_the_last_snapshot_are_not_in_it(self) -> None:
        vault, store = vault_of(*KEYS), InMemoryStore()
        latest = await back_up(every_key(), vault, store, Ticking())
        vault.add("key-05")
        vault.add("Key-04")

        unprotected = await unprotected_items(every_key(), await latest_of(store, latest), vault)

        assert unprotected == [
            UnprotectedItem(ItemRef(KEY, "Key-04"), Unprotection.NOT_IN_SNAPSHOT),
            UnprotectedItem(ItemRef(KEY, "key-05"), Unprotection.NOT_IN_SNAPSHOT),
        ]
        assert vault.calls == []

    async def test_a_key_with_a_new_version_has_newer_versions_and_a_retagged_one_is_protected(
        self,
    ) -> None:
        vault, store, clock = vault_of(*KEYS), InMemoryStore(), Ticking()
        latest = await back_up(every_key(), vault, store, clock)
        vault.change("key-02", clock(), versions=("key-02-v1", "key-02-v2"))
        vault.change("key-03", clock(), tags={"owner": "payments"})

        unprotected = await unprotected_items(every_key(), await latest_of(store, latest), vault)

        assert unprotected == [UnprotectedItem(ItemRef(KEY, "key-02"), Unprotection.NEWER_VERSIONS)]
        # Both listings differ from the snapshot's records: only their versions tell.
        assert sorted(vault.calls) == [("list_versions", "key-02"), ("list_versions", "key-03")]

    async def test_named_keys_are_compared_by_their_versions_and_one_the_vault_lacks_is_left_out(
        self,
    ) -> None:
        vault, store, clock = vault_of("key-01", "key-02"), InMemoryStore(), Ticking()
        spec = backup_spec("key-01", "key-02", "gone")
        vault.fail("backup_key", "key-02", TooLargeError("the backup is too large"))
        latest = await back_up(spec, vault, store, clock)
        vault.failures.clear()
        vault.change("key-01", clock(), versions=("key-01-v1", "key-01-v2"))

        unprotected = await unprotected_items(spec, await latest_of(store, latest), vault)

        assert unprotected == [
            UnprotectedItem(ItemRef(KEY, "key-01"), Unprotection.NEWER_VERSIONS),
            UnprotectedItem(ItemRef(KEY, "key-02"), Unprotection.NOT_IN_SNAPSHOT),
        ]

    async def test_without_a_snapshot_every_chosen_item_present_is_unprotected_kind_by_kind(
        self,
    ) -> None:
        vault = InMemoryVault()
        vault.add("web-key", tags={"env": "prod"})
        vault.add("App-key", tags={"env": "prod"})
        vault.add("dev-key", tags={"env": "dev"})
        vault.add("cert-key", tags={"env": "prod"}, managed=True)
        vault.add("a-password", kind=SECRET)
        spec = backup_spec(
            choices={
                KEY: ItemChoice(selector=ItemSelector(tags={"env": "prod"})),
                SECRET: ItemChoice(names=("a-password", "gone-password")),
            }
        )

        unprotected = await unprotected_items(spec, None, vault)

        assert unprotected == [
            UnprotectedItem(ItemRef(KEY, "App-key"), Unprotection.NOT_IN_SNAPSHOT),
            UnprotectedItem(ItemRef(KEY, "web-key"), Unprotection.NOT_IN_SNAPSHOT),
            UnprotectedItem(ItemRef(SECRET, "a-password"), Unprotection.NOT_IN_SNAPSHOT),
        ]

    async def test_the_vault_sees_only_read_operations(self) -> None:
        vault, store, clock = vault_of(*KEYS), InMemoryStore(), Ticking()
        spec = backup_spec(*KEYS, "gone")
        latest = await back_up(spec, vault, store, clock)
        vault.change("key-02", clock(), versions=("key-02-v1", "key-02-v2"))
        vault.add("key-04")

        await unprotected_items(spec, await latest_of(store, latest), vault)
        await unprotected_items(every_key(), await latest_of(store, latest), vault)

        assert vault.calls
        assert {called for called, _ in vault.calls} == {"list_versions"}

    async def test_a_temporary_error_of_the_vault_is_raised(self) -> None:
        vault, store, clock = vault_of(*KEYS), InMemoryStore(), Ticking()
        latest = await back_up(every_key(), vault, store, clock)
        vault.change("key-02", clock(), versions=("key-02-v1", "key-02-v2"))
        vault.fail("list_versions", "key-02", TransientError("vault unreachable"))

        with pytest.raises(TransientError):
            await unprotected_items(every_key(), await latest_of(store, latest), vault)


class TestVerify:
    async def test_every_copy_is_checked_and_the_primarys_latest_snapshot_compared(
        self,
    ) -> None:
        vault, primary, clock = vault_of(*KEYS), ReadBackStore(), Ticking()
        await back_up(every_key(), vault, primary, clock)
        offsite = mirror(primary)
        vault.change("key-02", clock(), versions=("key-02-v1", "key-02-v2"))
        # Only the primary holds the snapshot of key-02's new version.
        latest = await back_up(every_key(), vault, primary, clock)
        vault.add("key-04")

        report = await verify(
            every_key(),
            REF,
            [NamedStore("primary", primary), NamedStore("offsite", offsite)],
            vault,
            clock=clock,
        )

        assert report.passed
        assert [(c.copy, c.snapshots) for c in report.checks] == [("primary", 2), ("offsite", 1)]
        assert report.compared_with == latest
        assert report.unprotected == (
            UnprotectedItem(ItemRef(KEY, "key-04"), Unprotection.NOT_IN_SNAPSHOT),
        )
        assert (report.start_time, report.completion_time) == (clock(), clock())

    async def test_the_next_copy_is_compared_when_the_primarys_latest_cannot_be_read(
        self,
    ) -> None:
        offsite, vault, clock, _, second = await two_snapshots()
        primary = mirror(offsite)
        primary.manifest_errors[second] = IntegrityError("unreadable")
        vault.change("key-01", clock(), versions=("key-01-v1", "key-01-v2"))

        report = await verify(
            every_key(),
            REF,
            [NamedStore("primary", primary), NamedStore("offsite", offsite)],
            vault,
            clock=clock,
        )

        assert not report.passed
        assert found(list(report.findings)) == [("primary", second, Problem.UNREADABLE, None)]
        assert report.compared_with == second
        assert report.unprotected == (
            UnprotectedItem(ItemRef(KEY, "key-01"), Unprotection.NEWER_VERSIONS),
        )

    async def test_the_next_copy_is_compared_when_the_primary_has_no_snapshot(self) -> None:
        offsite, vault, clock, _, second = await two_snapshots()

        report = await verify(
            every_key(),
            REF,
            [NamedStore("primary", ReadBackStore()), NamedStore("offsite", offsite)],
            vault,
            clock=clock,
        )

        assert report.passed
        assert report.compared_with == second
        assert report.unprotected == ()

    async def test_with_no_snapshot_anywhere_every_chosen_key_is_unprotected(self) -> None:
        vault = vault_of(*KEYS)

        report = await verify(
            every_key(), REF, [NamedStore("primary", ReadBackStore())], vault, clock=Ticking()
        )

        assert report.compared_with == ""
        assert [u.item.name for u in report.unprotected] == list(KEYS)
        assert {u.why for u in report.unprotected} == {Unprotection.NOT_IN_SNAPSHOT}
