"""What an object's loop remembers between wake-ups: which request it finished, and
which one it is backing off from after a temporary failure. A KeyBackup's requests are
``RunRequest``s; a KeyRestore's are its spec generations."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

RequestT = TypeVar("RequestT", bound=Hashable)

#: Shortest sleep between wake-ups. Until the loop's own status write arrives, a
#: schedule may still look due; waking sooner would only see the same thing again.
MIN_WAIT_SECONDS = 1.0


@dataclass
class RunBook(Generic[RequestT]):
    """Pure bookkeeping; times are seconds of any monotonic clock."""

    handled: RequestT | None = None
    backing_off: RequestT | None = None
    retry_at: float = 0.0
    failures: int = 0

    def attempt_due(self, request: RequestT | None, now: float) -> int | None:
        """The attempt number (consecutive failures so far) to start ``request`` with now,
        or None when nothing is to start."""
        if request is None or request == self.handled:
            return None
        if request != self.backing_off:
            return 0  # a new request cuts any backoff short
        return self.failures if now >= self.retry_at else None

    def record(self, request: RequestT, retry_in: float | None, now: float) -> None:
        """The outcome of an attempt: done for good (``retry_in`` None), or retried later."""
        if retry_in is None:
            self.handled, self.backing_off, self.failures = request, None, 0
            return
        failures = self.failures + 1 if request == self.backing_off else 1
        self.backing_off, self.retry_at, self.failures = request, now + retry_in, failures

    def backing_off_from(self, request: RequestT | None) -> bool:
        return request is not None and request == self.backing_off and request != self.handled

    def wait_seconds(
        self, request: RequestT | None, until_next_slot: float | None, now: float
    ) -> float | None:
        """How long to sleep unless woken by a change: until the next slot or the end of a
        backoff, whichever comes first; None to wait for a change alone."""
        wait = until_next_slot
        if self.backing_off_from(request):
            remaining = self.retry_at - now
            wait = remaining if wait is None else min(wait, remaining)
        return None if wait is None else max(wait, MIN_WAIT_SECONDS)
