"""Retrying calls that Key Vault throttled beyond what the SDK retries itself.

The SDK honours Retry-After on 429, but not on a POST (backup, restore, recover) that
carries no Retry-After header; those surface as ThrottledError and are retried here,
so one throttled key does not abort a run of thousands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kvbackup.errors import ThrottledError

_T = TypeVar("_T")

ATTEMPTS = 6
FIRST_DELAY_SECONDS = 1.0
LONGEST_DELAY_SECONDS = 30.0


def throttle_delay(error: ThrottledError, attempt: int) -> float:
    """Retry-After when the service gave one, else exponential from one second."""
    if error.retry_after is not None:
        return min(error.retry_after, LONGEST_DELAY_SECONDS)
    return float(min(FIRST_DELAY_SECONDS * 2**attempt, LONGEST_DELAY_SECONDS))


async def retry_throttled(
    call: Callable[[], Awaitable[_T]],
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> _T:
    for attempt in range(attempts - 1):
        try:
            return await call()
        except ThrottledError as error:
            await sleep(throttle_delay(error, attempt))
    return await call()
