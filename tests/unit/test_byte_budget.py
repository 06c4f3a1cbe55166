"""The bytes of artifacts in use at once are bounded, however large a manifest says they are."""

from __future__ import annotations

import asyncio
from functools import partial

from kvbackup.services.byte_budget import ByteBudget
from kvbackup.services.ports import OpenedSnapshot
from kvbackup.services.restore import run_restore
from kvbackup.services.snapshot import Artifact
from tests.unit.fakes import InMemoryStore, InMemoryVault, clock, restore_spec, take_snapshot


async def test_holders_wait_until_the_bytes_they_ask_for_are_free() -> None:
    budget = ByteBudget(10)
    held: list[int] = []
    peak = 0

    async def hold(size: int) -> None:
        nonlocal peak
        async with budget.held(size):
            held.append(size)
            peak = max(peak, sum(held))
            await asyncio.sleep(0.01)
            held.remove(size)

    await asyncio.gather(*(hold(4) for _ in range(6)))

    assert peak == 8


async def test_a_holder_larger_than_the_whole_budget_goes_through_alone() -> None:
    budget = ByteBudget(10)
    alone: list[bool] = []
    others = 0

    async def hold(size: int) -> None:
        nonlocal others
        async with budget.held(size):
            if size > 10:
                alone.append(others == 0)
            else:
                others += 1
                await asyncio.sleep(0.01)
                others -= 1

    await asyncio.gather(hold(3), hold(30), hold(3))

    assert alone == [True]


async def test_a_cancelled_holder_gives_its_bytes_back() -> None:
    budget = ByteBudget(10)
    entered = asyncio.Event()

    async def stuck() -> None:
        async with budget.held(10):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await entered.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    async with asyncio.timeout(1), budget.held(10):
        pass


async def test_a_restore_holds_no_more_artifact_bytes_than_its_snapshots_budget() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, *((f"key-{i}", ("v1",)) for i in range(20)))
    in_use = 0
    peak = 0
    ref = manifest.keybackup
    read = partial(store.read_artifact, ref.namespace, ref.name, manifest.snapshot_id)
    size = manifest.artifacts[0].size

    async def slow_read(artifact: Artifact) -> bytes:
        nonlocal in_use, peak
        in_use += size
        peak = max(peak, in_use)
        await asyncio.sleep(0.01)
        data = await read(artifact)
        in_use -= size
        return data

    snapshot = OpenedSnapshot(manifest, slow_read, ByteBudget(3 * size))

    report = await run_restore(restore_spec(), snapshot, target, clock=clock)

    assert len(report.outcomes) == 20
    assert peak == 3 * size
