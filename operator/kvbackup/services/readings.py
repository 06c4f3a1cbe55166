"""What a KeyBackup's own gauges show: read from its status by presentation/gauges.py,
shown by the metrics adapter (adapters/metrics.py), neither of which imports the other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyBackupReadings:
    """What the per-KeyBackup gauges show; None removes (or does not create) a series."""

    last_success: float | None = None
    schedule_interval: float | None = None
    snapshot_bytes: int | None = None
    oldest_artifact: float | None = None
    #: None: this status does not tell (a run is going on); the gauge keeps its value.
    failing: bool | None = None
