"""Retention: which snapshots go, which always stay, and removing them through the store."""

from __future__ import annotations

import datetime

import pytest

from kvbackup.api.keybackup import KeyBackupRef, Retention
from kvbackup.services.ports import StoredSnapshot
from kvbackup.services.retention import collect_garbage, expired
from kvbackup.services.snapshot import Manifest
from tests.unit.fakes import NAMESPACE, REF, InMemoryStore, manifest_at

NOW = datetime.datetime(2024, 6, 1, 12, 0, 0, tzinfo=datetime.UTC)
GRACE = datetime.timedelta(hours=1)
# Snapshot ids record when their run started; these are 1, 2, 3, 10 and 40 days old.
DAY_1, DAY_2, DAY_3, DAY_10, DAY_40 = (
    "20240531-120000-aaaa",
    "20240530-120000-bbbb",
    "20240529-120000-cccc",
    "20240522-120000-dddd",
    "20240422-120000-eeee",
)
ALL = [DAY_1, DAY_2, DAY_3, DAY_10, DAY_40]


def complete(*snapshot_ids: str, failed: tuple[str, ...] = ()) -> list[Manifest]:
    """Manifests newest first, as stores list them; ``failed`` ones have a failed key."""
    return [manifest_at(sid, failed=sid in failed) for sid in sorted(snapshot_ids, reverse=True)]


def stored(manifests: list[Manifest], *incomplete: str) -> list[StoredSnapshot]:
    snapshots = [StoredSnapshot(m.snapshot_id, True) for m in manifests]
    snapshots += [StoredSnapshot(sid, False) for sid in incomplete]
    return sorted(snapshots, key=lambda s: s.snapshot_id, reverse=True)


def doomed(
    retention: Retention, manifests: list[Manifest], *incomplete: str, now: datetime.datetime = NOW
) -> set[str]:
    summaries = [m.summary for m in manifests]
    return set(expired(summaries, stored(manifests, *incomplete), retention, now, GRACE))


def test_keep_last_2_keeps_exactly_the_two_newest() -> None:
    assert doomed(Retention(keep_last=2), complete(*ALL)) == {DAY_3, DAY_10, DAY_40}


def test_keep_last_removes_nothing_while_there_are_no_more_snapshots_than_that() -> None:
    assert doomed(Retention(keep_last=5), complete(*ALL)) == set()


def test_max_age_removes_the_snapshots_completed_longer_ago_than_that() -> None:
    assert doomed(Retention(max_age=datetime.timedelta(days=7)), complete(*ALL)) == {
        DAY_10,
        DAY_40,
    }


def test_a_snapshot_exactly_max_age_old_is_kept() -> None:
    manifests = complete(DAY_1, DAY_10)
    exactly = manifests[1].completion_time + datetime.timedelta(days=7)

    retention = Retention(max_age=datetime.timedelta(days=7))

    assert doomed(retention, manifests, now=exactly) == set()
    assert doomed(retention, manifests, now=exactly + datetime.timedelta(seconds=1)) == {DAY_10}


@pytest.mark.parametrize(
    ("retention", "removed"),
    [
        pytest.param(
            Retention(keep_last=4, max_age=datetime.timedelta(days=7)),
            {DAY_10, DAY_40},
            id="max-age-removes-more",
        ),
        pytest.param(
            Retention(keep_last=2, max_age=datetime.timedelta(days=30)),
            {DAY_3, DAY_10, DAY_40},
            id="keep-last-removes-more",
        ),
    ],
)
def test_keep_last_and_max_age_together_remove_what_either_one_removes(
    retention: Retention, removed: set[str]
) -> None:
    assert doomed(retention, complete(*ALL)) == removed


def test_the_newest_snapshot_is_never_removed_even_when_all_are_too_old() -> None:
    retention = Retention(max_age=datetime.timedelta(hours=1))

    assert doomed(retention, complete(*ALL)) == {DAY_2, DAY_3, DAY_10, DAY_40}


@pytest.mark.parametrize(
    "retention",
    [
        pytest.param(Retention(keep_last=1), id="keep-last-1"),
        pytest.param(Retention(max_age=datetime.timedelta(hours=1)), id="max-age-1h"),
    ],
)
def test_the_newest_fully_successful_snapshot_is_never_removed_even_when_the_policy_says_so(
    retention: Retention,
) -> None:
    manifests = complete(*ALL, failed=(DAY_1, DAY_2))

    # DAY_1 is the newest, DAY_3 the newest without a failed key; older good ones may go.
    assert doomed(retention, manifests) == {DAY_2, DAY_10, DAY_40}


def test_without_any_successful_snapshot_only_the_newest_is_protected() -> None:
    manifests = complete(*ALL, failed=tuple(ALL))

    assert doomed(Retention(keep_last=1), manifests) == {DAY_2, DAY_3, DAY_10, DAY_40}


def test_no_retention_keeps_every_complete_snapshot_however_many_or_old() -> None:
    many = [f"2023{month:02d}01-000000-abcd" for month in range(1, 13)]

    assert doomed(Retention(), complete(*ALL, *many)) == set()


def test_incomplete_snapshots_older_than_the_grace_are_removed_and_younger_ones_kept() -> None:
    older = "20240601-105900-f00d"  # 61 minutes before NOW
    exactly = "20240601-110000-f00e"  # 60 minutes before NOW
    younger = "20240601-113000-f00f"  # 30 minutes before NOW

    removed = doomed(Retention(), complete(DAY_1), older, exactly, younger)

    assert removed == {older}


def test_an_incomplete_snapshot_whose_id_tells_no_time_is_kept() -> None:
    assert doomed(Retention(keep_last=1), complete(DAY_1), "manual-copy") == set()


def test_complete_snapshots_are_never_removed_as_leftovers() -> None:
    manifests = complete(*ALL)

    summaries = [m.summary for m in manifests]

    assert expired(summaries, stored(manifests), Retention(), NOW, GRACE) == []


async def test_collect_garbage_deletes_through_the_store_and_returns_what_remains() -> None:
    store = InMemoryStore()
    for snapshot_id in ALL:
        store.add_snapshot(snapshot_id)
    leftover, running = "20240520-000000-dead", "20240601-115500-beef"
    store.add_snapshot(leftover, complete=False)
    store.add_snapshot(running, complete=False)
    other = KeyBackupRef(NAMESPACE, "weekly", "other-uid")
    store.add_snapshot(DAY_40, ref=other)

    kept = await collect_garbage(store, NAMESPACE, REF.name, Retention(keep_last=2), NOW, GRACE)

    assert [(left.summary.snapshot_id, left.held_by) for left in kept] == [(DAY_1, ()), (DAY_2, ())]
    assert await store.list_stored(NAMESPACE, REF.name) == [
        StoredSnapshot(running, False),
        StoredSnapshot(DAY_1, True),
        StoredSnapshot(DAY_2, True),
    ]
    assert [m.snapshot_id for m in await store.list_snapshots(NAMESPACE, "weekly")] == [DAY_40]
    manifest = await store.read_manifest(NAMESPACE, "weekly", DAY_40)
    assert await store.read_artifact(NAMESPACE, "weekly", DAY_40, manifest.artifacts[0])


async def test_collect_garbage_removes_each_manifest_before_its_artifacts() -> None:
    store = InMemoryStore()
    store.add_snapshot(DAY_1)
    store.add_snapshot(DAY_2)

    await collect_garbage(store, NAMESPACE, REF.name, Retention(keep_last=1), NOW, GRACE)

    assert store.writes == [f"delete manifest {DAY_2}", f"delete artifacts {DAY_2}"]


async def test_collect_garbage_with_nothing_stored_deletes_nothing() -> None:
    store = InMemoryStore()

    kept = await collect_garbage(store, NAMESPACE, REF.name, Retention(keep_last=1), NOW, GRACE)

    assert kept == []
    assert store.writes == []
