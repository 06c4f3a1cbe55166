"""Status conditions and phases shared by KeyBackup and KeyRestore."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from enum import StrEnum

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
