"""Running one coroutine per key, a bounded number at a time, with per-key failures kept
per key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable

from kvbackup.config import DEFAULT_KEYS_PER_RUN
from kvbackup.errors import AccessDeniedError, KeyAccessDeniedError, KvBackupError
from kvbackup.services.outcomes import KeyOutcome, KeyResult

#: Keys in progress at once in one run, unless the caller says otherwise.
DEFAULT_CONCURRENCY = DEFAULT_KEYS_PER_RUN


async def for_each_key(
    names: Iterable[str] | AsyncIterable[str],
    work: Callable[[str], Awaitable[KeyOutcome]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_done: Callable[[], Awaitable[None]] | None = None,
) -> list[KeyOutcome]:
    """Run ``work`` for every key, at most ``concurrency`` keys at a time; the outcomes
    come back in the order of ``names``. ``on_done`` is awaited after each key.

    Workers pull the next name as they free up, so no task, coroutine or buffer exists
    for a key before its turn: memory follows the concurrency, not the vault's size.
    ``names`` may be asynchronous, such as a vault's listing: keys are then worked on
    while later pages are still being listed.

    A key's permanent error fails that key only. A temporary error (vault unreachable,
    access denied, throttled beyond the per-call retries) aborts the whole run and is
    raised: retrying later is all that helps, and the other keys would hit the same wall.
    A key the vault refuses (``KeyAccessDeniedError``) fails alone too, unless every key
    of the run is refused: a vault that serves none of them denies the identity as a
    whole, which is raised as ``AccessDeniedError``, as a vault-wide 403 is.
    """
    pending = _numbered(names)
    # One worker at a time advances the names: an async generator cannot be re-entered.
    turn = asyncio.Lock()
    outcomes: dict[int, KeyOutcome] = {}
    refused: list[KeyAccessDeniedError] = []

    async def guarded(name: str) -> KeyOutcome:
        try:
            return await work(name)
        except KvBackupError as error:
            if error.temporary:
                raise
            if isinstance(error, KeyAccessDeniedError):
                refused.append(error)
            return KeyOutcome(
                name=name, result=KeyResult.FAILED, reason=error.reason, message=error.message
            )

    async def worker() -> None:
        while True:
            async with turn:  # shared: each name goes to exactly one worker
                numbered = await anext(pending, None)
            if numbered is None:
                return
            index, name = numbered
            outcomes[index] = await guarded(name)
            if on_done is not None:
                await on_done()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, concurrency)):
                group.create_task(worker())
    except ExceptionGroup as group:
        # The first failure is the one to report; the others were cancellations' fallout.
        raise group.exceptions[0] from None
    if refused and len(refused) == len(outcomes):
        raise AccessDeniedError(
            f"the vault refused every key of the run ({len(refused)}), so it denies this "
            f"identity as a whole; the first refusal: {refused[0].message}"
        )
    return [outcomes[index] for index in range(len(outcomes))]


async def _numbered(names: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[tuple[int, str]]:
    index = 0
    if isinstance(names, AsyncIterable):
        async for name in names:
            yield index, name
            index += 1
        return
    for name in names:
        yield index, name
        index += 1
