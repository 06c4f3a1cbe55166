"""What carries verifications and copies between spec, status, Events and metrics: when a
verification is due, how its findings and a copy's state are written and read back, the
series a copy has, and how spec.copies and spec.verify parse."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kvbackup.adapters.metrics import OperatorMetrics
from kvbackup.api import VERIFY_NOW_ANNOTATION, keybackup
from kvbackup.api.conditions import COPIES_COMPLETE, timestamp
from kvbackup.api.fields import BlobContainer
from kvbackup.api.keybackup import (
    COPIES_MAX,
    PRIMARY,
    BlobDestination,
    KeyBackupSpec,
    Retention,
    SecretDestination,
)
from kvbackup.api.kinds import ItemKind, ItemRef
from kvbackup.api.statuses import ConditionDocument
from kvbackup.errors import InvalidSpecError, TransientError
from kvbackup.presentation.copies_status import copy_entries, with_copies_condition
from kvbackup.presentation.keybackup_status import read_keybackup_status
from kvbackup.presentation.status import Event
from kvbackup.presentation.verification_status import (
    LISTED_IN_STATUS,
    read_verification,
    verification_failed,
    verification_finished,
)
from kvbackup.services.copies import CopyReport
from kvbackup.services.readings import KeyBackupReadings
from kvbackup.services.retry_policy import Verdict
from kvbackup.services.triggers import (
    RunRequest,
    VerificationPlan,
    VerificationView,
    plan_verification,
)
from kvbackup.services.verification import (
    CopyCheck,
    Finding,
    Problem,
    UnprotectedItem,
    Unprotection,
    VerificationReport,
)
from tests.unit.fakes import MOMENT, NAMESPACE

VAULT = "https://x.vault.azure.net"
ACCOUNT = "https://acct.blob.core.windows.net"
CREATED = MOMENT - datetime.timedelta(days=30)
HOUR = datetime.timedelta(hours=1)


def backup(**spec: Any) -> dict[str, Any]:
    return {"vaultUrl": VAULT, "keys": {"names": ["k"]}} | spec


def blob(container: str = "backups", prefix: str = "kv", account: str = ACCOUNT) -> dict[str, Any]:
    return {"accountUrl": account, "container": container, "prefix": prefix}


def refusal(spec: dict[str, Any], **options: Any) -> str:
    with pytest.raises(InvalidSpecError) as caught:
        keybackup.parse_spec(spec, **options)
    return caught.value.message


# --- when a verification is due ---------------------------------------------------------


def meta(trigger: str | None = None, *, created: datetime.datetime = CREATED) -> dict[str, Any]:
    annotations = {VERIFY_NOW_ANNOTATION: trigger} if trigger is not None else {}
    return {"generation": 4, "creationTimestamp": timestamp(created), "annotations": annotations}


def planned(verification: dict[str, Any], meta: dict[str, Any], **spec: Any) -> VerificationPlan:
    return plan_verification(
        keybackup.parse_spec(backup(**spec)),
        read_keybackup_status({"verification": verification}),
        meta,
        MOMENT,
    )


class TestWhenAVerificationIsDue:
    def test_a_new_verify_now_value_asks_for_one_without_a_schedule(self) -> None:
        plan = planned({"handledTrigger": "first"}, meta("second"))

        assert plan == VerificationPlan(RunRequest(4, trigger="second"), None)

    def test_a_verify_now_value_already_handled_asks_for_nothing(self) -> None:
        assert planned({"handledTrigger": "first"}, meta("first")) == VerificationPlan(None, None)

    def test_without_spec_verify_or_a_trigger_nothing_is_due_nor_scheduled(self) -> None:
        assert planned({}, meta()) == VerificationPlan(None, None)

    def test_a_spec_that_does_not_parse_still_honours_a_verify_now_value(self) -> None:
        plan = plan_verification(None, read_keybackup_status({}), meta("now"), MOMENT)

        assert plan == VerificationPlan(RunRequest(4, trigger="now"), None)

    def test_slots_missed_collapse_into_one_verification_of_the_latest_slot(self) -> None:
        last = MOMENT - datetime.timedelta(hours=2, minutes=30)

        plan = planned({"slot": timestamp(last)}, meta(), verify="@every 1h")

        assert plan.request == RunRequest(4, slot=last + 2 * HOUR)

    def test_a_slot_served_within_the_hour_is_not_due_and_the_next_is_an_hour_after_it(
        self,
    ) -> None:
        last = MOMENT - datetime.timedelta(minutes=20)

        plan = planned({"slot": timestamp(last)}, meta(), verify="@every 1h")

        assert plan == VerificationPlan(None, last + HOUR)
        assert plan.seconds_to_next_slot(MOMENT) == 40 * 60

    def test_suspended_backups_do_not_stop_scheduled_verifications(self) -> None:
        last = MOMENT - datetime.timedelta(hours=2)

        plan = planned({"slot": timestamp(last)}, meta(), verify="@every 1h", suspend=True)

        assert plan.request is not None
        assert plan.request.slot == MOMENT

    def test_a_slot_recorded_more_than_a_day_ahead_is_not_believed(self) -> None:
        created = MOMENT - datetime.timedelta(minutes=90)
        forged = MOMENT + datetime.timedelta(days=30)

        plan = planned({"slot": timestamp(forged)}, meta(created=created), verify="@every 1h")

        # Counted from the object's creation instead, so verifications go on.
        assert plan == VerificationPlan(RunRequest(4, slot=created + HOUR), created + HOUR)

    def test_a_slot_recorded_a_little_ahead_by_another_replicas_clock_is_believed(self) -> None:
        ahead = MOMENT + datetime.timedelta(minutes=10)

        plan = planned({"slot": timestamp(ahead)}, meta(), verify="@every 1h")

        assert plan == VerificationPlan(None, ahead + HOUR)

    def test_the_slot_a_finished_verification_records_is_not_due_again(self) -> None:
        last = MOMENT - datetime.timedelta(hours=2)
        due = planned({"slot": timestamp(last)}, meta(), verify="@every 1h")
        assert due.request is not None
        written = verification_finished(VerificationView(), passed(), due.request, None)

        again = planned(dict(written.status["verification"]), meta(), verify="@every 1h")

        assert again.request is None


# --- status.verification ----------------------------------------------------------------

START = MOMENT - datetime.timedelta(minutes=3)
EARLIER = MOMENT - datetime.timedelta(days=2)
CHECKS = (CopyCheck("primary", 2, 5, 4096), CopyCheck("offsite", 2, 5, 4096))


def report(
    findings: int = 0, unprotected: int = 0, *, start: datetime.datetime = START
) -> VerificationReport:
    return VerificationReport(
        start_time=start,
        completion_time=MOMENT,
        checks=CHECKS,
        findings=tuple(
            Finding(
                "offsite",
                "20240501-020000-aaaa",
                Problem.CHECKSUM_MISMATCH,
                f"key key-{index:02d} does not match its manifest",
                ItemRef(ItemKind.KEY, f"key-{index:02d}"),
            )
            for index in range(findings)
        ),
        compared_with="20240501-020000-aaaa",
        unprotected=tuple(
            UnprotectedItem(
                ItemRef(ItemKind.SECRET, f"new-{index:02d}"), Unprotection.NOT_IN_SNAPSHOT
            )
            for index in range(unprotected)
        ),
    )


def passed() -> VerificationReport:
    return report()


SLOT_REQUEST = RunRequest(4, slot=MOMENT - HOUR)


class TestAVerificationReadsBack:
    def test_what_a_verification_wrote_reads_back(self) -> None:
        seen = VerificationView(unprotected_items=2, unprotected_since=EARLIER)
        written = verification_finished(seen, report(1, 2), RunRequest(4, "now", MOMENT), None)

        assert read_verification(written.status["verification"]) == VerificationView(
            slot=MOMENT,
            handled_trigger="now",
            completion_time=MOMENT,
            failing=True,
            unprotected_items=2,
            unprotected_since=EARLIER,
        )

    @pytest.mark.parametrize(
        "document",
        [
            pytest.param("Passed", id="not-an-object"),
            pytest.param(["result", "Passed"], id="a-list"),
            pytest.param({"result": "Maybe"}, id="unknown-result"),
            pytest.param({"result": ["Failed"]}, id="result-list"),
            pytest.param({"handledTrigger": 7}, id="trigger-number"),
            pytest.param({"unprotectedItems": True}, id="count-bool"),
            pytest.param({"unprotectedItems": -1}, id="count-negative"),
            pytest.param({"unprotectedItems": "3"}, id="count-text"),
            pytest.param({"unprotectedItems": 2.5}, id="count-float"),
            pytest.param({"slot": "an hour ago"}, id="slot-words"),
            pytest.param({"completionTime": "2024-13-01T00:00:00Z"}, id="month-13"),
            pytest.param({"unprotectedSince": 1714564800}, id="since-number"),
            pytest.param({"slot": "2024-05-01T12:00:00+02:00"}, id="slot-with-offset"),
        ],
    )
    def test_a_hostile_document_reads_back_as_absent(self, document: Any) -> None:
        assert read_verification(document) == VerificationView()

    def test_a_keybackup_status_reads_its_verification_through_the_same_reader(self) -> None:
        status = read_keybackup_status(
            {"verification": {"result": "Passed", "unprotectedItems": 0}}
        )

        assert status.verification == VerificationView(failing=False, unprotected_items=0)


class TestWhatAVerificationFoundIsTold:
    def test_a_verification_without_findings_passed_and_says_what_it_read(self) -> None:
        written = verification_finished(VerificationView(), passed(), SLOT_REQUEST, MOMENT + HOUR)

        document = written.status["verification"]
        assert document["result"] == "Passed"
        assert (document["findingsTotal"], document["findings"]) == (0, None)
        assert document["slot"] == timestamp(MOMENT - HOUR)
        assert document["nextTime"] == timestamp(MOMENT + HOUR)
        assert "handledTrigger" not in document
        assert document["copies"] == [
            {"name": "primary", "snapshots": 2, "artifacts": 5, "bytes": 4096},
            {"name": "offsite", "snapshots": 2, "artifacts": 5, "bytes": 4096},
        ]
        assert written.events == (
            Event(
                "Normal",
                "VerificationPassed",
                "read back 4 snapshot(s) and 10 backup(s) in 2 copy(ies): every backup matches "
                "its manifest",
            ),
        )

    def test_findings_fail_it_and_status_lists_a_bounded_number_of_them_with_the_total(
        self,
    ) -> None:
        written = verification_finished(
            VerificationView(), report(LISTED_IN_STATUS + 5), SLOT_REQUEST, None
        )

        document = written.status["verification"]
        assert document["result"] == "Failed"
        assert document["findingsTotal"] == LISTED_IN_STATUS + 5
        findings = document["findings"]
        assert findings is not None
        assert len(findings) == LISTED_IN_STATUS
        assert findings[0] == {
            "copy": "offsite",
            "snapshotId": "20240501-020000-aaaa",
            "kind": "key",
            "name": "key-00",
            "problem": "ChecksumMismatch",
            "message": "key key-00 does not match its manifest",
        }
        [event] = written.events
        assert (event.type, event.reason) == ("Warning", "VerificationFailed")
        assert "25 problem(s), the first in copy offsite" in event.message

    def test_unprotected_items_are_counted_listed_within_bounds_and_told_in_an_event(
        self,
    ) -> None:
        written = verification_finished(
            VerificationView(), report(0, LISTED_IN_STATUS + 1), SLOT_REQUEST, None
        )

        document = written.status["verification"]
        # Items not yet protected are the next run's work, not a fault of what is stored.
        assert document["result"] == "Passed"
        assert document["unprotectedItems"] == LISTED_IN_STATUS + 1
        unprotected = document["unprotected"]
        assert unprotected is not None
        assert len(unprotected) == LISTED_IN_STATUS
        assert unprotected[0] == {"kind": "secret", "name": "new-00", "reason": "NotInSnapshot"}
        assert [event.reason for event in written.events] == [
            "VerificationPassed",
            "UnprotectedItems",
        ]
        told = written.events[1].message
        assert told.startswith("21 item(s) of the vault are not in snapshot 20240501-020000-aaaa")
        assert "secret new-02 (NotInSnapshot)" in told
        assert "new-03" not in told
        assert told.endswith("and 18 more (status.verification.unprotected)")

    def test_unprotected_since_is_kept_while_items_stay_unprotected(self) -> None:
        seen = VerificationView(unprotected_items=3, unprotected_since=EARLIER)

        written = verification_finished(seen, report(0, 1), SLOT_REQUEST, None)

        assert written.status["verification"]["unprotectedSince"] == timestamp(EARLIER)

    def test_unprotected_since_starts_with_this_verification_after_one_that_found_none(
        self,
    ) -> None:
        # A since left over from before the pause does not count.
        seen = VerificationView(unprotected_items=0, unprotected_since=EARLIER)

        written = verification_finished(seen, report(0, 1), SLOT_REQUEST, None)

        assert written.status["verification"]["unprotectedSince"] == timestamp(START)

    def test_unprotected_since_is_removed_once_none_are_unprotected(self) -> None:
        seen = VerificationView(unprotected_items=3, unprotected_since=EARLIER)

        written = verification_finished(seen, report(), SLOT_REQUEST, None)

        document = written.status["verification"]
        assert (document["unprotectedItems"], document["unprotectedSince"]) == (0, None)
        assert [event.reason for event in written.events] == ["VerificationPassed"]


class TestAVerificationThatCouldNotFinish:
    def test_a_final_verdict_handles_the_request(self) -> None:
        verdict = Verdict(InvalidSpecError("spec.verify is not a schedule"), None)

        written = verification_failed(verdict, RunRequest(4, "now", MOMENT - HOUR), MOMENT)

        document = written.status["verification"]
        assert (document["result"], document["reason"]) == ("Error", "InvalidSpec")
        assert (document["handledTrigger"], document["slot"]) == ("now", timestamp(MOMENT - HOUR))
        assert written.events == (
            Event("Warning", "VerificationError", "spec.verify is not a schedule"),
        )

    def test_a_verdict_to_retry_leaves_the_request_to_be_made_again(self) -> None:
        verdict = Verdict(TransientError("blob storage did not answer"), 20.0)

        written = verification_failed(verdict, RunRequest(4, "now", MOMENT - HOUR), MOMENT)

        document = written.status["verification"]
        assert (document["result"], document["reason"]) == ("Error", "Unavailable")
        assert document["message"] == "blob storage did not answer (retrying in 20s)"
        assert "handledTrigger" not in document
        assert "slot" not in document
        seen = read_verification(document)
        assert (seen.handled_trigger, seen.slot, seen.failing) == (None, None, None)


# --- status.copies and CopiesComplete ---------------------------------------------------

SNAPSHOT = "20240501-120000-abcd"


def complete(name: str) -> CopyReport:
    return CopyReport(name, SNAPSHOT, f"https://{name}/kv", written=2, carried=3)


def failed(name: str) -> CopyReport:
    return CopyReport(name, SNAPSHOT, "", "ContainerNotFound", "container backups is gone")


class TestCopyEntries:
    def test_a_complete_copy_was_last_complete_now(self) -> None:
        [entry] = copy_entries({}, [complete("offsite")], MOMENT) or []

        assert entry["phase"] == "Complete"
        assert entry["lastCompleteTime"] == timestamp(MOMENT)
        assert (entry["written"], entry["carried"], entry["reason"]) == (2, 3, None)

    def test_a_failed_copy_keeps_when_it_was_last_complete(self) -> None:
        existing = {"copies": [{"name": "offsite", "lastCompleteTime": timestamp(EARLIER)}]}

        [entry] = copy_entries(existing, [failed("offsite")], MOMENT) or []

        assert entry["phase"] == "Failed"
        assert (entry["reason"], entry["message"]) == (
            "ContainerNotFound",
            "container backups is gone",
        )
        assert entry["lastCompleteTime"] == timestamp(EARLIER)

    @pytest.mark.parametrize(
        "existing",
        [
            pytest.param({"copies": [{"name": "offsite", "lastCompleteTime": "last week"}]}),
            pytest.param({"copies": [{"name": "offsite", "lastCompleteTime": 1714564800}]}),
            pytest.param(
                {"copies": [{"name": "other", "lastCompleteTime": "2024-04-29T12:00:00Z"}]}
            ),
            pytest.param({"copies": "offsite"}),
            pytest.param({"copies": ["offsite"]}),
        ],
    )
    def test_a_failed_copy_ignores_a_last_complete_time_that_does_not_read_back_as_its_own(
        self, existing: dict[str, Any]
    ) -> None:
        [entry] = copy_entries(existing, [failed("offsite")], MOMENT) or []

        assert entry["lastCompleteTime"] is None

    def test_without_copies_the_entries_are_removed(self) -> None:
        existing = {"copies": [{"name": "offsite", "lastCompleteTime": timestamp(EARLIER)}]}

        assert copy_entries(existing, [], MOMENT) is None


OTHER_CONDITION: ConditionDocument = {
    "type": "Ready",
    "status": "True",
    "reason": "Succeeded",
    "message": "",
    "observedGeneration": 3,
    "lastTransitionTime": timestamp(EARLIER),
}


def copies_condition(conditions: list[ConditionDocument]) -> ConditionDocument | None:
    return next((c for c in conditions if c["type"] == COPIES_COMPLETE), None)


class TestCopiesCompleteCondition:
    def test_copies_that_all_hold_the_snapshot_are_complete(self) -> None:
        conditions = with_copies_condition(
            [OTHER_CONDITION], [complete("offsite"), complete("vaulted")], 4, MOMENT
        )

        condition = copies_condition(conditions)
        assert condition is not None
        assert (condition["status"], condition["reason"]) == ("True", "Complete")
        assert condition["observedGeneration"] == 4
        assert "offsite" in condition["message"]
        assert "vaulted" in condition["message"]
        assert OTHER_CONDITION in conditions

    def test_one_failed_copy_makes_it_false_naming_that_copy_and_why(self) -> None:
        conditions = with_copies_condition(
            [OTHER_CONDITION], [complete("offsite"), failed("vaulted")], 4, MOMENT
        )

        condition = copies_condition(conditions)
        assert condition is not None
        assert (condition["status"], condition["reason"]) == ("False", "CopyFailed")
        assert condition["message"] == (
            f"copy vaulted lacks snapshot {SNAPSHOT}: container backups is gone"
        )

    def test_a_keybackup_without_copies_has_no_such_condition(self) -> None:
        before = with_copies_condition([OTHER_CONDITION], [failed("offsite")], 4, MOMENT)

        conditions = with_copies_condition(before, [], 5, MOMENT)

        assert conditions == [OTHER_CONDITION]


def copy_entry(name: Any, phase: Any = "Complete") -> dict[str, Any]:
    return {"name": name, "phase": phase}


class TestCopiesReadBack:
    def test_each_copys_phase_reads_back_as_whether_it_is_failing(self) -> None:
        status = {"copies": [copy_entry("offsite"), copy_entry("vaulted", "Failed")]}

        assert read_keybackup_status(status).copies_failing == {"offsite": False, "vaulted": True}

    @pytest.mark.parametrize(
        "entry",
        [
            pytest.param(copy_entry("Offsite"), id="uppercase"),
            pytest.param(copy_entry("off_site"), id="underscore"),
            pytest.param(copy_entry("a" * 64), id="too-long"),
            pytest.param(copy_entry(7), id="number"),
            pytest.param(copy_entry(None), id="absent"),
            pytest.param(copy_entry("offsite", "Running"), id="unknown-phase"),
            pytest.param(copy_entry("offsite", None), id="no-phase"),
            pytest.param("offsite", id="not-an-object"),
        ],
    )
    def test_an_entry_without_a_copys_name_or_phase_is_ignored(self, entry: Any) -> None:
        status = {"copies": [entry, copy_entry("vaulted", "Failed")]}

        assert read_keybackup_status(status).copies_failing == {"vaulted": True}

    def test_copies_that_are_not_a_list_read_as_none(self) -> None:
        assert read_keybackup_status({"copies": {"offsite": "Failed"}}).copies_failing == {}

    def test_at_most_as_many_copies_as_a_spec_may_name_are_read(self) -> None:
        names = [f"copy-{index}" for index in range(COPIES_MAX + 5)]
        status = {"copies": ["junk", *(copy_entry(name) for name in names)]}

        failing = read_keybackup_status(status).copies_failing

        assert list(failing) == names[:COPIES_MAX]


# --- a copy's series --------------------------------------------------------------------

COPY_FAILING = "kvbackup_keybackup_copy_failing"


def copy_failing(metrics: OperatorMetrics, copy: str, name: str = "nightly") -> float | None:
    return metrics.registry.get_sample_value(
        COPY_FAILING, {"namespace": NAMESPACE, "name": name, "copy": copy}
    )


class TestACopysSeries:
    def test_each_copy_has_a_series_of_whether_it_is_failing(self) -> None:
        metrics = OperatorMetrics()

        metrics.observe_keybackup(
            NAMESPACE,
            "nightly",
            KeyBackupReadings(copies_failing={"offsite": True, "vaulted": False}),
        )

        assert (copy_failing(metrics, "offsite"), copy_failing(metrics, "vaulted")) == (1.0, 0.0)

    def test_a_copy_gone_from_the_readings_loses_its_series_and_the_others_keep_theirs(
        self,
    ) -> None:
        metrics = OperatorMetrics()
        metrics.observe_keybackup(
            NAMESPACE,
            "nightly",
            KeyBackupReadings(copies_failing={"offsite": True, "vaulted": True}),
        )

        metrics.observe_keybackup(
            NAMESPACE, "nightly", KeyBackupReadings(copies_failing={"vaulted": False})
        )

        assert (copy_failing(metrics, "offsite"), copy_failing(metrics, "vaulted")) == (None, 0.0)

    def test_forgetting_a_keybackup_removes_its_copies_series_only(self) -> None:
        metrics = OperatorMetrics()
        both = KeyBackupReadings(copies_failing={"offsite": True})
        metrics.observe_keybackup(NAMESPACE, "nightly", both)
        metrics.observe_keybackup(NAMESPACE, "hourly", both)

        metrics.forget_keybackup(NAMESPACE, "nightly")

        assert copy_failing(metrics, "offsite") is None
        assert copy_failing(metrics, "offsite", name="hourly") == 1.0

    def test_a_keybackup_observed_again_after_being_forgotten_gets_its_series_back(self) -> None:
        metrics = OperatorMetrics()
        readings = KeyBackupReadings(copies_failing={"offsite": True})
        metrics.observe_keybackup(NAMESPACE, "nightly", readings)
        metrics.forget_keybackup(NAMESPACE, "nightly")

        metrics.observe_keybackup(NAMESPACE, "nightly", readings)

        assert copy_failing(metrics, "offsite") == 1.0


# --- spec.copies and spec.verify --------------------------------------------------------


def copy(name: str = "offsite", **fields: Any) -> dict[str, Any]:
    return {"name": name, "blob": blob(container="offsite")} | fields


class TestSpecCopies:
    def test_a_copy_without_retention_keeps_what_the_spec_keeps(self) -> None:
        spec = keybackup.parse_spec(backup(retention={"keepLast": 7}, copies=[copy()]))

        [offsite] = spec.copies
        assert offsite.name == "offsite"
        assert offsite.destination == BlobDestination(BlobContainer(ACCOUNT, "offsite"), "kv")
        assert offsite.retention == spec.retention == Retention(keep_last=7)

    def test_a_copy_with_its_own_retention_keeps_by_it(self) -> None:
        spec = keybackup.parse_spec(
            backup(
                retention={"keepLast": 7},
                timeZone="Europe/Paris",
                copies=[copy(retention={"keepDaily": 30, "maxAge": "90d"})],
            )
        )

        [offsite] = spec.copies
        assert offsite.retention.keep_last is None
        assert offsite.retention.tiers == {"keepDaily": 30}
        assert offsite.retention.max_age == datetime.timedelta(days=90)
        # Its calendar is the KeyBackup's, as spec.retention's is.
        assert offsite.retention.time_zone == spec.retention.time_zone

    def test_destinations_list_the_primary_first_then_the_copies_in_order(self) -> None:
        spec = keybackup.parse_spec(
            backup(copies=[copy("vaulted"), {"name": "offsite", "blob": blob("other")}])
        )

        assert list(spec.destinations()) == [PRIMARY, "vaulted", "offsite"]
        assert spec.destinations()[PRIMARY] == SecretDestination()

    def test_a_spec_without_copies_has_its_destination_alone(self) -> None:
        spec = keybackup.parse_spec(backup())

        assert spec.copies == ()
        assert spec.destinations() == {PRIMARY: SecretDestination()}

    def test_the_destinations_are_read_from_a_spec_whose_other_fields_are_invalid(self) -> None:
        # Enough to find or delete the snapshots of a KeyBackup that no longer parses.
        broken = {
            "vaultUrl": "not a url",
            "schedule": "whenever",
            "destination": {"blob": blob()},
            "copies": [copy()],
        }

        destinations = keybackup.parse_destinations(broken)

        assert destinations == {
            PRIMARY: BlobDestination(BlobContainer(ACCOUNT, "backups"), "kv"),
            "offsite": BlobDestination(BlobContainer(ACCOUNT, "offsite"), "kv"),
        }
        with pytest.raises(InvalidSpecError):
            keybackup.parse_spec(broken)

    @pytest.mark.parametrize(
        ("copies", "destination", "field"),
        [
            pytest.param([copy("primary")], None, "spec.copies[0].name", id="named-primary"),
            pytest.param(
                [copy(), {"name": "offsite", "blob": blob("other")}],
                None,
                "spec.copies[1].name",
                id="duplicate-name",
            ),
            pytest.param([copy("Offsite")], None, "spec.copies[0].name", id="not-a-dns-label"),
            pytest.param([{"blob": blob()}], None, "spec.copies[0].name", id="no-name"),
            pytest.param([{"name": "offsite"}], None, "spec.copies[0].blob", id="no-blob"),
            pytest.param(
                [{"name": "offsite", "secret": {}}], None, "spec.copies[0].blob", id="a-secret"
            ),
            pytest.param(
                [copy(), {"name": "vaulted", "blob": blob(container="offsite")}],
                None,
                "spec.copies[1].blob",
                id="same-place-as-a-copy",
            ),
            pytest.param(
                [
                    copy(),
                    {
                        "name": "vaulted",
                        "blob": blob("offsite", "kv/", "https://Acct.Blob.core.windows.net/"),
                    },
                ],
                None,
                "spec.copies[1].blob",
                id="same-place-written-otherwise",
            ),
            pytest.param(
                [copy(blob=blob())],
                {"blob": blob()},
                "spec.copies[0].blob",
                id="same-place-as-the-destination",
            ),
            pytest.param(
                [copy(blob={"container": "offsite"})],
                None,
                "spec.copies[0].blob.accountUrl",
                id="no-account",
            ),
            pytest.param(
                [copy(retention={"keepLast": 0})],
                None,
                "spec.copies[0].retention.keepLast",
                id="own-retention",
            ),
            pytest.param(
                [copy(retention={"maxAge": "soon"})],
                None,
                "spec.copies[0].retention.maxAge",
                id="own-max-age",
            ),
            pytest.param(
                [copy(retention=[7])], None, "spec.copies[0].retention", id="retention-list"
            ),
            pytest.param(["offsite"], None, "spec.copies[0]", id="not-an-object"),
            pytest.param({"offsite": {}}, None, "spec.copies", id="not-a-list"),
        ],
    )
    def test_a_bad_copy_is_refused_naming_its_field(
        self, copies: Any, destination: dict[str, Any] | None, field: str
    ) -> None:
        spec = backup(copies=copies) | ({"destination": destination} if destination else {})

        assert refusal(spec).startswith(field + " ")

    def test_the_blob_destinations_place_is_named_primary_when_a_copy_takes_it(self) -> None:
        message = refusal(backup(destination={"blob": blob()}, copies=[copy(blob=blob())]))

        assert "as copy 'primary'" in message

    def test_more_copies_than_allowed_are_refused(self) -> None:
        copies = [
            copy(f"copy-{index}", blob=blob(f"box-{index}")) for index in range(COPIES_MAX + 1)
        ]

        message = refusal(backup(copies=copies))

        assert message.startswith("spec.copies ")
        assert f"at most {COPIES_MAX}" in message

    def test_as_many_copies_as_allowed_parse(self) -> None:
        copies = [copy(f"copy-{index}", blob=blob(f"box-{index}")) for index in range(COPIES_MAX)]

        spec: KeyBackupSpec = keybackup.parse_spec(backup(copies=copies))

        assert len(spec.copies) == COPIES_MAX


class TestSpecVerify:
    def test_an_every_schedule_parses_its_interval(self) -> None:
        spec = keybackup.parse_spec(backup(verify="@every 1h"))

        assert spec.verify is not None
        assert spec.verify.interval == HOUR
        # Verifying follows its own schedule, not that of the backups.
        assert spec.schedule is None

    def test_a_spec_without_verify_is_never_verified_on_a_schedule(self) -> None:
        assert keybackup.parse_spec(backup()).verify is None

    @pytest.mark.parametrize("verify", ["0 25 * * *", "0 2 * *", "@every soon", "@every 0s"])
    def test_a_verify_that_is_no_schedule_is_refused_naming_spec_verify(self, verify: str) -> None:
        assert refusal(backup(verify=verify)).startswith("spec.verify ")

    def test_a_verify_more_frequent_than_the_cluster_allows_is_refused(self) -> None:
        message = refusal(
            backup(verify="@every 5m"), min_schedule_interval=datetime.timedelta(minutes=15)
        )

        assert message.startswith("spec.verify '@every 5m' runs as often as every 5m")

    def test_a_verify_as_frequent_as_the_cluster_allows_parses(self) -> None:
        spec = keybackup.parse_spec(
            backup(verify="@every 15m"), min_schedule_interval=datetime.timedelta(minutes=15)
        )

        assert spec.verify is not None
