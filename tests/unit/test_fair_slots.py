"""The process-wide Key Vault call slots, shared fairly between namespaces: none holds more
than half, none is granted more than its share of the namespaces calling, and a freed
slot goes to the namespace that holds the fewest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from kvbackup.adapters.fairshare import FairSlots


async def settle() -> None:
    """Lets every task that can run, run until it waits."""
    for _ in range(10):
        await asyncio.sleep(0)


@dataclass
class Call:
    namespace: str
    #: Set once the call holds a slot.
    entered: bool = False
    #: The test sets it to end the call.
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Calls:
    """Calls that hold a slot each until the test ends them, one by one."""

    def __init__(self, slots: FairSlots) -> None:
        self.slots = slots
        self._calls: list[tuple[Call, asyncio.Task[None]]] = []

    def start(self, namespace: str, count: int = 1) -> None:
        for _ in range(count):
            call = Call(namespace)
            self._calls.append((call, asyncio.create_task(self._run(call))))

    async def _run(self, call: Call) -> None:
        async with self.slots.slot(call.namespace):
            call.entered = True
            await call.done.wait()

    def entered(self, namespace: str) -> int:
        """How many calls of ``namespace`` got a slot, ended or not."""
        return sum(call.entered for call, _ in self._calls if call.namespace == namespace)

    async def end_one(self, namespace: str) -> None:
        """Ends the earliest call of ``namespace`` that holds a slot."""
        call = next(
            call
            for call, _ in self._calls
            if call.namespace == namespace and call.entered and not call.done.is_set()
        )
        call.done.set()
        await settle()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for _, task in self._calls]


@asynccontextmanager
async def calls_on(total: int) -> AsyncIterator[Calls]:
    calls = Calls(FairSlots(total))
    try:
        yield calls
    finally:
        for task in calls.tasks():
            task.cancel()
        await asyncio.gather(*calls.tasks(), return_exceptions=True)


# --- Shares ----------------------------------------------------------------------------


async def test_a_namespace_alone_is_granted_half_the_slots_and_its_other_calls_wait() -> None:
    async with calls_on(8) as calls:
        calls.start("a", 6)
        await settle()

        assert calls.slots.held("a") == 4
        assert calls.entered("a") == 4


async def test_a_namespace_whose_calls_hang_leaves_the_other_half_to_another() -> None:
    async with calls_on(8) as calls:
        calls.start("hung", 8)  # none of them ever ends
        await settle()
        calls.start("b", 8)
        await settle()

        assert calls.slots.held("hung") == 4
        assert calls.slots.held("b") == 4
        # b's calls go on as its slots free up; hung's stay where they are.
        for _ in range(4):
            await calls.end_one("b")
        assert calls.slots.held("b") == 4
        assert calls.entered("b") == 8
        assert calls.slots.held("hung") == 4


async def test_three_namespaces_calling_are_each_granted_at_most_a_third() -> None:
    async with calls_on(9) as calls:
        for _ in range(9):
            for namespace in "abc":
                calls.start(namespace)
        await settle()

        assert [calls.slots.held(ns) for ns in "abc"] == [3, 3, 3]


async def test_a_freed_slot_goes_to_the_waiting_namespace_that_holds_the_fewest() -> None:
    async with calls_on(9) as calls:
        calls.start("a", 9)
        await settle()
        calls.start("b", 9)
        await settle()
        calls.start("c", 9)
        await settle()
        # a and b took their half-shares before c came; c got the one slot left.
        assert [calls.slots.held(ns) for ns in "abc"] == [4, 4, 1]

        await calls.end_one("a")
        await calls.end_one("b")

        assert [calls.slots.held(ns) for ns in "abc"] == [3, 3, 3]


async def test_the_share_grows_back_when_a_namespace_stops_calling() -> None:
    async with calls_on(8) as calls:
        calls.start("a", 2)
        calls.start("b", 1)
        await settle()
        assert calls.slots.share("c") == 8 // 3

        for _ in range(2):
            await calls.end_one("a")

        assert calls.slots.share("c") == 8 // 2


async def test_with_a_single_slot_a_namespace_alone_still_gets_it() -> None:
    async with calls_on(1) as calls:
        calls.start("a", 2)
        await settle()

        assert calls.entered("a") == 1
        await calls.end_one("a")
        assert calls.entered("a") == 2


# --- Order and cancellation ------------------------------------------------------------


async def test_calls_of_one_namespace_are_served_in_order() -> None:
    slots = FairSlots(2)
    order: list[int] = []
    release = asyncio.Event()

    async def call(number: int) -> None:
        async with slots.slot("a"):
            order.append(number)
            await release.wait()

    tasks = [asyncio.create_task(call(number)) for number in range(4)]
    await settle()
    release.set()
    await asyncio.gather(*tasks)

    assert order == [0, 1, 2, 3]


async def test_a_waiting_call_cancelled_gives_its_turn_to_the_next_and_keeps_no_slot() -> None:
    slots = FairSlots(2)
    holder_done = asyncio.Event()
    entered: list[str] = []

    async def call(label: str, done: asyncio.Event) -> None:
        async with slots.slot("a"):
            entered.append(label)
            await done.wait()

    holder = asyncio.create_task(call("holder", holder_done))
    await settle()
    cancelled = asyncio.create_task(call("cancelled", asyncio.Event()))
    nxt_done = asyncio.Event()
    nxt = asyncio.create_task(call("next", nxt_done))
    await settle()

    cancelled.cancel()
    holder_done.set()
    await settle()

    assert entered == ["holder", "next"]
    assert slots.held("a") == 1
    nxt_done.set()
    await asyncio.gather(holder, nxt)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert slots.held("a") == 0
    assert slots.share("a") == 1  # nobody else counts as calling any more
