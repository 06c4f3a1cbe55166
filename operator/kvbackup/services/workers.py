"""Running one coroutine per key concurrently, with per-key failures kept per key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from kvbackup.errors import KvBackupError
from kvbackup.services.outcomes import KeyOutcome, KeyResult


async def for_each_key(
    names: Iterable[str], work: Callable[[str], Awaitable[KeyOutcome]]
) -> list[KeyOutcome]:
    """Run ``work`` for every key; a key's permanent error fails that key only.

    A temporary error (vault unreachable, access denied, throttled beyond the SDK's
    retries) aborts the whole run and is raised: retrying later is all that helps, and
    the other keys would hit the same wall. Concurrency is bounded by the adapters.
    """

    async def guarded(name: str) -> KeyOutcome:
        try:
            return await work(name)
        except KvBackupError as error:
            if error.temporary:
                raise
            return KeyOutcome(
                name=name, result=KeyResult.FAILED, reason=error.reason, message=error.message
            )

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(guarded(name)) for name in names]
    except ExceptionGroup as group:
        # The first failure is the one to report; the others were cancellations' fallout.
        raise group.exceptions[0] from None
    return [task.result() for task in tasks]
