"""How far a run has come, told at most every few seconds.

A run of 10,000 items lasts minutes; users watch ``status.activeRun`` to see it move, but
a status write per item would put 10,000 writes on the API server's hot path.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

#: Shortest time between two progress reports of one run.
REPORT_INTERVAL_SECONDS = 5.0

#: Tells the world that ``done`` of ``total`` items (of every kind) are through.
ProgressSink = Callable[[int, int], Awaitable[None]]


@dataclass
class Progress:
    total: int
    sink: ProgressSink
    #: Seconds of any monotonic clock.
    clock: Callable[[], float]
    interval: float = REPORT_INTERVAL_SECONDS
    done: int = 0
    _reported_at: float = field(default=-math.inf, repr=False)

    async def item_done(self) -> None:
        """One more item is through; reports when the interval has passed. The last one
        is not reported: the run's outcome says it."""
        self.done += 1
        moment = self.clock()
        if self.done < self.total and moment - self._reported_at >= self.interval:
            self._reported_at = moment
            await self.sink(self.done, self.total)
