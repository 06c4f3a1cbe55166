"""Backup schedules: standard cron expressions, or ``@every <duration>`` intervals."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from kvbackup.errors import InvalidSpecError

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_time_zone(name: str, path: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSpecError(f"{path} is not a known IANA time zone: {name!r}") from None


def parse_duration(text: str, path: str) -> datetime.timedelta:
    """``30d``, ``12h``, ``1d12h``, ``90m``, ``45s``: what people write in manifests."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise InvalidSpecError(f"{path} must be a duration such as 30d, 12h or 1h30m, not {text!r}")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    value = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if value <= datetime.timedelta(0):
        raise InvalidSpecError(f"{path} must be longer than zero, not {text!r}")
    return value


_STEPS_PAST_A_CLOCK_CHANGE = 4


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
    def parse(cls, expression: str, zone: ZoneInfo, path: str) -> Schedule:
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
