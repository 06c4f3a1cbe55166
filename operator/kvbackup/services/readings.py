"""What a KeyBackup's own gauges show: read from its status by presentation/gauges.py,
shown by the metrics adapter (adapters/metrics.py), neither of which imports the other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KeyBackupReadings:
    """What the per-KeyBackup gauges show; None removes (or does not create) a series."""

    last_success: float | None = None
    schedule_interval: float | None = None
    snapshot_bytes: int | None = None
    oldest_artifact: float | None = None
    #: None: this status does not tell (a run is going on); the gauge keeps its value.
    failing: bool | None = None
    #: Whether each copy lacks the latest run's snapshot, by copy name; a copy not listed
    #: has no series.
    copies_failing: Mapping[str, bool] = field(default_factory=dict)
    #: When the last verification completed, whether it found damaged snapshots (None:
    #: it could not finish, the gauge keeps its value), how many items no snapshot
    #: covered, and since when verifications have found such items.
    verification_time: float | None = None
    verification_failing: bool | None = None
    unprotected_items: int | None = None
    unprotected_since: float | None = None
