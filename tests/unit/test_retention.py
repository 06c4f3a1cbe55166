"""Retention: which snapshots go, which always stay, and removing them through the store."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from kvbackup.api.keybackup import KeyBackupRef, Retention
from kvbackup.errors import DeletionRefusedError
from kvbackup.services.ports import StoredSnapshot
from kvbackup.services.retention import collect_garbage, expired, kept_by_policy
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


# --- Calendar tiers ----------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


def local_nights(first: datetime.date, last: datetime.date) -> list[str]:
    """Snapshot ids of a run at 00:30 every night in Berlin from ``first`` to ``last``:
    22:30 or 23:30 UTC the evening before, as daylight saving time comes and goes."""
    ids = []
    day = first
    while day <= last:
        local = datetime.datetime.combine(day, datetime.time(0, 30), tzinfo=BERLIN)
        ids.append(new_id(local))
        day += datetime.timedelta(days=1)
    return ids


def new_id(moment: datetime.datetime) -> str:
    return f"{moment.astimezone(datetime.UTC):%Y%m%d-%H%M%S}-abcd"


def night(month: int, day: int) -> str:
    """The id of the 2026 night run of that local date."""
    return new_id(datetime.datetime(2026, month, day, 0, 30, tzinfo=BERLIN))


def kept(retention: Retention, ids: list[str], now: datetime.datetime) -> dict[str, set[str]]:
    summaries = [m.summary for m in complete(*ids)]
    return {sid: set(why) for sid, why in kept_by_policy(summaries, retention, now).items()}


YEAR_END = datetime.datetime(2026, 12, 31, 12, 0, tzinfo=BERLIN)
A_YEAR_OF_NIGHTS = local_nights(datetime.date(2026, 1, 1), datetime.date(2026, 12, 31))
TYPICAL = Retention(
    tiers={"keepDaily": 7, "keepWeekly": 4, "keepMonthly": 12, "keepYearly": 3},
    time_zone=BERLIN,
)


def test_a_year_of_nights_keeps_7_days_4_weeks_and_12_months_by_the_calendar_of_its_zone() -> None:
    # Worked out by hand on a 2026 calendar. 2026-12-31 is a Thursday in ISO week 53
    # (28 Dec - 3 Jan); the weeks before end on Sundays 27, 20 and 13 December. Each month's
    # newest night run is its last day's, 00:30 in Berlin: in summer that is 22:30 UTC the
    # day before, which a calendar in UTC (or at a fixed offset) would put a day earlier,
    # and the first of each month's run into the month before.
    days = {night(12, d): {"keepDaily"} for d in (25, 26, 27, 28, 29, 30)}
    weeks = {night(12, 20): {"keepWeekly"}, night(12, 13): {"keepWeekly"}}
    months = {
        night(month, last): {"keepMonthly"}
        for month, last in (
            (1, 31), (2, 28), (3, 31), (4, 30), (5, 31), (6, 30),
            (7, 31), (8, 31), (9, 30), (10, 31), (11, 30),
        )
    }  # fmt: skip
    expected = days | weeks | months
    expected[night(12, 27)] = {"keepDaily", "keepWeekly"}
    expected[night(12, 31)] = {
        "newest",
        "newestSuccessful",
        "keepDaily",
        "keepWeekly",
        "keepMonthly",
        "keepYearly",
    }

    assert kept(TYPICAL, A_YEAR_OF_NIGHTS, YEAR_END) == expected
    assert len(expected) == 20


def test_the_night_after_each_daylight_saving_change_counts_on_its_local_day() -> None:
    # 29 March 2026: Berlin skips 02:00-03:00; 25 October: it lives 02:00-03:00 twice.
    spring = [
        new_id(datetime.datetime(2026, 3, 28, 23, 30, tzinfo=BERLIN)),
        new_id(datetime.datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN)),  # 00:30 UTC
        new_id(datetime.datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)),  # 01:30 UTC
        new_id(datetime.datetime(2026, 3, 30, 0, 30, tzinfo=BERLIN)),  # 22:30 UTC, 29th
    ]
    autumn = [
        new_id(datetime.datetime(2026, 10, 25, 2, 30, fold=0, tzinfo=BERLIN)),  # 00:30 UTC
        new_id(datetime.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN)),  # 01:30 UTC
        new_id(datetime.datetime(2026, 10, 26, 0, 30, tzinfo=BERLIN)),  # 23:30 UTC, 25th
    ]
    daily = Retention(tiers={"keepDaily": 2}, time_zone=BERLIN)

    assert set(kept(daily, spring, datetime.datetime(2026, 3, 30, 9, tzinfo=BERLIN))) == {
        spring[3],
        spring[2],
    }
    assert set(kept(daily, autumn, datetime.datetime(2026, 10, 26, 9, tzinfo=BERLIN))) == {
        autumn[2],
        autumn[1],
    }


def test_a_tier_counts_only_the_periods_that_have_a_snapshot() -> None:
    # Nights of 1-3 March, then none until 20 March: keepDaily 4 reaches back to 1 March.
    ids = [night(3, d) for d in (1, 2, 3, 20)]
    daily = Retention(tiers={"keepDaily": 4}, time_zone=BERLIN)

    assert set(kept(daily, ids, datetime.datetime(2026, 3, 21, tzinfo=BERLIN))) == set(ids)


def test_keep_last_and_the_tiers_keep_what_any_one_of_them_keeps() -> None:
    ids = [new_id(datetime.datetime(2026, 5, 1, hour, tzinfo=BERLIN)) for hour in range(6)]
    ids += [night(4, 10), night(3, 10)]
    retention = Retention(keep_last=3, tiers={"keepMonthly": 2}, time_zone=BERLIN)

    why = kept(retention, ids, datetime.datetime(2026, 5, 2, tzinfo=BERLIN))

    newest_three = sorted(ids[:6], reverse=True)[:3]
    assert set(why) == {*newest_three, night(4, 10)}
    assert why[newest_three[0]] == {"newest", "newestSuccessful", "keepLast", "keepMonthly"}
    assert why[night(4, 10)] == {"keepMonthly"}


def test_max_age_removes_what_the_tiers_would_keep_when_it_is_older() -> None:
    retention = Retention(
        max_age=datetime.timedelta(days=45), tiers={"keepMonthly": 12}, time_zone=BERLIN
    )

    assert set(kept(retention, A_YEAR_OF_NIGHTS, YEAR_END)) == {night(12, 31), night(11, 30)}


def test_without_a_keep_rule_every_snapshot_is_kept_for_that_reason() -> None:
    ids = [night(6, d) for d in (1, 2)]

    assert kept(Retention(), ids, YEAR_END) == {
        night(6, 2): {"newest", "newestSuccessful", "noKeepRule"},
        night(6, 1): {"noKeepRule"},
    }


async def test_collect_garbage_says_why_each_remaining_snapshot_is_kept() -> None:
    store = InMemoryStore()
    for sid in local_nights(datetime.date(2026, 12, 20), datetime.date(2026, 12, 31)):
        store.add_snapshot(sid)
    retention = Retention(tiers={"keepDaily": 2, "keepWeekly": 2}, time_zone=BERLIN)

    remaining = await collect_garbage(store, NAMESPACE, REF.name, retention, YEAR_END, GRACE)

    assert [(r.summary.snapshot_id, set(r.kept_for)) for r in remaining] == [
        (night(12, 31), {"newest", "newestSuccessful", "keepDaily", "keepWeekly"}),
        (night(12, 30), {"keepDaily"}),
        (night(12, 27), {"keepWeekly"}),
    ]


# --- Storage that refuses deletion ---------------------------------------------------------


class RefusingStore(InMemoryStore):
    """Refuses to delete the snapshots in ``immutable``, as WORM storage does."""

    def __init__(self, *immutable: str) -> None:
        super().__init__()
        self.immutable = set(immutable)

    async def delete_snapshot(self, namespace: str, keybackup: str, snapshot_id: str) -> None:
        if snapshot_id in self.immutable:
            raise DeletionRefusedError(f"delete {snapshot_id}: the blob is immutable")
        await super().delete_snapshot(namespace, keybackup, snapshot_id)


async def test_a_snapshot_storage_refuses_to_delete_is_kept_and_said_to_be_and_others_go() -> None:
    store = RefusingStore(DAY_10)
    for snapshot_id in ALL:
        store.add_snapshot(snapshot_id)

    remaining = await collect_garbage(
        store, NAMESPACE, REF.name, Retention(keep_last=2), NOW, GRACE
    )

    assert [(r.summary.snapshot_id, r.deletion_refused) for r in remaining] == [
        (DAY_1, ""),
        (DAY_2, ""),
        (DAY_10, f"delete {DAY_10}: the blob is immutable"),
    ]
    assert [s.snapshot_id for s in await store.list_stored(NAMESPACE, REF.name)] == [
        DAY_1,
        DAY_2,
        DAY_10,
    ]


async def test_a_refused_snapshot_is_deleted_by_the_first_retention_storage_allows() -> None:
    store = RefusingStore(DAY_10)
    for snapshot_id in ALL:
        store.add_snapshot(snapshot_id)
    await collect_garbage(store, NAMESPACE, REF.name, Retention(keep_last=2), NOW, GRACE)

    store.immutable.clear()
    remaining = await collect_garbage(
        store, NAMESPACE, REF.name, Retention(keep_last=2), NOW, GRACE
    )

    assert [r.summary.snapshot_id for r in remaining] == [DAY_1, DAY_2]
