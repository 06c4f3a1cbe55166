"""A cancelled run ends only after the writes it started: none may land after the
clean-up of a deleted KeyBackup has listed what to delete."""

from __future__ import annotations

import asyncio

import pytest

from kvbackup.adapters.completion import to_completion
from kvbackup.handlers.loops import Loops, Watched


async def test_a_cancelled_caller_waits_for_the_write_it_started() -> None:
    landed: list[str] = []

    async def write() -> None:
        await asyncio.sleep(0.05)
        landed.append("pack")

    caller = asyncio.create_task(to_completion(write()))
    await asyncio.sleep(0.01)
    caller.cancel()

    with pytest.raises(asyncio.CancelledError):
        await caller
    assert landed == ["pack"]


async def test_forgetting_a_keybackup_returns_once_its_runs_writes_have_landed() -> None:
    landed: list[str] = []
    writing = asyncio.Event()

    async def run(_: Watched) -> None:
        async def write() -> None:
            writing.set()
            await asyncio.sleep(0.05)
            landed.append("pack")

        while True:
            await to_completion(write())

    loops = Loops()
    await loops.lead()  # only a leader runs loops
    loops.notice("uid", None, run)  # type: ignore[arg-type]
    await writing.wait()

    await loops.forget("uid")

    assert landed == ["pack"]
