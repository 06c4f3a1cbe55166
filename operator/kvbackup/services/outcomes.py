"""Per-item outcomes of a run and the phase they add up to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from kvbackup.api.conditions import Phase
from kvbackup.api.kinds import ItemKind
from kvbackup.services.snapshot import ChangeRecord


class ItemResult(StrEnum):
    SUCCEEDED = "Succeeded"
    RESTORED = "Restored"
    RECOVERED = "Recovered"
    SKIPPED = "Skipped"
    FAILED = "Failed"
    #: What a dry run found a real restore would do with an item.
    WOULD_RESTORE = "WouldRestore"
    WOULD_RECOVER = "WouldRecover"
    WOULD_SKIP = "WouldSkip"
    WOULD_FAIL = "WouldFail"

    @property
    def failed(self) -> bool:
        return self in (ItemResult.FAILED, ItemResult.WOULD_FAIL)


class Freshness(StrEnum):
    """How a backup run came by an item's artifact."""

    #: Backed up: new, changed since the previous snapshot, or without a record to tell.
    BACKED_UP = "BackedUp"
    #: Unchanged since the previous snapshot: its artifact there was carried forward.
    UNCHANGED = "Unchanged"
    #: Unchanged, but backed up afresh: by the full-backup rule or a full run asked for.
    REFRESHED = "Refreshed"


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    name: str
    result: ItemResult
    versions: tuple[str, ...] = ()
    sha256: str = ""
    size: int = 0
    reason: str = ""
    message: str = ""
    #: Where a backed-up item's bytes were stored (see ``Artifact.location``).
    location: str = ""
    kind: ItemKind = ItemKind.KEY
    #: Of a backed-up item: the earlier snapshot holding its bytes, when carried forward.
    stored_in: str = ""
    change: ChangeRecord | None = None
    freshness: Freshness = Freshness.BACKED_UP

    @property
    def failed(self) -> bool:
        """Failed, or would fail in a real run."""
        return self.result.failed


def phase_of(outcomes: Sequence[ItemOutcome]) -> Phase:
    """All items fine -> Succeeded; none -> Failed; some -> PartiallyFailed."""
    failed = sum(1 for outcome in outcomes if outcome.failed)
    if not outcomes or failed == len(outcomes):
        return Phase.FAILED
    return Phase.PARTIALLY_FAILED if failed else Phase.SUCCEEDED
