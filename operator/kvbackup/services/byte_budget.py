"""A bound on the bytes read and not yet let go of, shared by the keys of one run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ByteBudget:
    """At most ``total`` bytes held at once; a holder of more than that waits until it is
    alone, so that one oversized read still goes through, by itself."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._held = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def held(self, size: int) -> AsyncIterator[None]:
        share = min(size, self._total)
        async with self._changed:
            await self._changed.wait_for(lambda: self._held + share <= self._total)
            self._held += share
        try:
            yield
        finally:
            self._held -= share
            # Shielded: a cancelled holder must still wake those waiting for its bytes.
            await asyncio.shield(self._wake())

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()
