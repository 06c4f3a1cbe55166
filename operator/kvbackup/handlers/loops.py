"""One asyncio task per KeyBackup, started and stopped by watch events.

kopf's own daemons would do this, but they put a finalizer on every object, so deleting
a KeyBackup (or its namespace) would hang whenever the operator is not running. A
KeyBackup with deletionPolicy Retain needs no finalizer, so it gets none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import kopf

logger = logging.getLogger(__name__)


@dataclass
class Watched:
    """The newest body of one object, and a signal that it changed."""

    body: kopf.Body
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


class Loops:
    def __init__(self) -> None:
        self._tasks: dict[str, tuple[Watched, asyncio.Task[None]]] = {}

    def notice(
        self,
        uid: str,
        body: kopf.Body,
        loop: Callable[[Watched], Coroutine[Any, Any, None]],
    ) -> None:
        """Hand the newest body to the object's loop, starting the loop if it is not running."""
        running = self._tasks.get(uid)
        if running is not None and not running[1].done():
            running[0].body = body
            running[0].wakeup.set()
            return
        watched = Watched(body)
        task = asyncio.create_task(loop(watched), name=f"kvbackup-loop-{uid}")
        task.add_done_callback(_report_crash)
        self._tasks[uid] = (watched, task)

    async def forget(self, uid: str) -> None:
        """Stop the object's loop, and wait until it has ended: the run it was in is
        cancelled, and the writes that run had started have landed."""
        running = self._tasks.pop(uid, None)
        if running is not None:
            running[1].cancel()
            await asyncio.gather(running[1], return_exceptions=True)

    async def close(self) -> None:
        tasks = [task for _, task in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _report_crash(task: asyncio.Task[None]) -> None:
    # A crashed loop is started again by the object's next watch event.
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped: %r", task.get_name(), task.exception())
