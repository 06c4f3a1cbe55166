"""Incremental backup runs: what is carried forward, what is backed up again, the manifests
they write, and what retention keeps for the snapshots that refer to earlier ones."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from kvbackup.api.keybackup import ItemSelector, KeyBackupSpec, Retention
from kvbackup.api.kinds import ItemKind
from kvbackup.errors import IntegrityError
from kvbackup.services.backup import BackupReport, run_backup
from kvbackup.services.outcomes import Freshness
from kvbackup.services.ports import read_whole_manifest
from kvbackup.services.retention import collect_garbage
from kvbackup.services.snapshot import ChangeRecord, Manifest, SnapshotSummary, new_snapshot_id
from tests.unit.fakes import (
    MOMENT,
    NAMESPACE,
    REF,
    TARGET_URL,
    InMemoryStore,
    InMemoryVault,
    Ticking,
    backup_spec,
    operation,
)

GRACE = datetime.timedelta(hours=1)
KEYS = [f"key-{index:02d}" for index in range(12)]


def selected(**changes: object) -> KeyBackupSpec:
    spec = backup_spec(selector=ItemSelector())
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def vault_of(names: list[str]) -> InMemoryVault:
    vault = InMemoryVault()
    for name in names:
        vault.add(name, versions=(f"{name}-v1",))
    return vault


async def back_up(
    spec: KeyBackupSpec,
    vault: InMemoryVault,
    store: InMemoryStore,
    clock: Ticking,
    *,
    full: bool = False,
    retention: bool = False,
) -> BackupReport:
    """One run five minutes after the last, into a snapshot named after its start."""
    clock.advance(minutes=5)
    vault.calls.clear()
    return await run_backup(
        spec,
        REF,
        new_snapshot_id(clock()),
        vault,
        store,
        clock=clock,
        full_requested=full,
        incomplete_grace=GRACE if retention else None,
    )


def counts(report: BackupReport) -> dict[str, int]:
    return {freshness.value: report.counted(freshness) for freshness in Freshness}


def written(store: InMemoryStore, report: BackupReport) -> Manifest:
    return next(m for m in store.manifests if m.snapshot_id == report.snapshot_id)


class TestUnchangedItemsAreCarriedForward:
    async def test_a_second_run_over_an_unchanged_vault_calls_nothing_per_item(self) -> None:
        vault, store, clock = vault_of(KEYS), InMemoryStore(), Ticking()
        first = await back_up(selected(), vault, store, clock)

        second = await back_up(selected(), vault, store, clock)

        assert vault.calls == []
        assert counts(second) == {"BackedUp": 0, "Unchanged": len(KEYS), "Refreshed": 0}
        assert {o.stored_in for o in second.outcomes} == {first.snapshot_id}
        assert (second.full_reason, second.compared_with) == ("", first.snapshot_id)
        assert (second.new_bytes, second.total_bytes) == (0, first.total_bytes)

    async def test_only_the_changed_items_are_backed_up_and_the_rest_refer_to_earlier_bytes(
        self,
    ) -> None:
        vault, store, clock = vault_of(KEYS), InMemoryStore(), Ticking()
        first = await back_up(selected(), vault, store, clock)
        vault.change("key-03", clock(), versions=("key-03-v1", "key-03-v2"))
        vault.change("key-07", clock(), tags={"owner": "payments"})

        second = await back_up(selected(), vault, store, clock)

        backed_up = {o.name for o in second.outcomes if o.freshness is Freshness.BACKED_UP}
        assert backed_up == {"key-03", "key-07"}
        assert sorted(name for _, name in vault.calls) == ["key-03", "key-03", "key-07", "key-07"]
        whole = await read_whole_manifest(store, NAMESPACE, REF.name, second.snapshot_id)
        assert whole.artifact(ItemKind.KEY, "key-03").versions == ("key-03-v1", "key-03-v2")
        assert whole.artifact(ItemKind.KEY, "key-03").stored_in == ""
        assert whole.artifact(ItemKind.KEY, "key-04").stored_in == first.snapshot_id

    async def test_the_manifest_of_a_run_that_changed_little_lists_only_the_differences(
        self,
    ) -> None:
        vault, store, clock = vault_of(KEYS), InMemoryStore(), Ticking()
        first = await back_up(selected(), vault, store, clock)
        vault.change("key-03", clock(), versions=("key-03-v1", "key-03-v2"))
        del vault.items[(ItemKind.KEY, "key-05")]

        second = await back_up(selected(), vault, store, clock)

        stored = written(store, second)
        assert stored.base == first.snapshot_id
        assert [a.name for a in stored.artifacts] == ["key-03"]
        assert [name for _, name in stored.removed] == ["key-05"]
        whole = await read_whole_manifest(store, NAMESPACE, REF.name, second.snapshot_id)
        assert sorted(a.name for a in whole.artifacts) == sorted(set(KEYS) - {"key-05"})
        summary = (await store.list_snapshots(NAMESPACE, REF.name))[0]
        assert (summary.keys, summary.new_bytes) == (len(KEYS) - 1, second.new_bytes)

    async def test_later_differential_manifests_stay_on_the_same_whole_base(self) -> None:
        vault, store, clock = vault_of(KEYS), InMemoryStore(), Ticking()
        first = await back_up(selected(), vault, store, clock)
        vault.change("key-01", clock(), tags={"round": "1"})
        await back_up(selected(), vault, store, clock)
        vault.change("key-02", clock(), tags={"round": "2"})

        third = await back_up(selected(), vault, store, clock)

        stored = written(store, third)
        assert stored.base == first.snapshot_id
        assert sorted(a.name for a in stored.artifacts) == ["key-01", "key-02"]

    async def test_a_run_that_changed_more_than_a_quarter_writes_a_whole_manifest(self) -> None:
        vault, store, clock = vault_of(KEYS), InMemoryStore(), Ticking()
        await back_up(selected(), vault, store, clock)
        for name in KEYS[:4]:
            vault.change(name, clock(), tags={"rotated": "yes"})

        second = await back_up(selected(), vault, store, clock)

        stored = written(store, second)
        assert (stored.base, len(stored.artifacts)) == ("", len(KEYS))
        assert second.manifest_base == ""

    async def test_a_named_item_costs_one_version_listing_and_no_backup_when_unchanged(
        self,
    ) -> None:
        vault, store, clock = vault_of(KEYS[:2]), InMemoryStore(), Ticking()
        await back_up(backup_spec(*KEYS[:2]), vault, store, clock)

        second = await back_up(backup_spec(*KEYS[:2]), vault, store, clock)

        assert vault.calls == [(operation("list_versions", ItemKind.KEY), n) for n in KEYS[:2]]
        assert counts(second)["Unchanged"] == 2

    async def test_an_item_updated_in_the_second_its_run_started_is_backed_up_again(
        self,
    ) -> None:
        vault, store, clock = vault_of(KEYS[:2]), InMemoryStore(), Ticking()
        clock.advance(minutes=5)
        vault.change("key-00", clock(), tags={"just": "now"})
        clock.advance(minutes=-5)
        first = await back_up(selected(), vault, store, clock)

        second = await back_up(selected(), vault, store, clock)

        assert first.outcomes[0].change is None
        assert [(o.name, o.freshness) for o in second.outcomes] == [
            ("key-00", Freshness.BACKED_UP),
            ("key-01", Freshness.UNCHANGED),
        ]


class TestEveryItemIsBackedUpAfreshInBoundedTime:
    async def test_a_change_the_listing_hides_is_caught_once_the_full_backup_rule_is_due(
        self,
    ) -> None:
        spec = selected(full_backup_every=datetime.timedelta(minutes=9))
        vault, store, clock = vault_of(KEYS[:2]), InMemoryStore(), Ticking()
        await back_up(spec, vault, store, clock)
        vault.change("key-00", clock(), older_attributes="v0 disabled")

        hidden = await back_up(spec, vault, store, clock)
        due = await back_up(spec, vault, store, clock)

        assert counts(hidden)["Unchanged"] == 2
        assert counts(due) == {"BackedUp": 0, "Unchanged": 0, "Refreshed": 2}
        whole = await read_whole_manifest(store, NAMESPACE, REF.name, due.snapshot_id)
        artifact = whole.artifact(ItemKind.KEY, "key-00")
        stored = await store.read_artifact(NAMESPACE, REF.name, due.snapshot_id, artifact)
        assert b"v0 disabled" in stored

    async def test_a_full_run_asked_for_backs_up_every_item_and_writes_a_whole_manifest(
        self,
    ) -> None:
        vault, store, clock = vault_of(KEYS), InMemoryStore(), Ticking()
        await back_up(selected(), vault, store, clock)

        full = await back_up(selected(), vault, store, clock, full=True)

        assert counts(full) == {"BackedUp": 0, "Unchanged": 0, "Refreshed": len(KEYS)}
        assert full.full_reason == "asked for by backup-now"
        assert written(store, full).base == ""

    async def test_the_oldest_artifact_is_that_of_the_run_that_took_it(self) -> None:
        vault, store, clock = vault_of(KEYS[:2]), InMemoryStore(), Ticking()
        first = await back_up(selected(), vault, store, clock)
        vault.change("key-01", clock(), tags={"new": "tag"})

        second = await back_up(selected(), vault, store, clock)

        assert second.oldest_artifact == first.start_time.replace(microsecond=0)


class TestAFullRunWhenThereIsNothingToCompareWith:
    async def test_the_first_run_is_a_full_one(self) -> None:
        report = await back_up(selected(), vault_of(KEYS[:1]), InMemoryStore(), Ticking())

        assert report.full_reason == "no earlier snapshot"
        assert counts(report)["BackedUp"] == 1

    async def test_a_previous_snapshot_of_another_vault_is_not_compared_with(self) -> None:
        vault, store, clock = vault_of(KEYS[:1]), InMemoryStore(), Ticking()
        first = await back_up(selected(), vault, store, clock)

        moved = await back_up(selected(vault_url=TARGET_URL), vault, store, clock)

        assert (
            moved.full_reason
            == f"snapshot {first.snapshot_id} is of vault https://source.vault.azure.net"
        )
        assert counts(moved)["BackedUp"] == 1

    async def test_a_previous_snapshot_without_change_records_makes_a_full_run(self) -> None:
        vault, store, clock = vault_of(KEYS[:1]), InMemoryStore(), Ticking()
        first = await back_up(selected(), vault, store, clock)
        store.manifests = [
            dataclasses.replace(
                m, artifacts=tuple(dataclasses.replace(a, change=None) for a in m.artifacts)
            )
            for m in store.manifests
        ]

        second = await back_up(selected(), vault, store, clock)

        assert (
            second.full_reason == f"snapshot {first.snapshot_id} records no changes to compare with"
        )

    async def test_a_previous_manifest_that_cannot_be_read_makes_a_full_run(self) -> None:
        vault, store, clock = vault_of(KEYS[:1]), InMemoryStore(), Ticking()
        first = await back_up(selected(), vault, store, clock)
        forged = dataclasses.replace(store.manifests[0], base="20200101-000000-dead")
        store.manifests = [forged]

        second = await back_up(selected(), vault, store, clock)

        assert second.full_reason.startswith(f"snapshot {first.snapshot_id} cannot be compared")

    async def test_earlier_snapshots_that_cannot_be_listed_make_a_full_run_not_a_failed_one(
        self,
    ) -> None:
        vault, store, clock = vault_of(KEYS[:1]), InMemoryStore(), Ticking()
        await back_up(selected(), vault, store, clock)

        async def planted(namespace: str, keybackup: str) -> list[SnapshotSummary]:
            raise IntegrityError("a summary names snapshot '../other'")

        store.list_snapshots = planted  # type: ignore[method-assign]

        second = await back_up(selected(), vault, store, clock)

        assert second.full_reason == (
            "the earlier snapshots cannot be listed: a summary names snapshot '../other'"
        )
        assert counts(second)["BackedUp"] == 1


class TestRetentionKeepsWhatKeptSnapshotsNeed:
    async def test_a_snapshot_past_the_policy_is_held_while_a_kept_one_refers_to_it(
        self,
    ) -> None:
        spec = selected(retention=Retention(keep_last=1))
        vault, store, clock = vault_of(KEYS), InMemoryStore(), Ticking()
        first = await back_up(spec, vault, store, clock, retention=True)
        vault.change("key-00", clock(), tags={"a": "b"})

        second = await back_up(spec, vault, store, clock, retention=True)

        assert second.kept is not None
        assert [(k.summary.snapshot_id, k.held_by) for k in second.kept] == [
            (second.snapshot_id, ()),
            (first.snapshot_id, (second.snapshot_id,)),
        ]
        whole = await read_whole_manifest(store, NAMESPACE, REF.name, second.snapshot_id)
        for artifact in whole.artifacts:
            await store.read_artifact(NAMESPACE, REF.name, second.snapshot_id, artifact)

    async def test_a_held_snapshot_goes_once_no_kept_snapshot_needs_it(self) -> None:
        spec = selected(retention=Retention(keep_last=1))
        vault, store, clock = vault_of(KEYS[:2]), InMemoryStore(), Ticking()
        first = await back_up(spec, vault, store, clock, retention=True)

        refreshed = await back_up(spec, vault, store, clock, full=True, retention=True)

        assert refreshed.kept is not None
        assert [k.summary.snapshot_id for k in refreshed.kept] == [refreshed.snapshot_id]
        stored = await store.list_stored(NAMESPACE, REF.name)
        assert first.snapshot_id not in {s.snapshot_id for s in stored}

    async def test_the_artifacts_a_held_base_refers_to_are_held_with_it(self) -> None:
        vault, store, clock = vault_of(KEYS), InMemoryStore(), Ticking()
        first = await back_up(selected(), vault, store, clock)
        for name in KEYS[:4]:  # a whole manifest, most of it carried from the first
            vault.change(name, clock(), tags={"rotated": "yes"})
        whole = await back_up(selected(), vault, store, clock)
        vault.change("key-09", clock(), tags={"later": "yes"})
        latest = await back_up(selected(), vault, store, clock)
        assert written(store, latest).base == whole.snapshot_id

        remaining = await collect_garbage(
            store, NAMESPACE, REF.name, Retention(keep_last=1), clock(), GRACE
        )

        assert [(r.summary.snapshot_id, r.held_by) for r in remaining] == [
            (latest.snapshot_id, ()),
            (whole.snapshot_id, (latest.snapshot_id,)),
            (first.snapshot_id, (latest.snapshot_id,)),
        ]

    async def test_a_snapshot_the_policy_keeps_is_not_said_to_be_held(self) -> None:
        spec = selected(retention=Retention(keep_last=2))
        vault, store, clock = vault_of(KEYS), InMemoryStore(), Ticking()
        first = await back_up(spec, vault, store, clock, retention=True)
        vault.change("key-00", clock(), tags={"a": "b"})
        second = await back_up(spec, vault, store, clock, retention=True)
        vault.change("key-01", clock(), tags={"a": "b"})

        third = await back_up(spec, vault, store, clock, retention=True)

        assert third.kept is not None
        assert [(k.summary.snapshot_id, k.held_by) for k in third.kept] == [
            (third.snapshot_id, ()),
            (second.snapshot_id, ()),
            (first.snapshot_id, (third.snapshot_id, second.snapshot_id)),
        ]

    async def test_retention_deletes_nothing_when_a_kept_manifest_cannot_be_read(self) -> None:
        vault, store, clock = vault_of(KEYS[:2]), InMemoryStore(), Ticking()
        await back_up(selected(), vault, store, clock)
        await back_up(selected(), vault, store, clock)
        await back_up(selected(), vault, store, clock)
        newest = store.manifests[-1]
        original = store.read_manifest

        async def unreadable(namespace: str, keybackup: str, snapshot_id: str) -> Manifest:
            if snapshot_id == newest.snapshot_id:
                raise IntegrityError("tampered")
            return await original(namespace, keybackup, snapshot_id)

        store.read_manifest = unreadable  # type: ignore[method-assign]
        before = await store.list_stored(NAMESPACE, REF.name)

        with pytest.raises(IntegrityError, match="tampered"):
            await collect_garbage(
                store, NAMESPACE, REF.name, Retention(keep_last=1), clock(), GRACE
            )

        assert await store.list_stored(NAMESPACE, REF.name) == before


class TestChangeRecords:
    def test_a_record_is_kept_to_the_second_whatever_the_client_parsed(self) -> None:
        parsed = MOMENT.replace(microsecond=250_000)

        assert ChangeRecord.of(parsed, ["x"]) == ChangeRecord.of(MOMENT, ["x"])

    def test_records_differ_when_any_fact_the_listing_gave_differs(self) -> None:
        assert ChangeRecord.of(MOMENT, ["enabled", True]) != ChangeRecord.of(
            MOMENT, ["enabled", False]
        )

    def test_a_record_read_in_its_items_last_update_second_is_not_settled(self) -> None:
        record = ChangeRecord.of(MOMENT, [])

        assert not record.settled_before(MOMENT.replace(microsecond=900_000))
        assert record.settled_before(MOMENT + datetime.timedelta(seconds=1))
