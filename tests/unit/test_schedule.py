"""Backup schedules: durations, cron in a time zone, intervals, and when a slot is due."""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kvbackup.api.keybackup import parse_spec
from kvbackup.api.schedule import (
    MAX_DURATION,
    Schedule,
    format_duration,
    parse_duration,
    parse_time_zone,
)
from kvbackup.config import Settings
from kvbackup.errors import InvalidSpecError
from kvbackup.presentation.keybackup_status import read_keybackup_status
from kvbackup.services.triggers import RunRequest, due_run, plan_run

UTC = datetime.UTC
CREATED = datetime.datetime(2024, 5, 1, 8, 0, 0, tzinfo=UTC)
BERLIN_2AM = Schedule.parse("0 2 * * *", ZoneInfo("Europe/Berlin"), "spec.schedule")
HOURLY = Schedule.parse("0 * * * *", ZoneInfo("UTC"), "spec.schedule")
EVERY_5S = Schedule.parse("@every 5s", ZoneInfo("UTC"), "spec.schedule")
FIVE_MINUTES = datetime.timedelta(minutes=5)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def due(
    schedule: Schedule,
    now: datetime.datetime,
    status: dict[str, Any] | None = None,
    *,
    suspended: bool = False,
    generation: int = 1,
) -> RunRequest | None:
    return due_run(
        schedule=schedule,
        suspended=suspended,
        status=read_keybackup_status(status or {}),
        generation=generation,
        trigger=None,
        created=CREATED,
        now=now,
    )


def runs_between(
    schedule: Schedule, start: datetime.datetime, end: datetime.datetime
) -> list[datetime.datetime]:
    """The slots an operator polling every five minutes starts between two times."""
    status: dict[str, Any] = {"lastScheduleTime": start.strftime("%Y-%m-%dT%H:%M:%SZ")}
    runs = []
    moment = start
    while moment < end:
        request = due(schedule, moment, status)
        if request is not None and request.slot is not None:
            runs.append(request.slot)
            status["lastScheduleTime"] = request.slot.strftime("%Y-%m-%dT%H:%M:%SZ")
        moment += datetime.timedelta(minutes=5)
    return runs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("30d", datetime.timedelta(days=30), id="days"),
        pytest.param("12h", datetime.timedelta(hours=12), id="hours"),
        pytest.param("90m", datetime.timedelta(minutes=90), id="minutes"),
        pytest.param("45s", datetime.timedelta(seconds=45), id="seconds"),
        pytest.param("1d12h", datetime.timedelta(days=1, hours=12), id="days-and-hours"),
        pytest.param("1h30m", datetime.timedelta(hours=1, minutes=30), id="hours-and-minutes"),
        pytest.param(" 6h ", datetime.timedelta(hours=6), id="surrounding-blanks"),
    ],
)
def test_durations_are_read_as_people_write_them_in_manifests(
    text: str, expected: datetime.timedelta
) -> None:
    assert parse_duration(text, "spec.retention.maxAge") == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("30", id="no-unit"),
        pytest.param("0s", id="zero"),
        pytest.param("0d0h", id="zero-in-parts"),
        pytest.param("1.5h", id="fraction"),
        pytest.param("-1h", id="negative"),
        pytest.param("30m1h", id="units-out-of-order"),
        pytest.param("1h 30m", id="inner-blank"),
        pytest.param("2w", id="weeks"),
        pytest.param("6h\n", id="trailing-newline"),
        pytest.param("\u0661\u0662h", id="arabic-indic-digits"),
    ],
)
def test_a_bad_duration_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_duration(text, "spec.retention.maxAge")

    assert caught.value.message.startswith("spec.retention.maxAge ")
    assert repr(text) in caught.value.message


def test_a_duration_may_be_as_long_as_100_years() -> None:
    assert parse_duration("36525d", "spec.retention.maxAge") == MAX_DURATION
    assert parse_duration("876600h", "spec.retention.maxAge") == MAX_DURATION


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("36526d", id="a-day-more"),
        pytest.param("36525d1s", id="a-second-more"),
        pytest.param("99999999999d", id="overflows-timedelta"),
        pytest.param("999999999d", id="overflows-datetime"),
        pytest.param("9" * 5000 + "s", id="more-digits-than-int-reads"),
    ],
)
def test_a_duration_longer_than_100_years_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_duration(text, "spec.retention.maxAge")

    assert caught.value.message.startswith("spec.retention.maxAge must be at most 36525d")


def test_the_longest_interval_schedule_gives_its_slots_without_overflow() -> None:
    schedule = Schedule.parse("@every 36525d", ZoneInfo("UTC"), "spec.schedule")
    now = at(2026, 1, 1)

    assert schedule.next_slot(now) == now + MAX_DURATION
    assert schedule.latest_slot(now + MAX_DURATION, now) == now + MAX_DURATION


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(datetime.timedelta(minutes=5), "5m", id="minutes"),
        pytest.param(datetime.timedelta(days=1, hours=12), "1d12h", id="days-and-hours"),
        pytest.param(datetime.timedelta(seconds=3661), "1h1m1s", id="every-unit"),
    ],
)
def test_a_duration_is_written_as_it_is_read(value: datetime.timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text, "x") == value


@pytest.mark.parametrize(
    ("expression", "gap"),
    [
        pytest.param("@every 90s", datetime.timedelta(seconds=90), id="interval"),
        pytest.param("* * * * *", datetime.timedelta(minutes=1), id="every-minute"),
        pytest.param("*/5 * * * *", datetime.timedelta(minutes=5), id="every-5-minutes"),
        pytest.param("0,50 * * * *", datetime.timedelta(minutes=10), id="uneven-minutes"),
        pytest.param("0 9-17 * * 1-5", datetime.timedelta(hours=1), id="office-hours"),
        pytest.param("30 23,0 * * *", datetime.timedelta(hours=1), id="across-midnight"),
        pytest.param("@daily", datetime.timedelta(days=1), id="daily"),
    ],
)
def test_a_schedules_shortest_gap_is_its_closest_two_slots(
    expression: str, gap: datetime.timedelta
) -> None:
    assert Schedule.parse(expression, ZoneInfo("Europe/Berlin"), "s").shortest_gap == gap


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("@every 1s", id="every-second"),
        pytest.param("@every 4m59s", id="a-second-short"),
        pytest.param("* * * * *", id="cron-of-every-minute"),
        pytest.param("0,1 3 * * *", id="two-slots-a-minute-apart-once-a-day"),
    ],
)
def test_a_schedule_that_may_run_more_often_than_the_minimum_is_refused(expression: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        Schedule.parse(expression, ZoneInfo("UTC"), "spec.schedule", min_interval=FIVE_MINUTES)

    assert caught.value.message.startswith(f"spec.schedule {expression!r} runs as often as")
    assert "the shortest interval this cluster allows is 5m" in caught.value.message
    assert "KVBACKUP_MIN_SCHEDULE_INTERVAL" in caught.value.message


@pytest.mark.parametrize(
    "expression", ["@every 5m", "*/5 * * * *", "0 2 * * *", "@hourly", "@every 36525d"]
)
def test_a_schedule_no_more_often_than_the_minimum_is_accepted(expression: str) -> None:
    Schedule.parse(expression, ZoneInfo("UTC"), "spec.schedule", min_interval=FIVE_MINUTES)


def test_a_too_frequent_schedule_makes_the_spec_invalid_and_its_run_reports_it_once() -> None:
    spec = {
        "vaultUrl": "https://v.vault.azure.net",
        "keys": {"names": ["k"]},
        "schedule": "@every 1s",
    }
    meta = {"generation": 1, "creationTimestamp": "2024-05-01T08:00:00Z"}

    plan = plan_run(
        spec, read_keybackup_status({}), meta, at(2024, 5, 1, 9), min_schedule_interval=FIVE_MINUTES
    )

    assert plan.spec is None
    assert plan.request == RunRequest(generation=1)
    assert plan.next_slot is None
    with pytest.raises(
        InvalidSpecError, match=r"spec\.schedule '@every 1s' runs as often as every 1s"
    ):
        parse_spec(spec, min_schedule_interval=FIVE_MINUTES)


def test_the_minimum_schedule_interval_is_5_minutes_unless_the_admin_sets_another() -> None:
    assert Settings.from_env({}).min_schedule_interval == FIVE_MINUTES
    configured = Settings.from_env({"KVBACKUP_MIN_SCHEDULE_INTERVAL": "1s"})
    assert configured.min_schedule_interval == datetime.timedelta(seconds=1)


@pytest.mark.parametrize("value", ["5", "0s", "5 minutes", "99999999999d"])
def test_a_minimum_schedule_interval_that_is_not_a_duration_stops_the_operator(value: str) -> None:
    with pytest.raises(InvalidSpecError, match="KVBACKUP_MIN_SCHEDULE_INTERVAL must be"):
        Settings.from_env({"KVBACKUP_MIN_SCHEDULE_INTERVAL": value})


@pytest.mark.parametrize(
    ("now", "slot"),
    [
        pytest.param(at(2024, 3, 30, 12), at(2024, 3, 30, 1), id="winter-time-is-utc+1"),
        pytest.param(at(2024, 4, 1, 12), at(2024, 4, 1, 0), id="summer-time-is-utc+2"),
        pytest.param(at(2024, 10, 26, 12), at(2024, 10, 26, 0), id="last-summer-day"),
        pytest.param(at(2024, 10, 28, 12), at(2024, 10, 28, 1), id="first-winter-day"),
        pytest.param(at(2024, 4, 1, 0), at(2024, 4, 1, 0), id="a-slot-exactly-now-is-due"),
        pytest.param(
            at(2024, 3, 31, 23, 59, 59), at(2024, 3, 31, 1), id="just-before-the-next-slot"
        ),
    ],
)
def test_a_cron_schedule_in_a_time_zone_gives_the_utc_slot_of_local_time(
    now: datetime.datetime, slot: datetime.datetime
) -> None:
    assert BERLIN_2AM.latest_slot(CREATED, now) == slot


def test_a_daily_cron_slot_moves_by_an_hour_in_utc_when_the_clocks_go_forward() -> None:
    assert runs_between(BERLIN_2AM, at(2024, 3, 29, 12), at(2024, 4, 2, 12)) == [
        at(2024, 3, 30, 1),
        # 02:00 does not exist on the day the clocks go forward: the run happens at 03:00 CEST.
        at(2024, 3, 31, 1),
        at(2024, 4, 1, 0),
        at(2024, 4, 2, 0),
    ]


def test_a_daily_cron_slot_moves_back_in_utc_after_the_clocks_go_back() -> None:
    assert BERLIN_2AM.next_slot(at(2024, 10, 25, 0)) == at(2024, 10, 26, 0)
    assert BERLIN_2AM.next_slot(at(2024, 10, 27, 12)) == at(2024, 10, 28, 1)
    assert runs_between(BERLIN_2AM, at(2024, 10, 27, 12), at(2024, 10, 30, 12)) == [
        at(2024, 10, 28, 1),
        at(2024, 10, 29, 1),
        at(2024, 10, 30, 1),
    ]


def test_a_daily_cron_slot_runs_once_on_the_night_its_hour_happens_twice() -> None:
    # 02:00 happens at 00:00 UTC (CEST) and again at 01:00 UTC (CET) on 27 October 2024.
    assert runs_between(BERLIN_2AM, at(2024, 10, 26, 12), at(2024, 10, 28, 12)) == [
        at(2024, 10, 27, 0),
        at(2024, 10, 28, 1),
    ]
    assert BERLIN_2AM.next_slot(at(2024, 10, 27, 0, 30)) == at(2024, 10, 28, 1)
    assert BERLIN_2AM.latest_slot(CREATED, at(2024, 10, 27, 1, 30)) == at(2024, 10, 27, 0)


@pytest.mark.parametrize(
    "zone", ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe"]
)
@pytest.mark.parametrize("expression", ["0 2 * * *", "30 1 * * *", "45 2 * * *"])
def test_a_daily_cron_schedule_runs_once_on_every_local_day_of_a_year(
    zone: str, expression: str
) -> None:
    schedule = Schedule.parse(expression, ZoneInfo(zone), "spec.schedule")
    slot, days = at(2025, 12, 30), []
    while (slot := schedule.next_slot(slot)) < at(2027, 1, 2):
        days.append(slot.astimezone(ZoneInfo(zone)).date())
    days_of_2026 = [day for day in days if day.year == 2026]

    assert len(days_of_2026) == len(set(days_of_2026)) == 365


def test_an_hourly_cron_schedule_runs_in_both_passes_of_the_hour_the_clocks_go_back() -> None:
    schedule = Schedule.parse("0 * * * *", ZoneInfo("America/New_York"), "spec.schedule")

    runs = runs_between(schedule, at(2024, 11, 3, 4, 30), at(2024, 11, 3, 7, 30))

    assert runs == [at(2024, 11, 3, 5), at(2024, 11, 3, 6), at(2024, 11, 3, 7)]


def test_a_half_hourly_cron_schedule_runs_every_half_hour_while_the_clocks_go_back() -> None:
    schedule = Schedule.parse("*/30 * * * *", ZoneInfo("Europe/Berlin"), "spec.schedule")

    runs = runs_between(schedule, at(2024, 10, 26, 23, 45), at(2024, 10, 27, 2, 45))

    assert runs == [
        at(2024, 10, 27, 0, 0),  # 02:00 CEST
        at(2024, 10, 27, 0, 30),  # 02:30 CEST
        at(2024, 10, 27, 1, 0),  # 02:00 CET
        at(2024, 10, 27, 1, 30),  # 02:30 CET
        at(2024, 10, 27, 2, 0),  # 03:00 CET
        at(2024, 10, 27, 2, 30),
    ]


def test_the_next_cron_slot_is_strictly_after_the_given_time() -> None:
    assert BERLIN_2AM.next_slot(at(2024, 4, 1, 0)) == at(2024, 4, 2, 0)
    assert BERLIN_2AM.next_slot(at(2024, 3, 30, 1)) == at(2024, 3, 31, 1)
    assert HOURLY.next_slot(at(2024, 5, 1, 12, 0, 1)) == at(2024, 5, 1, 13)


@pytest.mark.parametrize(
    ("macro", "zone", "now", "slot"),
    [
        pytest.param("@daily", "America/New_York", at(2024, 5, 1, 12), at(2024, 5, 1, 4)),
        pytest.param("@hourly", "UTC", at(2024, 5, 1, 12, 59), at(2024, 5, 1, 12)),
        pytest.param("@weekly", "UTC", at(2024, 5, 1, 12), at(2024, 4, 28, 0)),
    ],
)
def test_a_cron_macro_is_a_schedule_in_its_time_zone(
    macro: str, zone: str, now: datetime.datetime, slot: datetime.datetime
) -> None:
    assert Schedule.parse(macro, ZoneInfo(zone), "spec.schedule").latest_slot(CREATED, now) == slot


def test_every_5s_counts_its_slots_from_the_anchor() -> None:
    anchor = at(2024, 5, 1, 12, 0, 3)

    assert EVERY_5S.interval == datetime.timedelta(seconds=5)
    assert EVERY_5S.latest_slot(anchor, anchor + datetime.timedelta(seconds=4)) == anchor
    assert EVERY_5S.latest_slot(anchor, anchor + datetime.timedelta(seconds=5)) == at(
        2024, 5, 1, 12, 0, 8
    )
    assert EVERY_5S.latest_slot(anchor, anchor + datetime.timedelta(seconds=12)) == at(
        2024, 5, 1, 12, 0, 13
    )
    assert EVERY_5S.next_slot(anchor) == at(2024, 5, 1, 12, 0, 8)


def test_an_interval_schedule_is_first_due_one_interval_after_creation() -> None:
    assert due(EVERY_5S, CREATED + datetime.timedelta(seconds=4)) is None
    assert due(EVERY_5S, CREATED + datetime.timedelta(seconds=7)) == RunRequest(
        1, slot=CREATED + datetime.timedelta(seconds=5)
    )


def test_an_interval_schedule_counts_from_the_last_scheduled_run() -> None:
    status = {"observedGeneration": 1, "lastScheduleTime": "2024-05-01T08:00:10Z"}

    assert due(EVERY_5S, at(2024, 5, 1, 8, 0, 14), status) is None
    assert due(EVERY_5S, at(2024, 5, 1, 8, 0, 16), status) == RunRequest(
        1, slot=at(2024, 5, 1, 8, 0, 15)
    )


def test_slots_missed_while_the_operator_was_down_collapse_into_one_run_of_the_latest() -> None:
    status = {"observedGeneration": 1, "lastScheduleTime": "2024-05-01T08:00:00Z"}
    back_up = at(2024, 5, 1, 12, 20)

    request = due(HOURLY, back_up, status)

    assert request == RunRequest(1, slot=at(2024, 5, 1, 12))
    handled = status | {"lastScheduleTime": "2024-05-01T12:00:00Z"}
    assert due(HOURLY, back_up, handled) is None
    assert due(HOURLY, at(2024, 5, 1, 13), handled) == RunRequest(1, slot=at(2024, 5, 1, 13))


def test_a_suspended_schedule_starts_nothing_however_many_slots_were_missed() -> None:
    status = {"observedGeneration": 1, "lastScheduleTime": "2024-05-01T08:00:00Z"}

    assert due(HOURLY, at(2024, 5, 3, 12, 20), status, suspended=True) is None
    assert due(HOURLY, at(2024, 5, 3, 12, 20), status, suspended=False) is not None


def test_a_scheduled_keybackup_starts_nothing_when_created() -> None:
    assert due(HOURLY, CREATED + datetime.timedelta(minutes=10)) is None


def test_a_spec_change_of_a_scheduled_keybackup_starts_nothing_before_the_next_slot() -> None:
    status = {"observedGeneration": 3, "lastScheduleTime": "2024-05-01T12:00:00Z"}

    assert due(HOURLY, at(2024, 5, 1, 12, 30), status, generation=4) is None
    assert due(HOURLY, at(2024, 5, 1, 13), status, generation=4) == RunRequest(
        4, slot=at(2024, 5, 1, 13)
    )


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("0 2 * *", id="four-fields"),
        pytest.param("0 0 2 * * *", id="six-fields-with-seconds"),
        pytest.param("61 2 * * *", id="minute-out-of-range"),
        pytest.param("every day", id="words"),
        pytest.param("@reboot", id="reboot-macro"),
        pytest.param("@fortnightly", id="unknown-macro"),
        pytest.param("*", id="one-field"),
        pytest.param("@every", id="every-without-duration"),
        pytest.param("@every 0s", id="every-zero"),
        pytest.param("@every 5", id="every-without-unit"),
        pytest.param("@every 6h\n", id="every-with-a-trailing-newline"),
        pytest.param("0 2 * * *\n", id="cron-with-a-trailing-newline"),
        pytest.param("0\t2 * * *", id="cron-with-a-tab"),
    ],
)
def test_an_invalid_schedule_is_refused_naming_the_field(expression: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        Schedule.parse(expression, ZoneInfo("UTC"), "spec.schedule")

    assert caught.value.message.startswith("spec.schedule ")


@pytest.mark.parametrize(
    "zone",
    [
        pytest.param("Mars/Olympus_Mons", id="unknown"),
        pytest.param("", id="empty"),
        pytest.param("../../etc/passwd", id="path"),
    ],
)
def test_an_unknown_time_zone_is_refused_naming_it(zone: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_time_zone(zone, "spec.timeZone")

    assert caught.value.message.startswith("spec.timeZone ")
    assert repr(zone) in caught.value.message


@pytest.mark.parametrize(
    "expression",
    [pytest.param("0 0 31 2 *", id="31 February"), pytest.param("0 0 30 2 *", id="30 February")],
)
def test_a_cron_expression_that_never_fires_is_refused(expression: str) -> None:
    with pytest.raises(InvalidSpecError, match=r"spec\.schedule"):
        Schedule.parse(expression, ZoneInfo("UTC"), "spec.schedule")


def test_a_time_zone_folder_is_not_a_time_zone() -> None:
    with pytest.raises(InvalidSpecError, match=r"spec\.timeZone"):
        parse_time_zone("Europe", "spec.timeZone")
