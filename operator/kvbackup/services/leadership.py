"""Leader election over one shared lease, so that of several replicas only one runs backups
and restores.

The lease says who holds it and for how long a silent holder is still trusted. Times are
never compared across machines: a candidate trusts a holder for a full ``duration`` of its
own monotonic clock after it last saw the lease change, as client-go's leader election
does. A leader that has not renewed for ``renew_deadline`` (shorter than ``duration``)
steps down on its own, so it has stopped its runs before anyone else may take over.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from kvbackup.errors import ConflictError, KvBackupError, NotFoundError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """How long a silent holder is trusted, how long a leader may fail to renew before it
    steps down, and how often it renews (or a candidate tries)."""

    duration: float = 15.0

    @property
    def renew_deadline(self) -> float:
        return self.duration * 2 / 3

    @property
    def retry_period(self) -> float:
        return self.duration / 7.5

    @property
    def takeover_bound(self) -> float:
        """The longest a replica waits to lead after the leader dies without a word: it
        sees the last renewal up to a period late, trusts it for ``duration``, and notices
        the end at its next round."""
        return self.duration + 2 * self.retry_period


class Hold(Enum):
    """What one round of the election found."""

    HELD = "held"  # written by this replica: it leads until the next round
    TAKEN = "taken"  # another replica holds a lease still to be trusted
    UNKNOWN = "unknown"  # not read or not written: the API server, or a race with a peer


@dataclass(frozen=True)
class LeaseRecord:
    """A Lease as the elector reads and writes it; ``version`` guards each write."""

    holder: str | None
    duration_seconds: int
    renew_time: datetime.datetime | None = None
    acquire_time: datetime.datetime | None = None
    transitions: int = 0
    version: str | None = None


class LeaseStore(Protocol):
    async def read(self) -> LeaseRecord | None:
        """The lease, or None when it does not exist."""

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        """Creates the lease; ConflictError when another replica created it first."""

    async def replace(self, record: LeaseRecord) -> LeaseRecord:
        """Writes the lease if ``record.version`` is still current; else ConflictError."""


@dataclass
class Observation:
    """The last lease this replica saw, and when (monotonic seconds) it last changed."""

    record: LeaseRecord | None = None
    changed_at: float = 0.0

    def see(self, record: LeaseRecord | None, now: float) -> None:
        if record != self.record:
            self.record, self.changed_at = record, now


def claim(
    seen: Observation, me: str, timing: Timing, now: float, moment: datetime.datetime
) -> LeaseRecord | None:
    """The lease to write to hold it (renewed or taken over), or None while another
    replica's lease is still to be trusted."""
    current = seen.record
    duration = max(1, round(timing.duration))
    if current is None:
        return LeaseRecord(me, duration, moment, moment)
    if current.holder == me:
        return replace(current, duration_seconds=duration, renew_time=moment)
    if current.holder and now - seen.changed_at < current.duration_seconds:
        return None
    return replace(
        current,
        holder=me,
        duration_seconds=duration,
        renew_time=moment,
        acquire_time=moment,
        transitions=current.transitions + 1,
    )


def released(record: LeaseRecord) -> LeaseRecord:
    """The lease given up by its holder, for another replica to take at once."""
    return replace(record, holder=None, duration_seconds=1)


@dataclass
class Round:
    """The times one round of the election takes its decisions by.

    A holder's lease is trusted from when this replica saw it, after the read returned:
    a slow read then shortens nobody's trust. A renewal counts from before its write was
    sent, as the lease cannot have changed earlier: the leader steps down in time however
    slowly the write was answered.
    """

    clock: Callable[[], float]
    written_at: float = 0.0


class Leadership:
    """Whether this replica leads; ``on_elected``/``on_deposed`` start and stop its work."""

    def __init__(
        self,
        store: LeaseStore | None,
        me: str,
        timing: Timing,
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self._store, self.me, self.timing, self._clock = store, me, timing, clock
        self._seen = Observation()
        self._held: LeaseRecord | None = None
        self.leading = asyncio.Event()
        if store is None:  # runs alone: no lease to share
            self.leading.set()

    async def wait_until_leading(self) -> None:
        await self.leading.wait()

    async def run(
        self,
        on_elected: Callable[[], Awaitable[None]],
        on_deposed: Callable[[], Awaitable[None]],
    ) -> None:
        """Campaigns, leads and renews, steps down, and campaigns again, until cancelled."""
        if self._store is None:
            await on_elected()
            await asyncio.Event().wait()
            return
        monotonic = asyncio.get_running_loop().time
        renewed_at = 0.0
        while True:
            # A slow API server is not a lost lease: a leader waits for its renewal as long
            # as it may still lead, as client-go does, but no longer, so that a call that
            # hangs (a partitioned network) cannot keep it from stepping down in time.
            patience = self.timing.renew_deadline
            if self.leading.is_set():
                patience = max(0.0, renewed_at + patience - monotonic())
            round_ = Round(monotonic)
            try:
                held = await asyncio.wait_for(self._try_hold(round_), patience)
            except TimeoutError:
                logger.warning("%s: lease not read or written in time", self.me)
                held = Hold.UNKNOWN
            if held is Hold.HELD:
                renewed_at = round_.written_at
                if not self.leading.is_set():
                    logger.info("%s leads now", self.me)
                    self.leading.set()
                    await on_elected()
            elif self.leading.is_set() and held is Hold.TAKEN:
                logger.warning("%s lost its lease to another replica: stepping down", self.me)
                await self._step_down(on_deposed)
            elif self.leading.is_set() and monotonic() - renewed_at >= self.timing.renew_deadline:
                logger.warning(
                    "%s could not renew its lease for %.0f s: stepping down",
                    self.me,
                    self.timing.renew_deadline,
                )
                await self._step_down(on_deposed)
            await asyncio.sleep(self.timing.retry_period)

    async def _try_hold(self, round_: Round) -> Hold:
        assert self._store is not None
        try:
            # The leader renews the lease it wrote last without reading it first: one call
            # a round. A conflict means someone else wrote; the next round reads.
            if self._held is None:
                self._seen.see(await self._store.read(), round_.clock())
            now = round_.clock()
            wanted = claim(self._seen, self.me, self.timing, now, self._clock())
            if wanted is None:
                return Hold.TAKEN
            round_.written_at = now
            written = await (
                self._store.create(wanted)
                if self._seen.record is None
                else self._store.replace(wanted)
            )
        except (ConflictError, NotFoundError):
            self._held = None
            return Hold.UNKNOWN  # another replica wrote first; read again at the next round
        except KvBackupError as error:
            logger.warning("%s: lease not read or written: %s", self.me, error)
            return Hold.UNKNOWN
        self._seen.see(written, round_.clock())
        self._held = written
        return Hold.HELD

    async def _step_down(self, on_deposed: Callable[[], Awaitable[None]]) -> None:
        self.leading.clear()
        self._held = None
        await on_deposed()

    async def release(self) -> None:
        """Gives the lease up on a clean stop, so that another replica leads at once."""
        if self._store is None or not self.leading.is_set() or self._held is None:
            return
        self.leading.clear()
        try:
            await self._store.replace(released(self._held))
        except KvBackupError as error:
            logger.warning("%s: lease not released: %s", self.me, error)
