"""Backup schedules: standard cron expressions, or ``@every <duration>`` intervals."""

from __future__ import annotations

import datetime
import functools
import itertools
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from kvbackup.errors import InvalidSpecError

_DURATION = re.compile(r"^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")
#: The longest duration anywhere (a schedule's interval, a retention's maxAge): 100 years.
#: Longer means nothing for backups, and datetime arithmetic with it would overflow past
#: the year 9999 (an OverflowError, outside the error taxonomy, would end the object's
#: loop instead of failing it with a clear status).
MAX_DURATION = datetime.timedelta(days=36_525)
#: A number of more digits than this exceeds MAX_DURATION in any unit; it is refused before
#: int() reads it, which is slow, or refused, for thousands of digits.
_MAX_DURATION_DIGITS = 10


def parse_time_zone(name: str, path: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSpecError(f"{path} is not a known IANA time zone: {name!r}") from None


def parse_duration(text: str, path: str) -> datetime.timedelta:
    """``30d``, ``12h``, ``1d12h``, ``90m``, ``45s``: what people write in manifests; from
    one second to ``MAX_DURATION``."""
    written = text.strip(" ")
    match = _DURATION.fullmatch(written)
    if not written or match is None:
        raise InvalidSpecError(f"{path} must be a duration such as 30d, 12h or 1h30m, not {text!r}")
    parts = [part or "0" for part in match.groups()]
    total = None
    if all(len(part) <= _MAX_DURATION_DIGITS for part in parts):
        days, hours, minutes, seconds = (int(part) for part in parts)
        total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total == 0:
        raise InvalidSpecError(f"{path} must be longer than zero, not {text!r}")
    if total is None or total > MAX_DURATION.total_seconds():
        raise InvalidSpecError(
            f"{path} must be at most {format_duration(MAX_DURATION)} (100 years), not {text!r}"
        )
    return datetime.timedelta(seconds=total)


def format_duration(value: datetime.timedelta) -> str:
    """``value`` as ``parse_duration`` reads it (``1d12h``, ``5m``), to whole seconds."""
    seconds = int(value.total_seconds())
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    units = zip((days, hours, minutes, seconds), "dhms", strict=True)
    return "".join(f"{amount}{unit}" for amount, unit in units if amount) or "0s"


_STEPS_PAST_A_CLOCK_CHANGE = 4
_MINUTES_A_DAY = 24 * 60


@functools.lru_cache(maxsize=1024)
def _shortest_cron_gap(expression: str) -> datetime.timedelta:
    """The shortest time between two slots of a cron expression on the wall clock.

    Every day it fires, it fires at the same minutes of the same hours: the gaps are those
    between them, and the one across midnight, counted as if the next day fired too (a
    schedule of some days only may have that gap longer, never shorter).
    """
    minute_field, hour_field = croniter(expression).expanded[:2]
    minutes = range(60) if minute_field == ["*"] else [int(m) for m in minute_field]
    hours = range(24) if hour_field == ["*"] else [int(h) for h in hour_field]
    times = sorted(hour * 60 + minute for hour in hours for minute in minutes)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    gaps.append(_MINUTES_A_DAY - times[-1] + times[0])
    return datetime.timedelta(minutes=min(gaps))


def _repeats_a_wall_clock_time(local: datetime.datetime) -> bool:
    """The second pass of an hour the clocks went back through."""
    return local.fold == 1 and local.utcoffset() != local.replace(fold=0).utcoffset()


@dataclass(frozen=True)
class Schedule:
    """When scheduled runs are due; missed slots collapse into one run."""

    expression: str
    zone: ZoneInfo
    interval: datetime.timedelta | None = None

    @classmethod
    def parse(
        cls,
        expression: str,
        zone: ZoneInfo,
        path: str,
        *,
        min_interval: datetime.timedelta = datetime.timedelta(0),
    ) -> Schedule:
        """The schedule ``expression`` says; refused when two of its slots may come closer
        than ``min_interval`` (the admin's KVBACKUP_MIN_SCHEDULE_INTERVAL)."""
        schedule = cls._parse(expression, zone, path)
        if schedule.shortest_gap < min_interval:
            raise InvalidSpecError(
                f"{path} {expression!r} runs as often as every "
                f"{format_duration(schedule.shortest_gap)}; the shortest interval this "
                f"cluster allows is {format_duration(min_interval)} "
                "(KVBACKUP_MIN_SCHEDULE_INTERVAL, set by its admin)"
            )
        return schedule

    @classmethod
    def _parse(cls, expression: str, zone: ZoneInfo, path: str) -> Schedule:
        # croniter splits on any whitespace: "0 2 * * *\n" would pass for "0 2 * * *".
        if not (expression.isascii() and expression.isprintable()):
            raise InvalidSpecError(f"{path} must be printable ASCII, not {expression!r}")
        if expression.startswith("@every "):
            interval = parse_duration(expression.removeprefix("@every "), path)
            return cls(expression, zone, interval)
        schedule = cls(expression, zone)
        try:
            valid = croniter.is_valid(expression) and len(expression.split()) in (1, 5)
            # Some valid-looking expressions never fire (e.g. 31 February).
            valid = valid and bool(schedule.next_slot(datetime.datetime.now(datetime.UTC)))
        except (ValueError, KeyError, CroniterError):
            valid = False
        if not valid:
            raise InvalidSpecError(
                f"{path} must be a 5-field cron expression that fires (e.g. '0 2 * * *'), a "
                f"macro such as @daily, or '@every <duration>', not {expression!r}"
            )
        return schedule

    @property
    def shortest_gap(self) -> datetime.timedelta:
        """The shortest time between two of its slots (on the wall clock, for cron)."""
        if self.interval is not None:
            return self.interval
        return _shortest_cron_gap(self.expression)

    def latest_slot(self, anchor: datetime.datetime, now: datetime.datetime) -> datetime.datetime:
        """The newest slot at or before ``now``; ``anchor`` is where interval slots start."""
        if self.interval is not None:
            periods = (now - anchor) // self.interval
            return anchor + max(periods, 0) * self.interval
        # croniter reads wall-clock time and may land an hour off while the clocks go back;
        # next_slot is exact, so step forward from a slot known to be no later than now.
        local_now = now.astimezone(self.zone) + datetime.timedelta(microseconds=1)
        slot = self._previous(local_now)
        if slot > now:
            slot = self._previous(local_now - datetime.timedelta(hours=2))
        if not self._fires_at(slot):
            slot = self._previous(slot.astimezone(self.zone) - datetime.timedelta(hours=1))
        while (following := self.next_slot(slot)) <= now:
            slot = following
        return slot

    def _previous(self, local: datetime.datetime) -> datetime.datetime:
        previous: datetime.datetime = croniter(self.expression, local).get_prev(datetime.datetime)
        return previous.astimezone(datetime.UTC)

    def _fires_at(self, slot: datetime.datetime) -> bool:
        """As cron does, a job at set hours runs once in the hour the clocks go back, and a
        job of every hour runs in both passes of it."""
        repeated = _repeats_a_wall_clock_time(slot.astimezone(self.zone))
        return not repeated or croniter(self.expression).expressions[1] == "*"

    def next_slot(self, after: datetime.datetime) -> datetime.datetime:
        """The first slot strictly after ``after``."""
        if self.interval is not None:
            return after + self.interval
        slots = croniter(self.expression, after.astimezone(self.zone))
        # Started inside the hour the clocks go back, croniter may first answer ``after``
        # itself; a few steps always pass it, as a schedule that fires at all fires yearly.
        for _ in range(_STEPS_PAST_A_CLOCK_CHANGE):
            following: datetime.datetime = slots.get_next(datetime.datetime)
            slot = following.astimezone(datetime.UTC)
            if slot > after and self._fires_at(slot):
                return slot
        raise InvalidSpecError(f"schedule {self.expression!r} has no slot after {after}")
