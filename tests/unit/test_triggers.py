"""When a KeyBackup needs a run, and which snapshot id the run writes into."""

from __future__ import annotations

import datetime
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kvbackup.api.conditions import timestamp
from kvbackup.api.schedule import Schedule
from kvbackup.presentation import keybackup_status
from kvbackup.presentation.keybackup_status import read_keybackup_status
from kvbackup.services.triggers import (
    RunRequest,
    due_run,
    parse_time,
    plan_run,
    schedule_anchor,
    snapshot_id_for,
)
from tests.unit.fakes import MOMENT

CREATED = datetime.datetime(2024, 4, 1, 0, 0, 0, tzinfo=datetime.UTC)
HOURLY = Schedule.parse("0 * * * *", ZoneInfo("UTC"), "spec.schedule")
HANDLED = {"observedGeneration": 3, "lastHandledTrigger": "2024-05-01T10:00"}
SLOT = datetime.datetime(2024, 5, 1, 11, 0, 0, tzinfo=datetime.UTC)
RESUMED_ID = "20240501-115900-beef"


def due(
    status: dict[str, Any],
    generation: int,
    trigger: str | None,
    *,
    schedule: Schedule | None = None,
    suspended: bool = False,
) -> RunRequest | None:
    return due_run(
        schedule=schedule,
        suspended=suspended,
        status=read_keybackup_status(status),
        generation=generation,
        trigger=trigger,
        created=CREATED,
        now=MOMENT,
    )


def interrupted(request: RunRequest) -> dict[str, Any]:
    """The status a run of ``request`` leaves behind when the operator dies mid-run."""
    return {
        **HANDLED,
        **keybackup_status.backup_started(HANDLED, request, RESUMED_ID, MOMENT).status,
    }


def test_a_new_generation_is_due_without_a_schedule() -> None:
    assert due(HANDLED, 4, "2024-05-01T10:00") == RunRequest(4)


def test_a_backup_now_value_not_handled_yet_is_due() -> None:
    assert due(HANDLED, 3, "2024-05-01T11:30") == RunRequest(3, trigger="2024-05-01T11:30")


def test_a_backup_now_value_not_handled_yet_is_due_even_when_the_schedule_is_suspended() -> None:
    request = due(HANDLED, 3, "2024-05-01T11:30", schedule=HOURLY, suspended=True)

    assert request == RunRequest(3, trigger="2024-05-01T11:30")


def test_the_first_generation_of_a_new_keybackup_without_a_schedule_is_due() -> None:
    assert due({}, 1, None) == RunRequest(1)


@pytest.mark.parametrize(
    "trigger",
    [pytest.param("2024-05-01T10:00", id="trigger-already-handled"), pytest.param(None, id="none")],
)
def test_re_applying_an_unchanged_object_is_not_due(trigger: str | None) -> None:
    assert due(HANDLED, 3, trigger) is None


def test_re_applying_an_unchanged_scheduled_object_between_slots_is_not_due() -> None:
    handled = HANDLED | {"lastScheduleTime": "2024-05-01T12:00:00Z"}

    assert due(handled, 3, "2024-05-01T10:00", schedule=HOURLY) is None


@pytest.mark.parametrize(
    "wanted",
    [
        pytest.param(RunRequest(4), id="new-generation"),
        pytest.param(RunRequest(4, trigger="now-1"), id="backup-now"),
        pytest.param(RunRequest(4, slot=SLOT), id="scheduled-slot"),
    ],
)
def test_an_interrupted_run_of_the_same_wantedresumes_its_snapshot(
    wanted: RunRequest,
) -> None:
    assert snapshot_id_for(read_keybackup_status(interrupted(wanted)), wanted, MOMENT) == RESUMED_ID


@pytest.mark.parametrize(
    ("existing", "wanted"),
    [
        pytest.param(interrupted(RunRequest(4, "now-1")), RunRequest(5, "now-1"), id="newer-gen"),
        pytest.param(
            interrupted(RunRequest(4, "now-1")), RunRequest(4, "now-2"), id="other-trigger"
        ),
        pytest.param(
            interrupted(RunRequest(4, slot=SLOT)),
            RunRequest(4, slot=SLOT + datetime.timedelta(hours=1)),
            id="later-slot",
        ),
        pytest.param(interrupted(RunRequest(4, slot=SLOT)), RunRequest(4), id="slot-vs-generation"),
        pytest.param(HANDLED, RunRequest(4), id="no-active-run"),
        pytest.param(
            {"activeRun": {"generation": 4, "trigger": None, "slot": None}},
            RunRequest(4),
            id="active-run-without-snapshot-id",
        ),
    ],
)
def test_any_other_run_gets_a_new_snapshot_id_from_the_current_time(
    existing: dict[str, Any], wanted: RunRequest
) -> None:
    snapshot_id = snapshot_id_for(read_keybackup_status(existing), wanted, MOMENT)

    assert re.fullmatch(r"20240501-120000-[0-9a-f]{4}", snapshot_id)


def test_a_run_wantedrecords_its_slot_as_a_kubernetes_timestamp() -> None:
    assert RunRequest(2, slot=SLOT).as_status() == {
        "generation": 2,
        "trigger": None,
        "slot": "2024-05-01T11:00:00Z",
    }


def test_slots_are_counted_from_the_last_scheduled_run_when_there_was_one() -> None:
    assert (
        schedule_anchor(
            read_keybackup_status({"lastScheduleTime": "2024-05-01T11:00:00Z"}), CREATED, SLOT
        )
        == SLOT
    )


def test_slots_are_counted_from_creation_before_the_first_scheduled_run() -> None:
    assert (
        schedule_anchor(read_keybackup_status({"lastScheduleTime": None}), CREATED, SLOT) == CREATED
    )
    assert schedule_anchor(read_keybackup_status({}), CREATED, SLOT) == CREATED


@pytest.mark.parametrize(
    "recorded",
    ["9999-12-31T23:59:59Z", "2024-05-03T11:00:01Z", "garbage", "2024-13-01T00:00:00Z"],
)
def test_a_last_run_recorded_far_ahead_or_unreadable_counts_slots_from_creation(
    recorded: str,
) -> None:
    assert (
        schedule_anchor(read_keybackup_status({"lastScheduleTime": recorded}), CREATED, SLOT)
        == CREATED
    )


def test_a_last_run_a_little_ahead_of_this_replicas_clock_is_believed() -> None:
    ahead = SLOT + datetime.timedelta(minutes=5)
    assert (
        schedule_anchor(
            read_keybackup_status({"lastScheduleTime": timestamp(ahead)}), CREATED, SLOT
        )
        == ahead
    )


def test_a_status_edited_to_year_9999_neither_crashes_planning_nor_stops_the_schedule() -> None:
    status = {"lastScheduleTime": "9999-12-31T23:59:59Z", "observedGeneration": 1}
    created = {"generation": 1, "creationTimestamp": "2024-05-01T09:30:00Z"}
    plan = plan_run(SCHEDULED_SPEC, read_keybackup_status(status), created, SLOT)
    assert plan.request is not None
    assert plan.request.slot == SLOT
    assert plan.next_slot is not None
    assert plan.next_slot <= SLOT + datetime.timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        pytest.param("2024-05-01T11:00:00Z", SLOT, id="kubernetes-timestamp"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
        pytest.param(1714561200, None, id="not-a-string"),
        pytest.param("2024-05-01T11:00:00Z\n", None, id="trailing-newline"),
        pytest.param("2024-02-31T11:00:00Z", None, id="no-such-day"),
        pytest.param("yesterday", None, id="garbage"),
    ],
)
def test_times_are_read_from_kubernetes_timestamps_and_anything_else_is_none(
    text: Any, parsed: datetime.datetime | None
) -> None:
    assert parse_time(text) == parsed


SCHEDULED_SPEC = {
    "vaultUrl": "https://v.vault.azure.net",
    "keys": {"names": ["k"]},
    "schedule": "0 * * * *",
}
META = {"generation": 2, "creationTimestamp": "2024-05-01T09:30:00Z"}


def test_a_plan_runs_the_latest_missed_slot_and_knows_the_one_after_it() -> None:
    plan = plan_run(SCHEDULED_SPEC, read_keybackup_status({}), META, MOMENT)

    assert plan.request == RunRequest(2, slot=MOMENT)
    assert plan.next_slot == datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.UTC)
    assert plan.next_slot_after(plan.request) == MOMENT + datetime.timedelta(hours=1)
    assert plan.seconds_to_next_slot(MOMENT) == -7200.0


def test_an_invalid_spec_still_plans_one_run_per_generation_to_report_it() -> None:
    plan = plan_run(
        {"vaultUrl": "ftp://nope"}, read_keybackup_status({"observedGeneration": 1}), META, MOMENT
    )

    assert plan.spec is None
    assert plan.request == RunRequest(2)
    assert plan.next_slot is None
    assert (
        plan_run(
            {"vaultUrl": "ftp://nope"},
            read_keybackup_status({"observedGeneration": 2}),
            META,
            MOMENT,
        ).request
        is None
    )


@pytest.mark.parametrize(
    ("request_", "full"),
    [
        pytest.param(RunRequest(3, trigger="full-2026-12-07"), True, id="full-dated"),
        pytest.param(RunRequest(3, trigger="full"), True, id="full"),
        pytest.param(RunRequest(3, trigger="2026-12-07"), False, id="dated"),
        pytest.param(RunRequest(3, trigger="now-full"), False, id="full-not-first"),
        pytest.param(RunRequest(3, trigger="Full-1"), False, id="capitalised"),
        pytest.param(RunRequest(3), False, id="generation"),
        pytest.param(RunRequest(3, slot=SLOT), False, id="slot"),
    ],
)
def test_a_backup_now_value_starting_with_full_asks_for_a_full_run(
    request_: RunRequest, full: bool
) -> None:
    assert request_.asks_full_run is full


def test_a_full_run_asked_for_is_due_like_any_backup_now_value_and_resumes_as_one() -> None:
    request = due(HANDLED, 3, "full-2026-12-07", schedule=HOURLY, suspended=True)

    assert request is not None
    assert request.asks_full_run
    resumed = read_keybackup_status(interrupted(request)).interrupted
    assert resumed is not None
    assert resumed.request.asks_full_run
