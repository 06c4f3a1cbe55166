"""One vault's pace: every call to the vault takes a token first.

Key Vault throttles per vault (about 4,000 operations per 10 s for software keys) and
answers 429 beyond that. The pace is shared by every run in the process, so two
KeyBackups of one vault share its budget. It starts at the configured rate; a 429
without Retry-After halves the rate, and each successful call adds back a small step
(additive increase, multiplicative decrease, as TCP does); a 429 with Retry-After
pauses the whole vault for that long, since every caller would hit the same wall, but
never longer than the retry policy's ``LONGEST_RETRY_AFTER_SECONDS``, and a Retry-After
that is no finite number of seconds counts as none. The pace is no retry: a call it
spaces out is retried, or not, by ``kvbackup.services.retry_policy``.

A caller takes the vault's token before any process-wide slot (keyvault.py), so callers
waiting here, for a paused or slowed vault, hold nothing that other vaults need.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from kvbackup.services.retry_policy import bounded_retry_after

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
        #: When a caller last asked for a token (or was answered); see ``idle_since``.
        self._last_used = self._updated

    async def acquire(self) -> None:
        """Wait for a token, and for any pause Key Vault asked for to end."""
        self._last_used = self._clock()
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
        self._last_used = moment = self._clock()
        pause = bounded_retry_after(retry_after)
        if pause:
            self._paused_until = max(self._paused_until, moment + pause)
        else:
            self.rate = max(self._floor, self.rate / 2)

    def succeeded(self) -> None:
        self._last_used = self._clock()
        self.rate = min(self.ceiling, self.rate + self.ceiling * INCREASE_SHARE)

    def idle_since(self, moment: float) -> bool:
        """Whether nobody has used the pace since ``moment``, nobody waits for a token and
        no pause is still running: forgetting it then loses nothing a caller relies on."""
        return (
            self._last_used < moment
            and not self._lock.locked()
            and self._paused_until <= self._clock()
        )
