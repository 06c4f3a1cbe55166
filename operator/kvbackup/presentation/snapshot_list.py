"""The kept snapshots as a KeyBackup's status lists them, for its destination and for
each of its copies."""

from __future__ import annotations

from collections.abc import Sequence

from kvbackup.api.conditions import timestamp
from kvbackup.api.statuses import SnapshotSummaryDocument
from kvbackup.services.backup import KeptSnapshot

#: How many snapshots a KeyBackup's status lists per copy (storage may hold more).
SNAPSHOTS_IN_STATUS = 10


def snapshot_entries(kept: Sequence[KeptSnapshot]) -> list[SnapshotSummaryDocument]:
    return [_snapshot_entry(k) for k in kept[:SNAPSHOTS_IN_STATUS]]


def _snapshot_entry(kept: KeptSnapshot) -> SnapshotSummaryDocument:
    """Keys are always counted, as they always were; secrets and certificates when the
    snapshot's run stored or failed some (a list entry is replaced whole, never merged).
    ``newBytes`` when its summary tells, ``heldBy`` when only newer snapshots keep it,
    ``keptFor`` when retention's policy does, ``deletionRefused`` when storage refused to
    delete it."""
    summary = kept.summary
    entry: SnapshotSummaryDocument = {
        "id": summary.snapshot_id,
        "completionTime": timestamp(summary.completion_time),
        "keys": summary.keys,
        "failedKeys": summary.failed_keys,
    }
    if summary.secrets or summary.failed_secrets:
        entry |= {"secrets": summary.secrets, "failedSecrets": summary.failed_secrets}
    if summary.certificates or summary.failed_certificates:
        entry |= {
            "certificates": summary.certificates,
            "failedCertificates": summary.failed_certificates,
        }
    entry["bytes"] = summary.total_bytes
    if summary.new_bytes is not None:
        entry["newBytes"] = summary.new_bytes
    entry["location"] = kept.location
    if kept.held_by:
        entry["heldBy"] = list(kept.held_by)
    if kept.kept_for:
        entry["keptFor"] = [str(reason) for reason in kept.kept_for]
    if kept.deletion_refused:
        entry["deletionRefused"] = kept.deletion_refused
    return entry
