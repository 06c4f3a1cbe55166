"""Status documents of KeyBackup and KeyRestore, built from run reports."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from unittest.mock import ANY
from zoneinfo import ZoneInfo

import pytest

from kvbackup.api.conditions import Condition, timestamp
from kvbackup.api.kinds import ItemKind
from kvbackup.api.schedule import Schedule
from kvbackup.api.statuses import ConditionDocument, KeyBackupStatus, KeyRestoreStatus
from kvbackup.errors import AccessDeniedError, InvalidSpecError, TransientError
from kvbackup.presentation import keybackup_status, keyrestore_status, snapshot_list, status
from kvbackup.services.backup import BackupReport, KeptSnapshot, run_backup
from kvbackup.services.journal import RestoreJournal
from kvbackup.services.outcomes import Freshness, ItemOutcome, ItemResult
from kvbackup.services.restore import RestoreReport, run_restore
from kvbackup.services.retention import KeptFor
from kvbackup.services.retry_policy import Verdict
from kvbackup.services.snapshot import Manifest
from kvbackup.services.triggers import RunRequest, due_run
from tests.unit.fakes import (
    MOMENT,
    REF,
    SNAPSHOT_ID,
    InMemoryStore,
    InMemoryVault,
    backup_spec,
    clock,
    manifest_at,
    opened,
    restore_spec,
)

LATER = MOMENT + datetime.timedelta(minutes=5)
SLOT = datetime.datetime(2024, 5, 1, 11, 0, 0, tzinfo=datetime.UTC)
BY_GENERATION = RunRequest(1)
STORED = ItemOutcome("stored", ItemResult.SUCCEEDED, ("v1",), "ab" * 32, 120)
RESTORED = ItemOutcome("restored", ItemResult.RESTORED, ("v1", "v2"))
HOURLY = Schedule.parse("@hourly", ZoneInfo("UTC"), "spec.schedule")
LOST = ItemOutcome("lost", ItemResult.FAILED, reason="NotFound", message="key lost not found")


def backup_report(
    *outcomes: ItemOutcome, left_out: dict[ItemKind, int] | None = None
) -> BackupReport:
    return BackupReport(
        snapshot_id=SNAPSHOT_ID,
        start_time=MOMENT,
        completion_time=LATER,
        outcomes=list(outcomes),
        location="memory://x",
        manifest_written=any(not o.failed for o in outcomes),
        left_out=left_out or {},
    )


def restore_report(*outcomes: ItemOutcome, dry_run: bool = False) -> RestoreReport:
    return RestoreReport(SNAPSHOT_ID, MOMENT, LATER, list(outcomes), dry_run=dry_run)


def condition(document: KeyBackupStatus | KeyRestoreStatus, kind: str) -> ConditionDocument:
    [found] = [c for c in document.get("conditions", []) if c["type"] == kind]
    return found


def ready(document: KeyBackupStatus | KeyRestoreStatus) -> ConditionDocument:
    return condition(document, "Ready")


def standing(document: KeyBackupStatus | KeyRestoreStatus) -> dict[str, str]:
    """Each condition's status, by type."""
    return {c["type"]: c["status"] for c in document.get("conditions", [])}


@pytest.mark.parametrize(
    ("outcomes", "phase", "is_ready"),
    [
        pytest.param((STORED,), "Succeeded", "True", id="succeeded"),
        pytest.param((STORED, LOST), "PartiallyFailed", "False", id="partially-failed"),
        pytest.param((LOST,), "Failed", "False", id="failed"),
    ],
)
def test_a_finished_backup_is_ready_only_when_it_succeeded(
    outcomes: tuple[ItemOutcome, ...], phase: str, is_ready: str
) -> None:
    document = keybackup_status.backup_finished(
        {}, backup_report(*outcomes), RunRequest(7, trigger="now-1"), 100, None
    ).status

    assert document["phase"] == phase
    assert (ready(document)["status"], ready(document)["reason"]) == (is_ready, phase)
    assert ready(document)["observedGeneration"] == 7
    assert document["observedGeneration"] == 7
    assert document["lastHandledTrigger"] == "now-1"
    assert document["activeRun"] is None
    assert ("lastSuccessfulTime" in document) is (phase == "Succeeded")


@pytest.mark.parametrize(
    ("outcomes", "phase", "is_ready"),
    [
        pytest.param((RESTORED,), "Succeeded", "True", id="succeeded"),
        pytest.param((RESTORED, LOST), "PartiallyFailed", "False", id="partially-failed"),
    ],
)
def test_a_finished_restore_is_ready_only_when_it_succeeded(
    outcomes: tuple[ItemOutcome, ...], phase: str, is_ready: str
) -> None:
    document = keyrestore_status.restore_finished(
        {}, restore_report(*outcomes), "nightly", 2, 100
    ).status

    assert document["phase"] == phase
    assert (ready(document)["status"], ready(document)["reason"]) == (is_ready, phase)
    assert document["source"] == {
        "keyBackup": "nightly",
        "snapshotId": SNAPSHOT_ID,
        "copy": None,
        "fellBack": None,
    }
    assert document["counts"]["restored"] == 1
    assert document["counts"]["failed"] == len(outcomes) - 1


def test_a_restore_started_again_for_the_same_generation_resumes_its_interrupted_attempt() -> None:
    first = keyrestore_status.restore_started({}, 2, MOMENT, dry_run=False).status
    assert not keyrestore_status.read_keyrestore_status({}).resumes(2)
    # A merge patch: what an attempt at another generation left is removed.
    assert first["activeRun"] == {
        "generation": 2,
        "startTime": timestamp(MOMENT),
        "itemsDone": None,
        "itemsTotal": None,
        "snapshotId": None,
        "itemResults": None,
    }

    assert keyrestore_status.read_keyrestore_status(first).resumes(2)
    assert not keyrestore_status.read_keyrestore_status(first).resumes(
        3
    )  # a new spec starts afresh
    again = keyrestore_status.restore_started(first, 2, LATER, dry_run=False).status
    assert again["activeRun"] == {"generation": 2, "startTime": timestamp(MOMENT)}


def test_a_temporary_failure_leaves_each_keys_result_for_the_next_attempt() -> None:
    journal = RestoreJournal()
    journal.begin(SNAPSHOT_ID, 3)
    journal.record(1, ItemResult.RESTORED)
    running = keyrestore_status.restore_started({}, 2, MOMENT, dry_run=False).status
    failed = keyrestore_status.restore_failed(
        running, Verdict(TransientError("down"), 20.0), 2, MOMENT, journal
    ).status
    attempt = {**(running.get("activeRun") or {}), **(failed.get("activeRun") or {})}
    merged = {**running, "activeRun": attempt}
    carried = keyrestore_status.read_keyrestore_status(merged).journal(2)
    carried.begin(SNAPSHOT_ID, 3)

    assert [carried.earlier(i) for i in range(3)] == [None, ItemResult.RESTORED, None]
    final = keyrestore_status.restore_failed(
        running, Verdict(TransientError("x"), None), 2, MOMENT, journal
    )
    assert final.status["activeRun"] is None
    assert (
        keyrestore_status.read_keyrestore_status(running).journal(3).snapshot_id == ""
    )  # another generation


def test_a_finished_restore_has_no_attempt_left_to_resume() -> None:
    started = keyrestore_status.restore_started({}, 2, MOMENT, dry_run=False).status
    finished = keyrestore_status.restore_finished(
        started, restore_report(RESTORED), "nightly", 2, 100
    ).status

    assert finished["activeRun"] is None
    assert not keyrestore_status.read_keyrestore_status({**started, **finished}).resumes(2)


def test_a_backup_that_kept_nothing_reports_no_last_snapshot() -> None:
    document = keybackup_status.backup_finished(
        {}, backup_report(LOST), BY_GENERATION, 100, None
    ).status

    assert "lastSnapshot" not in document
    assert "(not kept)" in ready(document)["message"]


def test_a_backup_that_kept_nothing_leaves_what_the_status_says_of_its_copies() -> None:
    copies = [{"name": "offsite", "phase": "Complete", "snapshotId": "20240501-110000-abcd"}]
    copies_complete = {"type": "CopiesComplete", "status": "True", "reason": "Complete"}
    existing = {"copies": copies, "conditions": [copies_complete]}

    document = keybackup_status.backup_finished(
        existing, backup_report(LOST), BY_GENERATION, 100, None
    ).status

    assert "copies" not in document
    assert condition(document, "CopiesComplete")["status"] == "True"


def test_the_per_key_list_is_bounded_and_lists_failures_first() -> None:
    outcomes = [ItemOutcome(f"key-{i}", ItemResult.SUCCEEDED, ("v1",)) for i in range(5)]
    failures = [
        ItemOutcome("z-failed", ItemResult.FAILED, reason="NotFound"),
        ItemOutcome("a-failed", ItemResult.FAILED, reason="TooLarge"),
    ]

    document = keybackup_status.backup_finished(
        {}, backup_report(*outcomes, *failures), BY_GENERATION, 3, None
    ).status

    assert [entry["name"] for entry in document["keys"] or []] == ["a-failed", "z-failed", "key-0"]
    assert document["lastRun"]["keysTotal"] == 7
    assert document["lastRun"]["keysFailed"] == 2


def test_last_transition_time_stays_while_the_status_is_unchanged() -> None:
    existing: list[Any] = [
        {"type": "Ready", "status": "False", "lastTransitionTime": "2024-04-01T00:00:00Z"},
        {"type": "Other", "status": "True", "lastTransitionTime": "2024-03-01T00:00:00Z"},
    ]

    merged = Condition("Ready", False, "Failed", "still failing", 3).merged_into(existing, LATER)

    assert merged[0] == existing[1]
    assert merged[1] == {
        "type": "Ready",
        "status": "False",
        "reason": "Failed",
        "message": "still failing",
        "observedGeneration": 3,
        "lastTransitionTime": "2024-04-01T00:00:00Z",
    }


def test_last_transition_time_moves_when_the_status_flips() -> None:
    existing: list[Any] = [
        {"type": "Ready", "status": "False", "lastTransitionTime": "2024-04-01T00:00:00Z"}
    ]

    [merged] = Condition("Ready", True, "Succeeded", "ok", 3).merged_into(existing, LATER)

    assert merged["status"] == "True"
    assert merged["lastTransitionTime"] == timestamp(LATER) == "2024-05-01T12:05:00Z"


def due(existing: dict[str, Any], schedule: Schedule | None, trigger: str | None) -> bool:
    request = due_run(
        schedule=schedule,
        suspended=False,
        status=keybackup_status.read_keybackup_status(existing),
        generation=2,
        trigger=trigger,
        created=SLOT - datetime.timedelta(days=1),
        now=MOMENT,
    )
    return request is not None


@pytest.mark.parametrize(
    ("schedule", "trigger", "run"),
    [
        pytest.param(None, None, RunRequest(2), id="new-generation"),
        pytest.param(None, "t", RunRequest(2, trigger="t"), id="backup-now"),
        pytest.param(HOURLY, None, RunRequest(2, slot=MOMENT), id="scheduled-slot"),
    ],
)
def test_a_temporary_failure_leaves_the_run_due_and_a_permanent_one_does_not(
    schedule: Schedule | None, trigger: str | None, run: RunRequest
) -> None:
    existing = {"observedGeneration": 1, "lastScheduleTime": timestamp(SLOT)}
    assert due(existing, schedule, trigger)

    retried = keybackup_status.backup_failed(
        existing, Verdict(AccessDeniedError("403"), 10.0), run, MOMENT
    ).status
    given_up = keybackup_status.backup_failed(
        existing, Verdict(InvalidSpecError("bad"), None), run, MOMENT
    ).status

    assert ready(retried)["message"] == "403 (retrying in 10s)"
    assert ready(given_up)["reason"] == "InvalidSpec"
    assert due({**existing, **retried}, schedule, trigger) is True
    assert due({**existing, **given_up}, schedule, trigger) is False


def test_a_started_backup_records_its_request_and_snapshot_as_the_active_run() -> None:
    request = RunRequest(4, trigger="now-1", slot=SLOT)

    update = keybackup_status.backup_started({}, request, SNAPSHOT_ID, MOMENT)
    document = update.status

    assert document["phase"] == "Running"
    assert document["activeRun"] == {
        "generation": 4,
        "trigger": "now-1",
        "slot": "2024-05-01T11:00:00Z",
        "snapshotId": SNAPSHOT_ID,
        "startTime": "2024-05-01T12:00:00Z",
    }
    assert (ready(document)["status"], ready(document)["reason"]) == ("False", "BackupRunning")
    assert SNAPSHOT_ID in ready(document)["message"]
    assert update.events == (
        status.Event("Normal", "BackupStarted", f"backing up into {SNAPSHOT_ID}"),
    )


@pytest.mark.parametrize(
    ("run", "recorded"),
    [
        pytest.param(RunRequest(5), {}, id="new-generation"),
        pytest.param(RunRequest(5, trigger="now-2"), {"lastHandledTrigger": "now-2"}, id="now"),
        pytest.param(
            RunRequest(5, slot=SLOT), {"lastScheduleTime": "2024-05-01T11:00:00Z"}, id="slot"
        ),
    ],
)
def test_a_finished_or_abandoned_run_records_which_request_it_handled(
    run: RunRequest, recorded: dict[str, str]
) -> None:
    finished = keybackup_status.backup_finished({}, backup_report(STORED), run, 100, None).status
    given_up = keybackup_status.backup_failed(
        {}, Verdict(InvalidSpecError("bad"), None), run, MOMENT
    ).status

    for document in (finished, given_up):
        handled = {
            k: document[k] for k in ("lastHandledTrigger", "lastScheduleTime") if k in document
        }
        assert handled == recorded
        assert document.get("observedGeneration") == 5
        assert "activeRun" in document
        assert document["activeRun"] is None


def test_a_finished_backup_lists_the_kept_snapshots_only_when_they_are_known() -> None:
    kept = (KeptSnapshot(manifest_at(SNAPSHOT_ID).summary, "memory://x"),)
    report = backup_report(STORED)

    known = keybackup_status.backup_finished(
        {}, replace(report, kept=kept), BY_GENERATION, 100, None
    )
    unknown = keybackup_status.backup_finished({}, report, BY_GENERATION, 100, None)

    assert [entry["id"] for entry in known.status["snapshots"]] == [SNAPSHOT_ID]
    assert "snapshots" not in unknown.status


def test_a_failed_retention_is_told_in_an_event_and_the_backup_still_succeeds() -> None:
    report = replace(backup_report(STORED), retention_error=TransientError("storage down"))

    update = keybackup_status.backup_finished({}, report, BY_GENERATION, 100, None)

    assert update.status["phase"] == "Succeeded"
    assert [(e.type, e.reason) for e in update.events] == [
        ("Normal", "BackupSucceeded"),
        ("Warning", "RetentionFailed"),
    ]
    assert update.events[1].message == "storage down"


def test_a_snapshot_storage_refused_to_delete_is_listed_as_such_and_the_backup_succeeds() -> None:
    refusal = "delete blob x: the blob is immutable (BlobImmutableDueToPolicy)"
    kept = (
        KeptSnapshot(manifest_at(SNAPSHOT_ID).summary, "at/new", kept_for=(KeptFor.NEWEST,)),
        KeptSnapshot(manifest_at(OLDEST_ID).summary, "at/old", deletion_refused=refusal),
    )
    report = replace(backup_report(STORED), kept=kept)

    update = keybackup_status.backup_finished({}, report, BY_GENERATION, 100, None)

    assert update.status["phase"] == "Succeeded"
    new, old = update.status["snapshots"]
    assert "deletionRefused" not in new
    assert old["deletionRefused"] == refusal
    assert [(e.type, e.reason) for e in update.events] == [
        ("Normal", "BackupSucceeded"),
        ("Normal", "DeletionRefused"),
    ]
    assert update.events[1].message.endswith(f"{OLDEST_ID}: {refusal}")


def test_each_outcome_is_told_in_one_event_with_the_conditions_message() -> None:
    backup = keybackup_status.backup_finished(
        {}, backup_report(STORED, LOST), BY_GENERATION, 100, None
    )
    restore = keyrestore_status.restore_finished({}, restore_report(RESTORED), "nightly", 2, 100)
    failed = keyrestore_status.restore_failed(
        {}, Verdict(TransientError("down"), 20.0), 2, MOMENT, RestoreJournal()
    )

    assert [(e.type, e.reason) for e in backup.events] == [("Warning", "BackupPartiallyFailed")]
    assert backup.events[0].message == ready(backup.status)["message"]
    assert [(e.type, e.reason) for e in restore.events] == [("Normal", "RestoreSucceeded")]
    assert restore.events[0].message == ready(restore.status)["message"]
    assert [(e.type, e.reason, e.message) for e in failed.events] == [
        ("Warning", "Unavailable", "down")
    ]
    assert ready(failed.status)["message"] == "down (retrying in 20s)"


def test_snapshot_entries_describe_only_the_ten_newest_snapshots_the_store_lists() -> None:
    manifests: list[Manifest] = [
        manifest_at(f"202405{day:02d}-020000-abcd", failed=day % 2 == 0) for day in range(12, 0, -1)
    ]

    entries = snapshot_list.snapshot_entries(
        [KeptSnapshot(m.summary, f"at/{m.snapshot_id}") for m in manifests]
    )

    assert len(entries) == snapshot_list.SNAPSHOTS_IN_STATUS == 10
    assert [entry["id"][:8] for entry in entries[:2]] == ["20240512", "20240511"]
    assert entries[0] == {
        "id": "20240512-020000-abcd",
        "completionTime": "2024-05-12T02:01:00Z",
        "keys": 1,
        "failedKeys": 1,
        "bytes": 10,
        "newBytes": 10,
        "location": "at/20240512-020000-abcd",
    }
    assert entries[1]["failedKeys"] == 0


def test_the_next_schedule_time_is_set_or_removed() -> None:
    assert keybackup_status.schedule_status(SLOT) == {"nextScheduleTime": "2024-05-01T11:00:00Z"}
    assert keybackup_status.schedule_status(None) == {"nextScheduleTime": None}


def test_a_scheduled_keybackup_before_its_first_run_is_scheduled_and_ready() -> None:
    patch = keybackup_status.schedule_acknowledged({}, 1, SLOT, MOMENT)

    assert patch is not None
    assert patch["phase"] == "Scheduled"
    assert patch["nextScheduleTime"] == "2024-05-01T11:00:00Z"
    assert standing(patch) == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
    assert (ready(patch)["reason"], ready(patch)["message"]) == (
        "Scheduled",
        "first run at 2024-05-01T11:00:00Z",
    )


def test_a_suspended_keybackup_before_its_first_run_says_what_starts_one() -> None:
    patch = keybackup_status.schedule_acknowledged({}, 1, None, MOMENT)

    assert patch is not None
    assert (ready(patch)["status"], ready(patch)["reason"]) == ("True", "Suspended")
    assert "kvbackup.io/backup-now" in ready(patch)["message"]


def test_a_schedule_acknowledged_already_is_not_written_again() -> None:
    written = keybackup_status.schedule_acknowledged({}, 1, SLOT, MOMENT)
    assert written is not None

    assert keybackup_status.schedule_acknowledged(dict(written), 1, SLOT, LATER) is None


def test_a_new_schedule_after_a_run_keeps_its_outcome_said_of_the_new_generation() -> None:
    ran = {"phase": "Failed", "observedGeneration": 1, "conditions": [{"type": "Ready"}]}

    patch = keybackup_status.schedule_acknowledged(ran, 2, SLOT, MOMENT)

    assert patch == {
        "observedGeneration": 2,
        "nextScheduleTime": "2024-05-01T11:00:00Z",
        "conditions": [{"type": "Ready", "observedGeneration": 2}],
    }


def values(document: Any) -> Iterator[Any]:
    if isinstance(document, dict):
        for value in document.values():
            yield from values(value)
    elif isinstance(document, list):
        for item in document:
            yield from values(item)
    else:
        yield document


async def test_no_backup_bytes_reach_either_status() -> None:
    vault, store, target = InMemoryVault(), InMemoryStore(), InMemoryVault()
    vault.add("signing", versions=("s1", "s2"))
    backup = await run_backup(backup_spec("signing"), REF, SNAPSHOT_ID, vault, store, clock=clock)
    restore = await run_restore(
        restore_spec(), opened(store, store.manifests[0]), target, clock=clock
    )
    [data] = store.artifacts.values()

    documents = [
        keybackup_status.backup_finished({}, backup, BY_GENERATION, 100, None).status,
        keyrestore_status.restore_finished({}, restore, REF.name, 1, 100).status,
    ]

    leaves = list(values(documents))
    texts = [value for value in leaves if isinstance(value, str)]
    assert not any(isinstance(value, bytes | bytearray) for value in leaves)
    assert not any(data.decode() in text for text in texts)
    assert not any(base64.b64encode(data).decode() in text for text in texts)
    assert documents[0]["keys"] == [
        {"name": "signing", "result": "Succeeded", "versionCount": 2, "sha256": ANY, "size": ANY}
    ]
    assert documents[0]["keys"][0]["sha256"] == store.manifests[0].artifacts[0].sha256


WOULD_RESTORE = ItemOutcome("signing", ItemResult.WOULD_RESTORE, ("v1",), reason="KeyAbsent")
WOULD_FAIL = ItemOutcome("tokens", ItemResult.WOULD_FAIL, reason="KeyExists", message="active")


def test_a_dry_run_is_ready_says_it_was_a_dry_run_and_counts_what_would_be_done() -> None:
    report = restore_report(WOULD_RESTORE, WOULD_FAIL, dry_run=True)

    update = keyrestore_status.restore_finished({}, report, "nightly", 3, 100)

    document = update.status
    assert document["phase"] == "Succeeded"
    assert document["dryRun"] is True
    would: dict[str, int | None] = {
        "wouldRestore": 1,
        "wouldRecover": 0,
        "wouldSkip": 0,
        "wouldFail": 1,
        "restored": None,
        "recovered": None,
        "skipped": None,
        "failed": None,
    }
    assert document["counts"] == {**would, "keys": would, "secrets": None, "certificates": None}
    assert [entry["result"] for entry in document["keys"] or []] == ["WouldFail", "WouldRestore"]
    condition = ready(document)
    assert (condition["status"], condition["reason"]) == ("True", "DryRunSucceeded")
    assert condition["message"] == (
        "dry run: would restore 1, recover 0, skip 0, fail 1; no key was changed"
    )
    assert [(e.type, e.reason) for e in update.events] == [("Normal", "DryRunSucceeded")]


def test_a_dry_run_into_another_vault_says_where_key_vault_restores_in_its_message_and_event() -> (
    None
):
    reminder = "the snapshot is of https://a.vault.azure.net, not https://b.vault.azure.net: ..."
    report = replace(restore_report(WOULD_RESTORE, dry_run=True), reminder=reminder)

    update = keyrestore_status.restore_finished({}, report, "nightly", 3, 100)

    assert ready(update.status)["message"].endswith(f"; {reminder}")
    assert ("Warning", "OtherVault", reminder) in [
        (e.type, e.reason, e.message) for e in update.events
    ]


def test_a_real_restore_after_a_dry_run_clears_the_dry_runs_counts_and_flag() -> None:
    report = restore_report(RESTORED)

    document = keyrestore_status.restore_finished({}, report, "nightly", 4, 100).status

    assert document["dryRun"] is False
    assert document["counts"]["restored"] == 1
    assert document["counts"]["wouldRestore"] is None
    assert ready(document)["reason"] == "Succeeded"


FAILED_RUN = Verdict(AccessDeniedError("the identity lacks keys/list"), None)
RETRIED_RUN = Verdict(TransientError("the vault did not answer"), 20.0)
DRY_RUN = restore_report(WOULD_RESTORE, dry_run=True)
#: A run under way and a retry waiting alike.
RUNNING = RETRYING = {"Ready": "False", "Reconciling": "True", "Stalled": "False"}
SUCCEEDED = {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
STALLED = {"Ready": "False", "Reconciling": "False", "Stalled": "True"}


@pytest.mark.parametrize(
    ("document", "conditions", "reason"),
    [
        pytest.param(
            keybackup_status.backup_started({}, RunRequest(3), SNAPSHOT_ID, MOMENT).status,
            RUNNING,
            "BackupRunning",
            id="backup-running",
        ),
        pytest.param(
            keybackup_status.backup_finished(
                {}, backup_report(STORED), RunRequest(3), 100, None
            ).status,
            SUCCEEDED,
            "Succeeded",
            id="backup-succeeded",
        ),
        pytest.param(
            keybackup_status.backup_finished(
                {}, backup_report(STORED, LOST), RunRequest(3), 100, SLOT
            ).status,
            STALLED,
            "PartiallyFailed",
            id="backup-partially-failed-scheduled-or-not",
        ),
        pytest.param(
            keybackup_status.backup_failed({}, RETRIED_RUN, RunRequest(3), MOMENT).status,
            RETRYING,
            "Unavailable",
            id="backup-retry-scheduled",
        ),
        pytest.param(
            keybackup_status.backup_failed({}, FAILED_RUN, RunRequest(3), MOMENT).status,
            STALLED,
            "AccessDenied",
            id="backup-failed-for-good",
        ),
        pytest.param(
            keybackup_status.schedule_acknowledged({}, 3, SLOT, MOMENT),
            SUCCEEDED,
            "Scheduled",
            id="scheduled-waiting-for-first-slot",
        ),
        pytest.param(
            keyrestore_status.restore_started({}, 3, MOMENT, dry_run=False).status,
            RUNNING,
            "RestoreRunning",
            id="restore-running",
        ),
        pytest.param(
            keyrestore_status.restore_finished(
                {}, restore_report(RESTORED), "nightly", 3, 100
            ).status,
            SUCCEEDED,
            "Succeeded",
            id="restore-succeeded",
        ),
        pytest.param(
            keyrestore_status.restore_finished({}, DRY_RUN, "nightly", 3, 100).status,
            SUCCEEDED,
            "DryRunSucceeded",
            id="dry-run-succeeded",
        ),
        pytest.param(
            keyrestore_status.restore_finished(
                {}, restore_report(RESTORED, LOST), "nightly", 3, 100
            ).status,
            STALLED,
            "PartiallyFailed",
            id="restore-partially-failed",
        ),
        pytest.param(
            keyrestore_status.restore_failed({}, RETRIED_RUN, 3, MOMENT, RestoreJournal()).status,
            RETRYING,
            "Unavailable",
            id="restore-retry-scheduled",
        ),
        pytest.param(
            keyrestore_status.restore_failed(
                {}, Verdict(InvalidSpecError("no such snapshot"), None), 3, MOMENT, RestoreJournal()
            ).status,
            STALLED,
            "InvalidSpec",
            id="restore-invalid-spec",
        ),
    ],
)
def test_each_state_writes_ready_reconciling_and_stalled_of_its_generation(
    document: KeyBackupStatus | KeyRestoreStatus | None, conditions: dict[str, str], reason: str
) -> None:
    assert document is not None
    assert standing(document) == conditions
    assert ready(document)["reason"] == reason
    assert {c["observedGeneration"] for c in document["conditions"]} == {3}
    # A False condition reads on its own: it says why, as Ready does.
    for other in ("Reconciling", "Stalled"):
        if condition(document, other)["status"] == "False":
            assert condition(document, other)["message"] == ready(document)["message"]


def test_a_retry_says_when_it_comes_and_a_final_failure_stalls_with_the_errors_message() -> None:
    retried = keybackup_status.backup_failed({}, RETRIED_RUN, RunRequest(1), MOMENT).status
    failed = keybackup_status.backup_failed({}, FAILED_RUN, RunRequest(1), MOMENT).status

    assert condition(retried, "Reconciling")["reason"] == "RetryScheduled"
    assert (
        condition(retried, "Reconciling")["message"] == "the vault did not answer (retrying in 20s)"
    )
    assert condition(failed, "Stalled")["reason"] == "AccessDenied"
    assert condition(failed, "Stalled")["message"] == "the identity lacks keys/list"


def test_a_partial_failure_stalls_naming_each_failed_key_and_its_reason() -> None:
    document = keybackup_status.backup_finished(
        {}, backup_report(STORED, LOST), BY_GENERATION, 100, None
    ).status

    assert condition(document, "Stalled")["message"] == (
        f"backed up 1 of 2 key(s) into snapshot {SNAPSHOT_ID}; lost: Failed (NotFound)"
    )


def test_a_stalled_message_names_a_bounded_number_of_failed_keys() -> None:
    lost = [replace(LOST, name=f"lost-{n:02d}") for n in range(12)]

    document = keyrestore_status.restore_finished(
        {}, restore_report(*lost), "nightly", 1, 100
    ).status

    message = condition(document, "Stalled")["message"]
    assert message.count(": Failed (NotFound)") == status.FAILED_ITEMS_IN_MESSAGE
    assert message.endswith("; 7 more in status.keys")


def test_a_new_run_clears_stalled_and_keeps_its_transition_time_apart_from_readys() -> None:
    failed = keybackup_status.backup_failed({}, FAILED_RUN, RunRequest(1, slot=SLOT), MOMENT).status

    running = keybackup_status.backup_started(
        failed, RunRequest(1, slot=LATER), SNAPSHOT_ID, LATER
    ).status

    assert standing(running) == RUNNING
    assert condition(running, "Stalled")["lastTransitionTime"] == timestamp(LATER)
    assert ready(running)["lastTransitionTime"] == timestamp(MOMENT)


def test_an_edit_of_a_failed_scheduled_keybackup_keeps_it_stalled_said_of_the_new_generation() -> (
    None
):
    failed = {"phase": "Failed", "observedGeneration": 1, "nextScheduleTime": timestamp(SLOT)}
    failed |= keybackup_status.backup_failed(
        failed, FAILED_RUN, RunRequest(1, slot=SLOT), MOMENT
    ).status

    patch = keybackup_status.schedule_acknowledged(failed, 2, SLOT, LATER)

    assert patch is not None
    assert standing(patch) == STALLED
    assert {c["observedGeneration"] for c in patch["conditions"]} == {2}
    assert [c["lastTransitionTime"] for c in patch["conditions"]] == [timestamp(MOMENT)] * 3
    assert "phase" not in patch


def test_an_edit_that_mends_an_invalid_spec_makes_a_scheduled_keybackup_wait_ready() -> None:
    invalid = keybackup_status.backup_failed(
        {}, Verdict(InvalidSpecError("bad schedule"), None), RunRequest(1), MOMENT
    ).status

    patch = keybackup_status.schedule_acknowledged(dict(invalid), 2, SLOT, LATER)

    assert patch is not None
    assert patch["phase"] == "Scheduled"
    assert standing(patch) == SUCCEEDED
    assert ready(patch)["message"] == "first run at 2024-05-01T11:00:00Z"
    assert {c["observedGeneration"] for c in patch["conditions"]} == {2}


def test_a_ready_left_at_an_older_generation_is_said_of_the_current_one() -> None:
    ran = keybackup_status.backup_finished(
        {}, backup_report(STORED), RunRequest(1, slot=SLOT), 100, SLOT
    ).status
    left_behind = dict(ran) | {"observedGeneration": 2}

    patch = keybackup_status.schedule_acknowledged(left_behind, 2, SLOT, LATER)

    assert patch is not None
    assert {c["observedGeneration"] for c in patch["conditions"]} == {2}
    assert (
        keybackup_status.schedule_acknowledged(dict(left_behind) | dict(patch), 2, SLOT, LATER)
        is None
    )


KEY = ItemOutcome("signing", ItemResult.SUCCEEDED, ("v1",), "ab" * 32, 100)
SECRET = replace(KEY, name="db-password", size=20, kind=ItemKind.SECRET)
CERTIFICATE = replace(KEY, name="api-tls", size=300, kind=ItemKind.CERTIFICATE)
LOST_SECRET = ItemOutcome(
    "gone", ItemResult.FAILED, reason="SecretNotFound", message="x", kind=ItemKind.SECRET
)


def test_a_mixed_backup_lists_and_counts_each_kind_apart() -> None:
    report = backup_report(KEY, SECRET, LOST_SECRET, CERTIFICATE)

    document = keybackup_status.backup_finished({}, report, BY_GENERATION, 100, None).status

    assert [e["name"] for e in document["keys"] or []] == ["signing"]
    assert [e["name"] for e in document["secrets"] or []] == ["gone", "db-password"]
    assert [e["name"] for e in document["certificates"] or []] == ["api-tls"]
    assert document["lastRun"] == {
        "snapshotId": SNAPSHOT_ID,
        "startTime": timestamp(MOMENT),
        "completionTime": timestamp(LATER),
        "phase": "PartiallyFailed",
        "keysTotal": 1,
        "keysSucceeded": 1,
        "keysFailed": 0,
        "secretsTotal": 2,
        "secretsSucceeded": 1,
        "secretsFailed": 1,
        "certificatesTotal": 1,
        "certificatesSucceeded": 1,
        "certificatesFailed": 0,
        "backedUp": 3,
        "refreshed": 0,
        "unchanged": 0,
        "fullRun": None,
        "comparedWith": None,
        "bytes": 420,
        "newBytes": 420,
        "leftOut": None,
    }
    assert document["lastSnapshot"] | {"location": ""} == {
        "id": SNAPSHOT_ID,
        "startTime": timestamp(MOMENT),
        "completionTime": timestamp(LATER),
        "keys": 1,
        "secrets": 1,
        "certificates": 1,
        "bytes": 420,
        "oldestArtifactTime": timestamp(MOMENT),
        "location": "",
    }
    assert ready(document)["message"] == (
        f"backed up 1 of 1 key(s), 1 of 2 secret(s) and 1 of 1 certificate(s) into snapshot "
        f"{SNAPSHOT_ID}"
    )
    assert condition(document, "Stalled")["message"].endswith(
        "; secret gone: Failed (SecretNotFound)"
    )


def test_a_keys_only_backup_removes_what_an_earlier_run_said_of_other_kinds() -> None:
    document = keybackup_status.backup_finished(
        {}, backup_report(STORED), BY_GENERATION, 100, None
    ).status

    assert {k: v for k, v in document["lastRun"].items() if v is None} == {
        "secretsTotal": None,
        "secretsSucceeded": None,
        "secretsFailed": None,
        "certificatesTotal": None,
        "certificatesSucceeded": None,
        "certificatesFailed": None,
        "fullRun": None,
        "comparedWith": None,
        "leftOut": None,
    }
    assert (document["secrets"], document["certificates"]) == (None, None)
    assert (document["lastSnapshot"]["secrets"], document["lastSnapshot"]["certificates"]) == (
        None,
        None,
    )
    assert ready(document)["message"] == f"backed up 1 of 1 key(s) into snapshot {SNAPSHOT_ID}"


def test_a_secrets_only_backup_counts_no_keys() -> None:
    document = keybackup_status.backup_finished(
        {}, backup_report(SECRET), BY_GENERATION, 100, None
    ).status

    assert document["lastRun"]["keysTotal"] is None
    assert document["lastRun"]["secretsSucceeded"] == 1
    assert document["keys"] is None
    assert document["lastSnapshot"]["keys"] == 0
    assert ready(document)["message"] == f"backed up 1 of 1 secret(s) into snapshot {SNAPSHOT_ID}"


def test_keys_that_back_an_unselected_certificate_are_counted_and_said_to_be_left_out() -> None:
    report = backup_report(STORED, left_out={ItemKind.KEY: 2})

    update = keybackup_status.backup_finished({}, report, BY_GENERATION, 100, None)

    left_out = update.status["lastRun"]["leftOut"]
    assert left_out is not None
    assert (left_out["keys"], left_out["secrets"]) == (2, None)
    assert left_out["message"].startswith(
        "left out 2 key(s) that back a certificate this KeyBackup does not back up"
    )
    assert "select the certificate in spec.certificates" in left_out["message"]
    message = ready(update.status)["message"]
    assert message == (
        f"backed up 1 of 1 key(s) into snapshot {SNAPSHOT_ID}; {left_out['message']}"
    )
    assert ready(update.status)["status"] == "True"
    assert [(e.type, e.reason, e.message) for e in update.events] == [
        ("Normal", "BackupSucceeded", message)
    ]


def test_keys_and_secrets_left_out_are_counted_per_kind() -> None:
    report = backup_report(KEY, SECRET, left_out={ItemKind.KEY: 1, ItemKind.SECRET: 3})

    left_out = keybackup_status.backup_finished({}, report, BY_GENERATION, 100, None).status[
        "lastRun"
    ]["leftOut"]

    assert left_out is not None
    assert (left_out["keys"], left_out["secrets"]) == (1, 3)
    assert left_out["message"].startswith("left out 1 key(s) and 3 secret(s) that back")


def test_each_kinds_list_is_bounded_on_its_own_and_lists_its_failures_first() -> None:
    keys = [replace(KEY, name=f"key-{i}") for i in range(3)]
    secrets = [replace(SECRET, name=f"secret-{i}") for i in range(3)]

    document = keybackup_status.backup_finished(
        {}, backup_report(*keys, *secrets, LOST_SECRET), BY_GENERATION, 2, None
    ).status

    assert [e["name"] for e in document["keys"] or []] == ["key-0", "key-1"]
    assert [e["name"] for e in document["secrets"] or []] == ["gone", "secret-0"]
    assert document["certificates"] is None


def test_a_stalled_message_says_which_lists_hold_the_failures_it_does_not_name() -> None:
    lost = [replace(LOST_SECRET, name=f"gone-{n}") for n in range(6)]
    lost_certificate = replace(LOST_SECRET, name="tls", kind=ItemKind.CERTIFICATE)

    document = keyrestore_status.restore_finished(
        {}, restore_report(replace(LOST, kind=ItemKind.KEY), *lost, lost_certificate), "kb", 1, 100
    ).status

    message = condition(document, "Stalled")["message"]
    assert "; key lost: Failed (NotFound); secret gone-0: Failed (SecretNotFound)" in message
    assert message.endswith("; 3 more in status.secrets and status.certificates")


def test_snapshot_entries_count_secrets_and_certificates_only_when_a_run_handled_some() -> None:
    base = manifest_at(SNAPSHOT_ID).summary
    mixed = replace(base, secrets=2, failed_secrets=0, certificates=0, failed_certificates=1)

    entries = snapshot_list.snapshot_entries(
        [KeptSnapshot(mixed, "at/mixed"), KeptSnapshot(base, "at/keys")]
    )

    assert entries[0] == {
        "id": SNAPSHOT_ID,
        "completionTime": timestamp(base.completion_time),
        "keys": 1,
        "failedKeys": 0,
        "secrets": 2,
        "failedSecrets": 0,
        "certificates": 0,
        "failedCertificates": 1,
        "bytes": 10,
        "newBytes": 10,
        "location": "at/mixed",
    }
    assert set(entries[1]) == {
        "id",
        "completionTime",
        "keys",
        "failedKeys",
        "bytes",
        "newBytes",
        "location",
    }


def test_progress_counts_items_of_every_kind() -> None:
    assert keybackup_status.backup_progress(3, 7).status == {
        "activeRun": {"itemsDone": 3, "itemsTotal": 7}
    }
    journal = RestoreJournal()
    journal.begin(SNAPSHOT_ID, 7)
    assert keyrestore_status.restore_progress(3, 7, journal).status == {
        "activeRun": {
            "itemsDone": 3,
            "itemsTotal": 7,
            "snapshotId": SNAPSHOT_ID,
            "itemResults": journal.encoded(),
        }
    }


RESTORED_SECRET = replace(RESTORED, name="db-password", kind=ItemKind.SECRET)
RECOVERED_CERTIFICATE = ItemOutcome(
    "api-tls", ItemResult.RECOVERED, ("c1",), kind=ItemKind.CERTIFICATE
)


def test_a_mixed_restore_counts_every_item_and_each_kind_and_lists_each_kind() -> None:
    report = restore_report(RESTORED, RESTORED_SECRET, RECOVERED_CERTIFICATE)

    update = keyrestore_status.restore_finished({}, report, "nightly", 2, 100)

    document = update.status
    counts = document["counts"]
    assert (counts["restored"], counts["recovered"], counts["skipped"], counts["failed"]) == (
        2,
        1,
        0,
        0,
    )
    assert counts["keys"] == {
        "restored": 1,
        "recovered": 0,
        "skipped": 0,
        "failed": 0,
        "wouldRestore": None,
        "wouldRecover": None,
        "wouldSkip": None,
        "wouldFail": None,
    }
    assert (counts["secrets"] or {}).get("restored") == 1
    assert (counts["certificates"] or {}).get("recovered") == 1
    assert [e["name"] for e in document["secrets"] or []] == ["db-password"]
    assert (document["certificates"] or [{}])[0]["versions"] == ["c1"]
    message = "2 restored (1 key, 1 secret), 1 recovered (1 certificate), 0 skipped, 0 failed"
    assert ready(document)["message"] == message
    assert [(e.reason, e.message) for e in update.events] == [("RestoreSucceeded", message)]


def test_a_keys_only_restore_says_what_it_always_said_and_counts_no_other_kind() -> None:
    document = keyrestore_status.restore_finished(
        {}, restore_report(RESTORED, LOST), "nightly", 2, 100
    ).status

    assert ready(document)["message"] == "1 restored, 0 recovered, 0 skipped, 1 failed"
    assert (document["counts"]["secrets"], document["counts"]["certificates"]) == (None, None)
    assert (document["secrets"], document["certificates"]) == (None, None)


def test_a_mixed_dry_run_names_the_kinds_it_would_change_and_says_nothing_was_changed() -> None:
    would_recover = ItemOutcome(
        "api-tls",
        ItemResult.WOULD_RECOVER,
        kind=ItemKind.CERTIFICATE,
        reason="CertificateSoftDeleted",
    )
    report = restore_report(
        WOULD_RESTORE, replace(WOULD_RESTORE, kind=ItemKind.SECRET), would_recover, dry_run=True
    )

    document = keyrestore_status.restore_finished({}, report, "nightly", 3, 100).status

    assert ready(document)["message"] == (
        "dry run: would restore 2 (1 key, 1 secret), recover 1 (1 certificate), skip 0, "
        "fail 0; nothing was changed"
    )
    assert (document["counts"]["certificates"] or {}).get("wouldRecover") == 1
    assert (document["counts"]["certificates"] or {}).get("recovered", 0) is None


def test_a_restore_of_secrets_alone_names_their_kind() -> None:
    document = keyrestore_status.restore_finished(
        {}, restore_report(RESTORED_SECRET), "nightly", 2, 100
    ).status

    assert ready(document)["message"] == "1 restored (1 secret), 0 recovered, 0 skipped, 0 failed"
    assert document["keys"] is None
    assert document["counts"]["keys"] is None


# --- incremental runs ------------------------------------------------------------------

PREVIOUS_ID = "20240430-120000-beef"
OLDEST_ID = "20240429-060000-cafe"
CHANGED = replace(KEY, name="changed")
DUE = replace(KEY, name="due", freshness=Freshness.REFRESHED)
CARRIED = replace(KEY, name="carried", freshness=Freshness.UNCHANGED, stored_in=PREVIOUS_ID)
CARRIED_LONGEST = replace(CARRIED, name="carried-longest", stored_in=OLDEST_ID)


def test_an_incremental_run_counts_what_it_backed_up_refreshed_and_carried_forward() -> None:
    report = replace(
        backup_report(CHANGED, DUE, CARRIED, CARRIED_LONGEST, LOST), compared_with=PREVIOUS_ID
    )

    update = keybackup_status.backup_finished({}, report, BY_GENERATION, 100, None)

    last_run = update.status["lastRun"]
    assert {field: last_run[field] for field in ("backedUp", "refreshed", "unchanged")} == {
        "backedUp": 1,
        "refreshed": 1,
        "unchanged": 2,
    }
    assert (last_run["fullRun"], last_run["comparedWith"]) == (None, PREVIOUS_ID)
    assert (last_run["bytes"], last_run["newBytes"]) == (400, 200)
    assert update.status["lastSnapshot"]["oldestArtifactTime"] == "2024-04-29T06:00:00Z"
    message = (
        f"backed up 1 and refreshed 1 of 5 item(s) into snapshot {SNAPSHOT_ID}; "
        f"2 unchanged since snapshot {PREVIOUS_ID}, 1 failed"
    )
    assert ready(update.status)["message"] == message
    assert [(e.reason, e.message) for e in update.events] == [("BackupPartiallyFailed", message)]


def test_an_incremental_run_of_a_large_vault_says_its_counts_with_thousands_separators() -> None:
    changed = [replace(CHANGED, name=f"changed-{n}") for n in range(100)]
    carried = [replace(CARRIED, name=f"carried-{n}") for n in range(9_900)]
    report = replace(backup_report(*changed, *carried), compared_with=PREVIOUS_ID)

    update = keybackup_status.backup_finished({}, report, BY_GENERATION, 100, None)

    assert ready(update.status)["message"] == (
        f"backed up 100 and refreshed 0 of 10,000 item(s) into snapshot {SNAPSHOT_ID}; "
        f"9,900 unchanged since snapshot {PREVIOUS_ID}"
    )


def test_a_full_run_says_why_and_removes_what_an_incremental_one_compared_with() -> None:
    report = replace(backup_report(STORED), full_reason="asked for by backup-now")

    update = keybackup_status.backup_finished({}, report, BY_GENERATION, 100, None)

    assert update.status["lastRun"]["fullRun"] == "asked for by backup-now"
    assert update.status["lastRun"]["comparedWith"] is None
    message = (
        f"backed up 1 of 1 key(s) into snapshot {SNAPSHOT_ID} "
        "in a full run (asked for by backup-now)"
    )
    assert ready(update.status)["message"] == message
    assert [(e.reason, e.message) for e in update.events] == [("BackupSucceeded", message)]


def test_a_run_that_kept_no_item_leaves_the_last_snapshots_oldest_artifact_as_it_was() -> None:
    report = replace(backup_report(LOST), compared_with=PREVIOUS_ID)

    document = keybackup_status.backup_finished({}, report, BY_GENERATION, 100, None).status

    assert "lastSnapshot" not in document
    assert ready(document)["message"] == (
        f"backed up 0 and refreshed 0 of 1 item(s) into snapshot {SNAPSHOT_ID} (not kept); "
        f"0 unchanged since snapshot {PREVIOUS_ID}, 1 failed"
    )


def test_a_snapshot_kept_only_for_newer_ones_says_which_hold_it() -> None:
    summary = manifest_at(OLDEST_ID).summary

    held, free = snapshot_list.snapshot_entries(
        [
            KeptSnapshot(summary, "at/held", held_by=(SNAPSHOT_ID, PREVIOUS_ID)),
            KeptSnapshot(summary, "at/free"),
        ]
    )

    assert held["heldBy"] == [SNAPSHOT_ID, PREVIOUS_ID]
    assert "heldBy" not in free


def test_each_kept_snapshot_says_which_rules_of_retention_keep_it() -> None:
    summary = manifest_at(OLDEST_ID).summary

    kept, held = snapshot_list.snapshot_entries(
        [
            KeptSnapshot(summary, "at/kept", kept_for=(KeptFor.KEEP_DAILY, KeptFor.KEEP_MONTHLY)),
            KeptSnapshot(summary, "at/held", held_by=(SNAPSHOT_ID,)),
        ]
    )

    assert kept["keptFor"] == ["keepDaily", "keepMonthly"]
    assert "keptFor" not in held


def test_a_snapshot_summary_from_before_incremental_runs_lists_no_new_bytes() -> None:
    summary = replace(manifest_at(OLDEST_ID).summary, new_bytes=None)

    (entry,) = snapshot_list.snapshot_entries([KeptSnapshot(summary, "at/old")])

    assert "newBytes" not in entry
    assert entry["bytes"] == summary.total_bytes
