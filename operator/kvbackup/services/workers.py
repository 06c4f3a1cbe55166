"""Running one coroutine per item, a bounded number at a time, with per-item failures kept
per item."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

from kvbackup.api.kinds import ItemRef
from kvbackup.config import DEFAULT_KEYS_PER_RUN
from kvbackup.errors import AccessDeniedError, ItemAccessDeniedError, KvBackupError
from kvbackup.services.outcomes import ItemOutcome, ItemResult

_Item = TypeVar("_Item")

#: Keys in progress at once in one run, unless the caller says otherwise.
DEFAULT_CONCURRENCY = DEFAULT_KEYS_PER_RUN


async def for_each_item(
    items: Iterable[ItemRef] | AsyncIterable[ItemRef],
    work: Callable[[ItemRef], Awaitable[ItemOutcome]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_done: Callable[[], Awaitable[None]] | None = None,
) -> list[ItemOutcome]:
    """Run ``work`` for every item, at most ``concurrency`` at a time; the outcomes come
    back in the order of ``items``. ``on_done`` is awaited after each item.

    Workers pull the next item as they free up, so no task, coroutine or buffer exists
    for an item before its turn: memory follows the concurrency, not the vault's size.
    ``items`` may be asynchronous, such as a vault's listing: items are then worked on
    while later pages are still being listed.

    An item's permanent error fails that item only. A temporary error (vault unreachable,
    access denied, throttled beyond the per-call retries) aborts the whole run and is
    raised: retrying later is all that helps, and the other items would hit the same wall.
    An item the vault refuses (``ItemAccessDeniedError``) fails alone too, unless every item
    of the run is refused: a vault that serves none of them denies the identity as a
    whole, which is raised as ``AccessDeniedError``, as a vault-wide 403 is.
    """
    outcomes: dict[int, ItemOutcome] = {}
    refused: list[ItemAccessDeniedError] = []

    async def guarded(numbered: tuple[int, ItemRef]) -> None:
        index, item = numbered
        try:
            outcomes[index] = await work(item)
        except KvBackupError as error:
            if error.temporary:
                raise
            if isinstance(error, ItemAccessDeniedError):
                refused.append(error)
            outcomes[index] = ItemOutcome(
                name=item.name,
                result=ItemResult.FAILED,
                reason=error.reason,
                message=error.message,
                kind=item.kind,
            )
        if on_done is not None:
            await on_done()

    await in_turn(_numbered(items), guarded, concurrency)
    if refused and len(refused) == len(outcomes):
        raise AccessDeniedError(
            f"the vault refused every item of the run ({len(refused)}), so it denies this "
            f"identity as a whole; the first refusal: {refused[0].message}"
        )
    return [outcomes[index] for index in range(len(outcomes))]


async def in_turn(
    items: AsyncIterator[_Item], work: Callable[[_Item], Awaitable[None]], concurrency: int
) -> None:
    """``work`` for every item, at most ``concurrency`` at a time. Workers pull the next
    item as they free up, so nothing is read for an item before its turn: what is held at
    once follows the concurrency, not the number of items. The first error is raised."""
    # One worker at a time advances the items: an async generator cannot be re-entered.
    turn = asyncio.Lock()

    async def worker() -> None:
        while True:
            async with turn:  # shared: each item goes to exactly one worker
                item = await anext(items, None)
            if item is None:
                return
            await work(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, concurrency)):
                group.create_task(worker())
    except ExceptionGroup as group:
        # The first failure is the one to report; the others were cancellations' fallout.
        raise group.exceptions[0] from None


async def _numbered(
    items: Iterable[ItemRef] | AsyncIterable[ItemRef],
) -> AsyncIterator[tuple[int, ItemRef]]:
    index = 0
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield index, item
            index += 1
        return
    for item in items:
        yield index, item
        index += 1
