"""Status conditions and phases shared by KeyBackup and KeyRestore.

Conditions follow the kstatus conventions that Flux, Argo CD and `kubectl wait` read:
Ready, Reconciling and Stalled, all three always written and each stamped with the
generation of spec it describes.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from kvbackup.api.statuses import ConditionDocument


class Phase(StrEnum):
    PENDING = "Pending"
    #: A scheduled KeyBackup waiting for its first slot.
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    PARTIALLY_FAILED = "PartiallyFailed"
    FAILED = "Failed"


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes prints times."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


READY = "Ready"
#: True while a run is under way or a temporary failure waits for its retry.
RECONCILING = "Reconciling"
#: True when the object makes no progress until someone changes something.
STALLED = "Stalled"
#: True when every copy of ``spec.copies`` holds the latest run's snapshot; absent
#: without copies. Ready does not depend on it: a copy that fails fails no backup.
COPIES_COMPLETE = "CopiesComplete"
#: Reconciling's reason while a temporary failure waits for its retry.
RETRY_SCHEDULED = "RetryScheduled"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str
    observed_generation: int

    def merged_into(
        self, existing: list[ConditionDocument], moment: datetime.datetime
    ) -> list[ConditionDocument]:
        """The condition list with this one set; lastTransitionTime moves only on a change."""
        status = "True" if self.status else "False"
        previous = next((c for c in existing if c.get("type") == self.type), None)
        transition = (
            previous["lastTransitionTime"]
            if previous and previous.get("status") == status and previous.get("lastTransitionTime")
            else timestamp(moment)
        )
        updated: ConditionDocument = {
            "type": self.type,
            "status": status,
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "lastTransitionTime": transition,
        }
        return [c for c in existing if c.get("type") != self.type] + [updated]


@dataclass(frozen=True)
class Standing:
    """Where an object stands, as its three conditions tell it. A condition that is False
    carries Ready's reason and message, so each of them reads on its own."""

    ready: bool
    reason: str
    message: str
    #: Reconciling is True with this reason: a run under way, or a retry waiting.
    reconciling: str | None = None
    #: Stalled is True with this message (and Ready's reason): nothing changes until the
    #: spec or the cluster's settings do.
    stalled: str | None = None

    def merged_into(
        self, existing: list[ConditionDocument], generation: int, moment: datetime.datetime
    ) -> list[ConditionDocument]:
        reconciling = self.reconciling is not None
        stalled = self.stalled is not None
        for condition in (
            Condition(READY, self.ready, self.reason, self.message, generation),
            Condition(
                RECONCILING, reconciling, self.reconciling or self.reason, self.message, generation
            ),
            Condition(STALLED, stalled, self.reason, self.stalled or self.message, generation),
        ):
            existing = condition.merged_into(existing, moment)
        return existing


def restamped(existing: Sequence[Any], generation: int) -> list[ConditionDocument]:
    """The conditions as they are, said of ``generation``: a spec change that starts no run
    changes nothing they say, but `kubectl wait` ignores a condition of an older one."""
    said: list[ConditionDocument] = []
    for condition in existing:
        if isinstance(condition, dict):
            said.append(cast(ConditionDocument, {**condition, "observedGeneration": generation}))
    return said


def all_of_generation(existing: Sequence[Any], generation: int) -> bool:
    return all(
        isinstance(condition, dict) and condition.get("observedGeneration") == generation
        for condition in existing
    )
