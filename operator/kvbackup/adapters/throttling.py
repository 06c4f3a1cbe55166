"""Retrying one Key Vault call that was throttled (429) or answered 5xx.

The Key Vault clients are built without the SDK's own retries on bad statuses, so every
429 reaches the vault's pace (which slows down or pauses the whole vault) and is
retried here, per call: one throttled key, or one throttled read, never aborts or
restarts a run of thousands. A failure to connect at all is not retried here: the
SDK's connection retries have already happened, and the run backs off as a whole.

A Retry-After is the remote side's word, so it is bounded like any other: at most
``LONGEST_RETRY_AFTER_SECONDS`` pauses a vault, and a value that is not a finite,
non-negative number of seconds (nan, inf, -1) counts as no Retry-After at all.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kvbackup.errors import KvBackupError, ThrottledError, TransientError

_T = TypeVar("_T")

ATTEMPTS = 6
FIRST_DELAY_SECONDS = 1.0
LONGEST_DELAY_SECONDS = 30.0
#: The longest pause a Retry-After can impose on a vault (and on the run's next try):
#: Key Vault asks for seconds, never minutes, and a hostile or broken answer must not
#: stop a vault, or a sleep, for ever.
LONGEST_RETRY_AFTER_SECONDS = 60.0


def bounded_retry_after(seconds: float | None) -> float | None:
    """``seconds`` clamped to ``LONGEST_RETRY_AFTER_SECONDS``; None for anything that is
    not a finite number of seconds from now (absent, nan, infinite or negative)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, LONGEST_RETRY_AFTER_SECONDS)


def retried_per_call(error: KvBackupError) -> bool:
    """429s and answers of an overloaded service (5xx, 408); not unreachable vaults."""
    return isinstance(error, ThrottledError) or (
        isinstance(error, TransientError) and error.reason == TransientError.reason
    )


def throttle_delay(error: KvBackupError, attempt: int) -> float:
    """Retry-After when the service gave a usable one, else exponential from one second;
    never longer than ``LONGEST_DELAY_SECONDS``."""
    if isinstance(error, ThrottledError):
        retry_after = bounded_retry_after(error.retry_after)
        if retry_after is not None:
            return min(retry_after, LONGEST_DELAY_SECONDS)
    return float(min(FIRST_DELAY_SECONDS * 2**attempt, LONGEST_DELAY_SECONDS))


async def retry_per_call(
    call: Callable[[], Awaitable[_T]],
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> _T:
    for attempt in range(attempts - 1):
        try:
            return await call()
        except KvBackupError as error:
            if not retried_per_call(error):
                raise
            await sleep(throttle_delay(error, attempt))
    return await call()
