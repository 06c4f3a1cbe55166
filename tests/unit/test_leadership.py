"""Leader election over one lease: who may take it when, and when a leader steps down."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from kvbackup.errors import ConflictError, TransientError
from kvbackup.services.leadership import (
    Leadership,
    LeaseRecord,
    Observation,
    Timing,
    claim,
    released,
)

MOMENT = datetime.datetime(2026, 11, 30, 5, 0, tzinfo=datetime.UTC)
TIMING = Timing(duration=15)


def _seen(record: LeaseRecord | None, at: float = 0.0) -> Observation:
    seen = Observation()
    seen.see(record, at)
    return seen


def test_a_lease_nobody_holds_yet_is_created_for_this_replica() -> None:
    wanted = claim(_seen(None), "a", TIMING, now=0.0, moment=MOMENT)
    assert wanted == LeaseRecord("a", 15, MOMENT, MOMENT)


def test_the_holder_renews_its_own_lease_without_a_transition() -> None:
    held = LeaseRecord("a", 15, MOMENT, MOMENT, transitions=3, version="7")
    later = MOMENT + datetime.timedelta(seconds=2)
    wanted = claim(_seen(held), "a", TIMING, now=2.0, moment=later)
    assert wanted == replace(held, renew_time=later)


def test_another_replicas_lease_is_trusted_for_its_duration_since_it_last_changed() -> None:
    held = LeaseRecord("b", 15, MOMENT, MOMENT, version="7")
    seen = _seen(held, at=100.0)
    assert claim(seen, "a", TIMING, now=114.9, moment=MOMENT) is None
    seen.see(replace(held, version="8"), 110.0)  # renewed: trusted anew
    assert claim(seen, "a", TIMING, now=124.9, moment=MOMENT) is None


def test_a_lease_left_unrenewed_for_its_duration_is_taken_over_with_a_transition() -> None:
    held = LeaseRecord("b", 15, MOMENT, MOMENT, transitions=2, version="7")
    seen = _seen(held, at=100.0)
    seen.see(held, 110.0)  # seen again unchanged: the clock does not restart
    wanted = claim(seen, "a", TIMING, now=115.0, moment=MOMENT)
    assert wanted is not None
    assert (wanted.holder, wanted.transitions, wanted.version) == ("a", 3, "7")


def test_a_released_lease_is_taken_at_once() -> None:
    held = released(LeaseRecord("b", 15, MOMENT, MOMENT, version="7"))
    wanted = claim(_seen(held, at=100.0), "a", TIMING, now=100.0, moment=MOMENT)
    assert wanted is not None
    assert wanted.holder == "a"


def test_a_leader_steps_down_before_its_lease_can_pass_to_another() -> None:
    assert TIMING.renew_deadline < TIMING.duration
    assert TIMING.takeover_bound == 19.0


class InMemoryLease:
    """A lease store whose writes are guarded by a version, as the API server's are."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.broken = False
        self.hanging = False
        #: Seconds each call takes: a slow API server.
        self.delay = 0.0
        self.calls: list[str] = []
        self._versions = 0

    def _stored(self, record: LeaseRecord) -> LeaseRecord:
        self._versions += 1
        self.record = replace(record, version=str(self._versions))
        return self.record

    async def _answer(self, call: str) -> None:
        """Waits as the API server would, and fails as it would."""
        self.calls.append(call)
        await asyncio.sleep(self.delay)
        if self.hanging:  # a partitioned network: no answer, no error
            await asyncio.Event().wait()
        if self.broken:
            raise TransientError("API server unreachable")

    async def read(self) -> LeaseRecord | None:
        await self._answer("read")
        return self.record

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        await self._answer("create")
        if self.record is not None:
            raise ConflictError("exists")
        return self._stored(record)

    async def replace(self, record: LeaseRecord) -> LeaseRecord:
        await self._answer("replace")
        if self.record is None or record.version != self.record.version:
            raise ConflictError("stale version")
        return self._stored(record)


FAST = Timing(duration=1.0)


class Replica:
    def __init__(self, store: InMemoryLease | None, name: str) -> None:
        self.leadership = Leadership(store, name, FAST, lambda: MOMENT)
        self.history: list[str] = []

    async def elected(self) -> None:
        self.history.append("elected")

    async def deposed(self) -> None:
        self.history.append("deposed")


@contextlib.asynccontextmanager
async def campaigning(*replicas: Replica) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [
        asyncio.create_task(replica.leadership.run(replica.elected, replica.deposed))
        for replica in replicas
    ]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_of_two_replicas_exactly_one_leads() -> None:
    store = InMemoryLease()
    first, second = Replica(store, "a"), Replica(store, "b")
    async with campaigning(first, second):
        await asyncio.sleep(FAST.duration * 2)
        leading = [r.leadership.leading.is_set() for r in (first, second)]
    assert sorted(leading) == [False, True]
    assert sorted(first.history + second.history) == ["elected"]


@contextlib.asynccontextmanager
async def leader_stopped_beside(first: Replica, second: Replica) -> AsyncIterator[None]:
    """``first`` leads, ``second`` campaigns; then ``first`` stops without a word."""
    async with campaigning(first) as (first_task,):
        await first.leadership.leading.wait()
        async with campaigning(second):
            first_task.cancel()
            yield


async def test_a_killed_leaders_lease_passes_to_the_other_replica_within_the_bound() -> None:
    store = InMemoryLease()
    first, second = Replica(store, "a"), Replica(store, "b")
    async with leader_stopped_beside(first, second):
        # Killed: no release, the lease only goes stale.
        killed_at = asyncio.get_running_loop().time()
        await asyncio.wait_for(second.leadership.leading.wait(), FAST.takeover_bound + 0.3)
        took = asyncio.get_running_loop().time() - killed_at
    assert FAST.duration - FAST.retry_period <= took <= FAST.takeover_bound + 0.3
    assert store.record is not None
    assert (store.record.holder, store.record.transitions) == ("b", 1)


async def test_a_released_lease_passes_to_the_other_replica_at_once() -> None:
    store = InMemoryLease()
    first, second = Replica(store, "a"), Replica(store, "b")
    async with leader_stopped_beside(first, second):
        await first.leadership.release()
        await asyncio.wait_for(second.leadership.leading.wait(), FAST.retry_period * 3)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("broken", id="its-calls-fail"),
        pytest.param("hanging", id="its-calls-hang"),
    ],
)
async def test_a_leader_that_cannot_renew_steps_down_before_its_lease_runs_out(
    fault: str,
) -> None:
    store = InMemoryLease()
    leader = Replica(store, "a")
    async with campaigning(leader):
        await leader.leadership.leading.wait()
        setattr(store, fault, True)
        cut_at = asyncio.get_running_loop().time()
        await asyncio.wait_for(_until_not(leader.leadership.leading), FAST.duration * 2)
        stepped_down_after = asyncio.get_running_loop().time() - cut_at
    assert leader.history == ["elected", "deposed"]
    assert stepped_down_after < FAST.duration


async def test_a_leader_keeps_its_lease_while_renewals_are_slow_but_land_before_its_deadline() -> (
    None
):
    store = InMemoryLease()
    leader, follower = Replica(store, "a"), Replica(store, "b")
    async with campaigning(leader):
        await leader.leadership.leading.wait()
        # Each round takes three times its period, still well within the renew deadline.
        store.delay = FAST.retry_period * 1.5
        async with campaigning(follower):
            await asyncio.sleep(FAST.duration * 3)
    assert leader.history == ["elected"]
    assert follower.history == []
    assert store.record is not None
    assert (store.record.holder, store.record.transitions) == ("a", 0)


async def test_a_leader_renews_with_one_write_a_round_and_reads_only_after_a_conflict() -> None:
    store = InMemoryLease()
    leader = Replica(store, "a")
    async with campaigning(leader):
        await leader.leadership.leading.wait()
        await asyncio.sleep(FAST.retry_period * 4.5)
        assert store.calls[:2] == ["read", "create"]
        assert set(store.calls[2:]) == {"replace"}
        assert store.record is not None
        store.record = replace(store.record, version="written-by-someone-else")
        store.calls.clear()
        await asyncio.sleep(FAST.retry_period * 2.5)
    assert store.calls[:3] == ["replace", "read", "replace"]
    assert leader.history == ["elected"]


async def test_a_leader_that_finds_another_holder_steps_down_at_once() -> None:
    store = InMemoryLease()
    leader = Replica(store, "a")
    async with campaigning(leader):
        await leader.leadership.leading.wait()
        assert store.record is not None
        store.record = replace(store.record, holder="b", version="taken")
        await asyncio.wait_for(_until_not(leader.leadership.leading), FAST.retry_period * 3)
    assert leader.history == ["elected", "deposed"]


async def _until_not(event: asyncio.Event) -> None:
    while event.is_set():  # noqa: ASYNC110 (leadership signals only its start)
        await asyncio.sleep(0.01)


async def test_a_replica_without_a_lease_runs_alone_and_leads_at_once() -> None:
    alone = Replica(None, "a")
    assert alone.leadership.leading.is_set()
    async with campaigning(alone):
        await asyncio.sleep(0.05)
    assert alone.history == ["elected"]
