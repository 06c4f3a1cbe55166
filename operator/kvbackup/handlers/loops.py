"""One asyncio task per object, started and stopped by watch events and by leadership.

kopf's own daemons would do this, but they put a finalizer on every object, so deleting
a KeyBackup (or its namespace) would hang whenever the operator is not running. A
KeyBackup with deletionPolicy Retain needs no finalizer, so it gets none.

Every replica watches every object and keeps its newest body; only the leader runs the
loops. A replica that becomes leader starts a loop for every object it knows, and each
loop picks up where the status says the last leader stopped (``activeRun``). A replica
that stops leading cancels its loops before another replica may take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from kvbackup.services.journal import CarriedJournal

logger = logging.getLogger(__name__)

Loop = Callable[["Watched"], Coroutine[Any, Any, None]]


@dataclass
class Watched:
    """The newest body of one object, and a signal that it changed."""

    body: kopf.Body
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    #: What one loop leaves for the next on this object, kept while leadership moves away
    #: and back: what a run did that its status could not be told.
    carried: CarriedJournal | None = None

    async def changed(self, within: float | None) -> None:
        """Returns once the body changed, or after ``within`` seconds (None: no limit)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), within)


@dataclass
class _Object:
    watched: Watched
    loop: Loop
    #: The watch handler's context, which kopf.event() needs to post Events; a loop
    #: started by an election must run in it too.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


class Loops:
    def __init__(self) -> None:
        self._objects: dict[str, _Object] = {}
        self._leading = False

    async def on_event(self, event_type: str, body: kopf.Body, uid: str, loop: Loop) -> None:
        """One watch event: the object's newest body, or its end."""
        if event_type == "DELETED" or body.meta.get("deletionTimestamp"):
            # Before delete_backups lists what to delete: no write of the run may come after.
            await self.forget(uid)
            return
        # The loop reads this body long after the handler returns: a copy of its own.
        self.notice(uid, kopf.Body(cast(kopf.RawBody, copy.deepcopy(dict(body)))), loop)

    def notice(self, uid: str, body: kopf.Body, loop: Loop) -> None:
        """Hand the newest body to the object's loop, starting the loop if this replica
        leads and the loop is not running."""
        known = self._objects.get(uid)
        if known is None:
            known = self._objects[uid] = _Object(Watched(body), loop)
        else:
            known.watched.body = body
            known.watched.wakeup.set()
        if self._leading and not known.running:
            self._start(uid, known)

    async def forget(self, uid: str) -> None:
        """Stop the object's loop, and wait until it has ended: the run it was in is
        cancelled, and the writes that run had started have landed."""
        known = self._objects.pop(uid, None)
        if known is not None and known.task is not None:
            known.task.cancel()
            await asyncio.gather(known.task, return_exceptions=True)

    async def lead(self) -> None:
        """Runs the loops of every object this replica knows."""
        self._leading = True
        for uid, known in self._objects.items():
            if not known.running:
                self._start(uid, known)

    async def follow(self) -> None:
        """Stops every loop (a run in flight is cancelled) and waits until they have
        stopped; the objects stay known, for when this replica leads again."""
        self._leading = False
        tasks = [known.task for known in self._objects.values() if known.task is not None]
        for known in self._objects.values():
            known.task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.follow()
        self._objects.clear()

    def _start(self, uid: str, known: _Object) -> None:
        known.task = asyncio.create_task(
            known.loop(known.watched), name=f"kvbackup-loop-{uid}", context=known.context
        )
        known.task.add_done_callback(_report_crash)


def _report_crash(task: asyncio.Task[None]) -> None:
    # A crashed loop is started again by the object's next watch event.
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped: %r", task.get_name(), task.exception())
