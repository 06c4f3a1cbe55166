"""The status documents of KeyBackup and KeyRestore, typed to the field as the CRDs
declare them.

Builders return merge patches of these shapes: a field set to ``None`` is removed, and a
field left out is kept as it is.
"""

from __future__ import annotations

from typing import TypedDict


class ConditionDocument(TypedDict):
    type: str
    status: str
    reason: str
    message: str
    observedGeneration: int
    lastTransitionTime: str


class KeyEntry(TypedDict, total=False):
    """One key's outcome in a run."""

    name: str
    result: str
    versionCount: int
    versions: list[str]
    sha256: str
    size: int
    reason: str
    message: str


class BackupRunRequest(TypedDict, total=False):
    """Why a run was started, and, while it runs, the snapshot it writes."""

    generation: int
    trigger: str | None
    slot: str | None
    snapshotId: str
    startTime: str
    #: How far the run has come, updated every few seconds.
    keysDone: int
    keysTotal: int


class BackupRunSummary(TypedDict):
    snapshotId: str
    startTime: str
    completionTime: str
    phase: str
    keysTotal: int
    keysSucceeded: int
    keysFailed: int
    bytes: int


class SnapshotSummaryDocument(TypedDict):
    """One snapshot as a KeyBackup's status lists it (``services.snapshot.SnapshotSummary``
    is the summary as stored beside the snapshot)."""

    id: str
    completionTime: str
    keys: int
    failedKeys: int
    bytes: int
    location: str


class LastSnapshot(TypedDict):
    id: str
    startTime: str
    completionTime: str
    keys: int
    bytes: int
    location: str


class KeyBackupStatus(TypedDict, total=False):
    phase: str
    observedGeneration: int
    conditions: list[ConditionDocument]
    activeRun: BackupRunRequest | None
    lastHandledTrigger: str
    lastScheduleTime: str
    nextScheduleTime: str | None
    lastRun: BackupRunSummary
    lastSnapshot: LastSnapshot
    lastSuccessfulTime: str
    keys: list[KeyEntry]
    snapshots: list[SnapshotSummaryDocument]


class RestoreAttempt(TypedDict, total=False):
    """The attempt in progress; a restart resumes it instead of starting over."""

    generation: int
    startTime: str
    #: How far the attempt has come, updated every few seconds.
    keysDone: int | None
    keysTotal: int | None
    #: What each key came to so far, for the next attempt (see services/journal.py),
    #: and the snapshot it is of.
    snapshotId: str | None
    keyResults: str | None


class RestoreSource(TypedDict):
    keyBackup: str
    snapshotId: str


class RestoreCounts(TypedDict, total=False):
    """A real restore's counts, or a dry run's (``would...``); a merge patch sets the other
    kind's to None, which removes them."""

    restored: int | None
    recovered: int | None
    skipped: int | None
    failed: int | None
    wouldRestore: int | None
    wouldRecover: int | None
    wouldSkip: int | None
    wouldFail: int | None


class KeyRestoreStatus(TypedDict, total=False):
    phase: str
    observedGeneration: int
    conditions: list[ConditionDocument]
    activeRun: RestoreAttempt | None
    startTime: str
    completionTime: str
    source: RestoreSource
    counts: RestoreCounts
    keys: list[KeyEntry]
    #: Whether the last finished run was a dry run, which changed nothing.
    dryRun: bool
