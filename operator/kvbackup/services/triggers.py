"""When a KeyBackup needs a run, and which snapshot id that run writes into."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from kvbackup.services.snapshot import new_snapshot_id


def run_is_due(status: Mapping[str, Any], generation: int, trigger: str | None) -> bool:
    """A new spec generation, or a backup-now value not handled yet, asks for a run.

    Re-applying an unchanged manifest changes neither, so it starts nothing.
    """
    if status.get("observedGeneration") != generation:
        return True
    return trigger is not None and trigger != status.get("lastHandledTrigger")


def snapshot_id_for(
    status: Mapping[str, Any], generation: int, trigger: str | None, moment: datetime.datetime
) -> str:
    """Resume the snapshot of a run that was interrupted (e.g. by a crash), or start one.

    Reusing the id makes the redone run overwrite its own partial artifacts instead
    of leaving a second incomplete snapshot behind.
    """
    active = status.get("activeRun") or {}
    if active.get("generation") == generation and active.get("trigger") == trigger:
        snapshot_id = active.get("snapshotId")
        if isinstance(snapshot_id, str) and snapshot_id:
            return snapshot_id
    return new_snapshot_id(moment)
