"""Retry policy: for every failure, whether it is tried again, after how long, and how
many times. ``kvbackup.errors`` says which failures are temporary; this module decides
what follows, for each kind of thing the operator retries:

- A run (a KeyBackup's backup, a KeyRestore's restore of one generation): ``judge`` gives
  the failure its ``Verdict``, a backoff doubling from ``KVBACKUP_RETRY_BASE_SECONDS`` up
  to ``KVBACKUP_RETRY_MAX_SECONDS``, never sooner than the service's Retry-After, for as
  long as the object lives. Each object's loop asks its ``Retries`` whether an attempt is
  due and how long to sleep; a new request (a spec change, a due slot) cuts a backoff short.
- The deletion of a `Delete`-policy KeyBackup's snapshots: the same backoff, at most
  ``DELETE_ATTEMPTS`` attempts (``judge_deletion``), so that a finalizer never blocks the
  deletion of the object and of its namespace for ever.
- One Key Vault call throttled (429) or answered 5xx: retried on its own
  (``retry_per_call``), so that one throttled key never aborts or restarts a run.
- One of kopf's Kubernetes API requests: ``API_RETRY_BACKOFFS``.

A vault's pace (adapters/ratelimit.py) is no retry: it spaces calls before they are made,
pausing for a Retry-After bounded here (``bounded_retry_after``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from kvbackup.config import Settings
from kvbackup.errors import KvBackupError, ThrottledError, TransientError, UnexpectedError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
RequestT = TypeVar("RequestT", bound=Hashable)

# Runs and deletions.

#: Attempts at deleting a `Delete`-policy KeyBackup's snapshots before giving up on them;
#: with the retry delays of the settings' defaults (10 s doubling to 600 s) about 40 min.
DELETE_ATTEMPTS = 10


def retry_delay(settings: Settings, attempt: int) -> float:
    """Exponential backoff for the ``attempt``-th consecutive temporary failure (from 0)."""
    return float(
        min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** min(attempt, 30))
    )


@dataclass(frozen=True)
class Verdict:
    """A failure's fate: tried again in ``retry_in`` seconds, or final (None)."""

    error: KvBackupError
    retry_in: float | None

    @property
    def final(self) -> bool:
        return self.retry_in is None

    def describe(self) -> str:
        """The error's message, saying when the next try comes."""
        if self.retry_in is None:
            return self.error.message
        return f"{self.error.message} (retrying in {self.retry_in:.0f}s)"


#: A failure's verdict, for the attempt being made.
Judge = Callable[[BaseException], Verdict]


def judge(
    failure: BaseException, attempt: int, settings: Settings, *, attempts: int | None = None
) -> Verdict:
    """``attempt`` counts the consecutive failures before this one, from 0.

    Temporary errors are retried with exponential backoff, never sooner than a
    Retry-After the service asked for; permanent ones are final, and so is the
    ``attempts``-th failure when a bound is given. Anything outside the taxonomy is a
    bug or an exhausted resource: retried, since the object may never change again.
    """
    error = failure if isinstance(failure, KvBackupError) else UnexpectedError.wrapping(failure)
    if not error.temporary or (attempts is not None and attempt + 1 >= attempts):
        return Verdict(error, None)
    delay = retry_delay(settings, attempt)
    if isinstance(error, ThrottledError) and error.retry_after:
        delay = max(delay, error.retry_after)
    return Verdict(error, delay)


def judge_deletion(failure: BaseException, attempt: int, settings: Settings) -> Verdict:
    """A failed deletion's fate: any failure counts, an invalid spec or a bug included,
    and the ``DELETE_ATTEMPTS``-th is final."""
    return judge(failure, attempt, settings, attempts=DELETE_ATTEMPTS)


#: Shortest sleep between wake-ups. Until the loop's own status write arrives, a
#: schedule may still look due; waking sooner would only see the same thing again.
MIN_WAIT_SECONDS = 1.0


@dataclass
class RunBook(Generic[RequestT]):
    """What an object's loop remembers between wake-ups: which request it finished, and
    which one it is backing off from after a temporary failure. A KeyBackup's requests
    are ``RunRequest``s; a KeyRestore's are its spec generations. Pure bookkeeping;
    times are seconds of any monotonic clock."""

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


#: One attempt at a request, given the judge of its failures: the delay before the next
#: attempt, or None when the request is done.
Attempt = Callable[[RequestT, Judge], Awaitable[float | None]]


class Retries(Generic[RequestT]):
    """What one object's loop asks before each attempt and between wake-ups; its run book
    on the event loop's clock. Built inside that loop."""

    def __init__(self, settings: Settings, crash_log: str) -> None:
        self._settings = settings
        #: Logged, with the traceback, when an attempt raised instead of judging its failure.
        self._crash_log = crash_log
        self._book: RunBook[RequestT] = RunBook()
        self._monotonic = asyncio.get_running_loop().time

    async def attempt_if_due(self, request: RequestT | None, attempt: Attempt[RequestT]) -> bool:
        """Makes ``attempt`` at ``request`` if one is due (a new request, or a backoff
        over), and records how it ended; whether one was made."""
        number = self._book.attempt_due(request, self._monotonic())
        if request is None or number is None:
            return False
        judged: Judge = partial(judge, attempt=number, settings=self._settings)
        try:
            retry_in = await attempt(request, judged)
        except Exception as failure:  # e.g. the status itself could not be written
            # The loop must outlive any one failure: the object may never change again.
            logger.exception(self._crash_log)
            retry_in = judged(failure).retry_in
        self._book.record(request, retry_in, self._monotonic())
        return True

    def backing_off_from(self, request: RequestT | None) -> bool:
        return self._book.backing_off_from(request)

    def wait_seconds(self, request: RequestT | None, until_next_slot: float | None) -> float | None:
        return self._book.wait_seconds(request, until_next_slot, self._monotonic())


# One Key Vault call.
#
# The Key Vault clients are built without the SDK's own retries on bad statuses, so every
# 429 reaches the vault's pace (which slows down or pauses the whole vault) and is
# retried here, per call: one throttled key, or one throttled read, never aborts or
# restarts a run of thousands. A failure to connect at all is not retried per call: the
# SDK's connection retries have already happened, and the run backs off as a whole.
#
# A Retry-After is the remote side's word, so it is bounded like any other: at most
# ``LONGEST_RETRY_AFTER_SECONDS`` pauses a vault, and a value that is not a finite,
# non-negative number of seconds (nan, inf, -1) counts as no Retry-After at all.

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


# One of kopf's Kubernetes API requests.

#: kopf retries a failed API request with these delays, then gives up, and a watch that
#: gives up stops the operator. kopf's own (54 s in all) would end it in an API server
#: outage of a minute; these ride out about ten: 1, 1, 2, 3, 5, 8, 13, 21 s, then 30 s.
API_RETRY_BACKOFFS = (1, 1, 2, 3, 5, 8, 13, 21, *(30,) * 18)
