"""What the operator reads back of each kind of status: one reader per kind, beside its
writers, and a status edited by hand reads as absent where it holds anything else."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kvbackup.presentation.keybackup_status import backup_started, read_keybackup_status
from kvbackup.presentation.keyrestore_status import (
    read_keyrestore_status,
    restore_progress,
    restore_started,
)
from kvbackup.services.journal import CarriedJournal, RestoreJournal
from kvbackup.services.outcomes import ItemResult
from kvbackup.services.triggers import InterruptedRun, KeyBackupStatusView, RunRequest
from tests.unit.fakes import MOMENT, SNAPSHOT_ID

SLOT = datetime.datetime(2024, 5, 1, 11, 0, 0, tzinfo=datetime.UTC)

#: A status whose every field was overwritten with something of another type.
MANGLED: dict[str, Any] = {
    "phase": ["Failed"],
    "observedGeneration": "3",
    "lastHandledTrigger": 7,
    "lastScheduleTime": 1714561200,
    "lastSuccessfulTime": "yesterday",
    "lastSnapshot": "big",
    "activeRun": "running",
}


def test_a_keybackup_status_reads_back_what_its_writers_wrote() -> None:
    request = RunRequest(4, slot=SLOT)
    written = {
        "phase": "Succeeded",
        "observedGeneration": 3,
        "lastHandledTrigger": "now-1",
        "lastScheduleTime": "2024-05-01T10:00:00Z",
        "lastSuccessfulTime": "2024-05-01T10:05:00Z",
        "lastSnapshot": {
            "id": SNAPSHOT_ID,
            "bytes": 2048,
            "oldestArtifactTime": "2024-04-30T12:00:00Z",
        },
    }
    written |= backup_started(written, request, SNAPSHOT_ID, MOMENT).status

    assert read_keybackup_status(written) == KeyBackupStatusView(
        phase="Running",
        observed_generation=3,
        last_handled_trigger="now-1",
        last_schedule_time=SLOT - datetime.timedelta(hours=1),
        last_successful_time=SLOT - datetime.timedelta(minutes=55),
        last_snapshot_bytes=2048,
        oldest_artifact_time=SLOT - datetime.timedelta(hours=23),
        interrupted=InterruptedRun(request, SNAPSHOT_ID),
    )


def test_a_keybackup_status_of_the_wrong_types_reads_as_empty() -> None:
    assert read_keybackup_status(MANGLED) == KeyBackupStatusView()


@pytest.mark.parametrize(
    "active",
    [
        pytest.param({"generation": "4", "trigger": None, "slot": None}, id="generation-text"),
        pytest.param({"generation": 4, "trigger": 1, "slot": None}, id="trigger-number"),
        pytest.param({"generation": 4, "trigger": None, "slot": "soon"}, id="slot-garbage"),
    ],
)
def test_an_active_run_with_a_field_that_does_not_read_back_is_no_interrupted_run(
    active: dict[str, Any],
) -> None:
    status = {"activeRun": {**active, "snapshotId": SNAPSHOT_ID}}

    assert read_keybackup_status(status).interrupted is None


def test_a_keyrestore_status_reads_back_its_attempt_and_its_journal() -> None:
    journal = RestoreJournal()
    journal.begin(SNAPSHOT_ID, 2)
    journal.record(1, ItemResult.SKIPPED)
    status: dict[str, Any] = dict(restore_started({}, 2, MOMENT, dry_run=False).status)
    progress = restore_progress(1, 2, journal).status["activeRun"] or {}
    status["activeRun"] = {**status["activeRun"], **progress}

    read = read_keyrestore_status(status)
    carried = read.journal(2)
    carried.begin(SNAPSHOT_ID, 2)

    assert read.resumes(2)
    assert not read.finished(2)
    assert [carried.earlier(i) for i in range(2)] == [None, ItemResult.SKIPPED]


def test_a_keyrestore_status_of_the_wrong_types_reads_as_no_attempt() -> None:
    read = read_keyrestore_status(MANGLED)

    assert not read.finished(3)
    assert not read.resumes(3)
    assert read.journal(3).snapshot_id == ""


def test_the_journal_this_process_kept_is_newer_than_the_status_for_its_generation() -> None:
    kept = CarriedJournal(2, RestoreJournal(snapshot_id=SNAPSHOT_ID))
    from_status = read_keyrestore_status({})

    assert CarriedJournal.of(kept, 2, from_status) is kept
    assert CarriedJournal.of(kept, 3, from_status).journal.snapshot_id == ""
    assert CarriedJournal.of(None, 2, from_status).generation == 2
