"""One vault's pace: every call to the vault takes a token first.

Key Vault throttles per vault (about 4,000 operations per 10 s for software keys) and
answers 429 beyond that. The pace is shared by every run in the process, so two
KeyBackups of one vault share its budget. It starts at the configured rate; a 429
without Retry-After halves the rate, and each successful call adds back a small step
(additive increase, multiplicative decrease, as TCP does); a 429 with Retry-After
pauses the whole vault for that long, since every caller would hit the same wall.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

#: Each successful call raises the rate by this share of the configured rate.
INCREASE_SHARE = 0.002
#: The rate never falls below this share of the configured rate.
FLOOR_SHARE = 1 / 64


class VaultPace:
    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.ceiling = rate
        self.rate = rate
        self._floor = rate * FLOOR_SHARE
        self._clock = clock
        self._sleep = sleep
        self._tokens = max(1.0, rate)
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for a token, and for any pause Key Vault asked for to end."""
        async with self._lock:
            while True:
                moment = self._clock()
                if moment < self._paused_until:
                    await self._sleep(self._paused_until - moment)
                    continue
                capacity = max(1.0, self.rate)
                self._tokens = min(capacity, self._tokens + (moment - self._updated) * self.rate)
                self._updated = moment
                # A hair under one token is one: rounding must never leave a caller
                # sleeping for less time than the clock can tell.
                if self._tokens >= 1 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                await self._sleep((1 - self._tokens) / self.rate)

    def throttled(self, retry_after: float | None) -> None:
        if retry_after:
            self._paused_until = max(self._paused_until, self._clock() + retry_after)
        else:
            self.rate = max(self._floor, self.rate / 2)

    def succeeded(self) -> None:
        self.rate = min(self.ceiling, self.rate + self.ceiling * INCREASE_SHARE)
