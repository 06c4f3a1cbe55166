"""``status.verification`` of a KeyBackup: what a verification found, its Events, and the
reader of what the operator reads back of it (when it last ran, what it found)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from kvbackup.api.conditions import timestamp
from kvbackup.api.statuses import KeyBackupStatus, VerificationDocument
from kvbackup.presentation.status import Event, Update
from kvbackup.services.retry_policy import Verdict
from kvbackup.services.triggers import RunRequest, VerificationView, parse_time
from kvbackup.services.verification import VerificationReport

#: Most findings and unprotected items status names; the counts say how many in all.
LISTED_IN_STATUS = 20
#: Most of them an Event names.
NAMED_IN_EVENT = 3

PASSED = "Passed"
FAILED = "Failed"
#: The verification itself could not finish (storage or vault unreachable, refused).
ERROR = "Error"


def read_verification(document: Any) -> VerificationView:
    """``status.verification`` as far as it reads back: a field of the wrong type reads as
    absent, as for the rest of the status."""
    if not isinstance(document, Mapping):
        return VerificationView()
    result, trigger, unprotected = (
        document.get(key) for key in ("result", "handledTrigger", "unprotectedItems")
    )
    return VerificationView(
        slot=parse_time(document.get("slot")),
        handled_trigger=trigger if isinstance(trigger, str) else None,
        completion_time=parse_time(document.get("completionTime")),
        failing=result == FAILED if result in (PASSED, FAILED) else None,
        unprotected_items=(
            unprotected
            if isinstance(unprotected, int)
            and not isinstance(unprotected, bool)
            and unprotected >= 0
            else None
        ),
        unprotected_since=parse_time(document.get("unprotectedSince")),
    )


def _handled(request: RunRequest) -> VerificationDocument:
    handled: VerificationDocument = {}
    if request.trigger is not None:
        handled["handledTrigger"] = request.trigger
    if request.slot is not None:
        handled["slot"] = timestamp(request.slot)
    return handled


def verification_finished(
    seen: VerificationView,
    report: VerificationReport,
    request: RunRequest,
    next_slot: datetime.datetime | None,
) -> Update[KeyBackupStatus]:
    """What a verification found, told in status and Events."""
    findings, unprotected = report.findings, report.unprotected
    since = None
    if unprotected:
        since = seen.unprotected_since if seen.unprotected_items else None
        since = since or report.start_time
    document: VerificationDocument = {
        **_handled(request),
        "startTime": timestamp(report.start_time),
        "completionTime": timestamp(report.completion_time),
        "result": PASSED if report.passed else FAILED,
        "reason": None,
        "message": _summary(report),
        "copies": [
            {
                "name": check.copy,
                "snapshots": check.snapshots,
                "artifacts": check.artifacts,
                "bytes": check.bytes,
            }
            for check in report.checks
        ],
        "findingsTotal": len(findings),
        "findings": [
            {
                "copy": finding.copy,
                "snapshotId": finding.snapshot_id or None,
                "kind": str(finding.item.kind) if finding.item else None,
                "name": finding.item.name if finding.item else None,
                "problem": str(finding.problem),
                "message": finding.message,
            }
            for finding in findings[:LISTED_IN_STATUS]
        ]
        or None,
        "comparedWith": report.compared_with or None,
        "unprotectedItems": len(unprotected),
        "unprotected": [
            {"kind": str(u.item.kind), "name": u.item.name, "reason": str(u.why)}
            for u in unprotected[:LISTED_IN_STATUS]
        ]
        or None,
        "unprotectedSince": timestamp(since) if since else None,
        "nextTime": timestamp(next_slot) if next_slot else None,
    }
    events = [
        Event(
            "Normal" if report.passed else "Warning",
            "VerificationPassed" if report.passed else "VerificationFailed",
            document["message"] or "",
        )
    ]
    if unprotected:
        named = ", ".join(f"{u.item} ({u.why})" for u in unprotected[:NAMED_IN_EVENT])
        more = len(unprotected) - NAMED_IN_EVENT
        events.append(
            Event(
                "Warning",
                "UnprotectedItems",
                f"{len(unprotected)} item(s) of the vault are not in snapshot "
                f"{report.compared_with or '(none)'} as they are now: {named}"
                + (f" and {more} more (status.verification.unprotected)" if more > 0 else ""),
            )
        )
    return Update({"verification": document}, tuple(events))


def _summary(report: VerificationReport) -> str:
    snapshots = sum(check.snapshots for check in report.checks)
    artifacts = sum(check.artifacts for check in report.checks)
    read = (
        f"read back {snapshots} snapshot(s) and {artifacts} backup(s) in "
        f"{len(report.checks)} copy(ies)"
    )
    if report.passed:
        return f"{read}: every backup matches its manifest"
    first = report.findings[0]
    problems = len(report.findings)
    return f"{read}: {problems} problem(s), the first in copy {first.copy}: {first.message}"


def verification_failed(
    verdict: Verdict, request: RunRequest, moment: datetime.datetime
) -> Update[KeyBackupStatus]:
    """A verification that could not finish; a final verdict handles the request."""
    document: VerificationDocument = {
        "completionTime": timestamp(moment),
        "result": ERROR,
        "reason": verdict.error.reason,
        "message": verdict.describe(),
    }
    if verdict.final:
        document |= _handled(request)
    return Update(
        {"verification": document},
        (Event("Warning", "VerificationError", verdict.describe()),),
    )
