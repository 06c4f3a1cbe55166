"""The process-wide Key Vault call slots, shared fairly between namespaces.

``KVBACKUP_MAX_VAULT_CALLS`` (``total``) bounds the Key Vault calls in flight across the
whole process. A call in flight holds its slot until the vault answers, so a tenant whose
vault is slow, or hangs, would otherwise gather every slot and stall every other tenant.
The rule:

- A namespace is *active* while it holds a slot or waits for one.
- A namespace is granted a slot only while it holds fewer than its share,
  ``max(1, total // max(2, active))``, counting itself among the active.
- A freed slot goes to the waiting namespace that holds the fewest (the earliest waiter
  among equals); within one namespace, callers are served in order.

What it guarantees: a slot is never granted beyond the share, and holdings only grow by
grants, so no namespace ever holds more than half the slots (``total // 2``, for a total
of 2 or more), even when alone: whatever one namespace's calls do, at least half stay for
the others, who need no call of it to end. While ``k`` namespaces call, none is granted
more than ``total // k``. A namespace alone uses half of the total; with the per-vault
pace (ratelimit.py) as the usual bound on a vault's calls, that costs little.

The command line has no namespace: its calls share as one (``COMMAND_LINE``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

#: What the command line's calls share as.
COMMAND_LINE = ""


class FairSlots:
    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self._held: dict[str, int] = {}
        #: Per namespace, its waiters in order: (arrival number, future set when granted).
        self._waiting: dict[str, collections.deque[tuple[int, asyncio.Future[None]]]] = {}
        self._in_use = 0
        self._arrivals = itertools.count()

    def share(self, namespace: str) -> int:
        """The most slots ``namespace`` may be granted now, itself counted as active."""
        active = len(self._held.keys() | self._waiting.keys() | {namespace})
        return max(1, self.total // max(2, active))

    def held(self, namespace: str) -> int:
        return self._held.get(namespace, 0)

    @asynccontextmanager
    async def slot(self, namespace: str) -> AsyncIterator[None]:
        """Holds one of the slots, granted by the rule above, while the block runs."""
        await self._acquire(namespace)
        try:
            yield
        finally:
            self._release(namespace)

    def _may_take(self, namespace: str) -> bool:
        return self._in_use < self.total and self.held(namespace) < self.share(namespace)

    def _take(self, namespace: str) -> None:
        self._held[namespace] = self.held(namespace) + 1
        self._in_use += 1

    async def _acquire(self, namespace: str) -> None:
        # Waiters of other namespaces may be at their share; this one need not wait for them.
        if namespace not in self._waiting and self._may_take(namespace):
            self._take(namespace)
            return
        granted = asyncio.get_running_loop().create_future()
        entry = (next(self._arrivals), granted)
        self._waiting.setdefault(namespace, collections.deque()).append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.cancelled():
                self._drop_waiter(namespace, entry)
                self._grant()  # one namespace fewer may raise the others' share
            else:
                self._release(namespace)  # granted just as the caller was cancelled
            raise

    def _drop_waiter(self, namespace: str, entry: tuple[int, asyncio.Future[None]]) -> None:
        queue = self._waiting.get(namespace)
        if queue is None or entry not in queue:
            return  # _grant dropped it already, as a cancelled waiter
        queue.remove(entry)
        if not queue:
            del self._waiting[namespace]

    def _release(self, namespace: str) -> None:
        left = self.held(namespace) - 1
        if left:
            self._held[namespace] = left
        else:
            del self._held[namespace]
        self._in_use -= 1
        self._grant()

    def _grant(self) -> None:
        """Hands free slots to waiters, fewest held first, while any may take one."""
        while self._in_use < self.total:
            eligible = [
                (self.held(namespace), queue[0][0], namespace)
                for namespace, queue in self._waiting.items()
                if self.held(namespace) < self.share(namespace)
            ]
            if not eligible:
                return
            _, _, namespace = min(eligible)
            entry = self._waiting[namespace][0]
            self._drop_waiter(namespace, entry)
            # A waiter cancelled but not yet resumed leaves its place to the next one.
            if not entry[1].cancelled():
                self._take(namespace)
                entry[1].set_result(None)
