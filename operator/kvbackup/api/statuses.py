"""The status documents of KeyBackup and KeyRestore, typed to the field as the CRDs
declare them.

Builders return merge patches of these shapes: a field set to ``None`` is removed, and a
field left out is kept as it is. Nested objects are merged too, so a count of a kind the
latest run did not handle is set to ``None``, never left out.
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


class ItemEntry(TypedDict, total=False):
    """One item's outcome in a run, in the list of its kind (keys, secrets, certificates)."""

    name: str
    result: str
    versionCount: int
    versions: list[str]
    sha256: str
    size: int
    reason: str
    message: str


class ItemEntries(TypedDict):
    """Each kind's bounded list of outcomes, failures first; None for a kind the run did
    not handle, which removes an earlier run's list."""

    keys: list[ItemEntry] | None
    secrets: list[ItemEntry] | None
    certificates: list[ItemEntry] | None


class BackupRunRequest(TypedDict, total=False):
    """Why a run was started, and, while it runs, the snapshot it writes."""

    generation: int
    trigger: str | None
    slot: str | None
    snapshotId: str
    startTime: str
    #: How far the run has come (items of every kind), updated every few seconds.
    itemsDone: int
    itemsTotal: int


class LeftOut(TypedDict, total=False):
    """Keys and secrets the selectors matched that back a certificate the run did not
    back up: Key Vault backs them up only with their certificate."""

    keys: int | None
    secrets: int | None
    message: str


class BackupRunSummary(TypedDict, total=False):
    """The latest finished run; each kind's counts are present when the run handled that
    kind, else None."""

    snapshotId: str
    startTime: str
    completionTime: str
    phase: str
    keysTotal: int | None
    keysSucceeded: int | None
    keysFailed: int | None
    secretsTotal: int | None
    secretsSucceeded: int | None
    secretsFailed: int | None
    certificatesTotal: int | None
    certificatesSucceeded: int | None
    certificatesFailed: int | None
    #: Items stored, of every kind, by how the run came by their artifacts (Freshness).
    backedUp: int
    refreshed: int
    unchanged: int
    #: Why the run backed up every item afresh; None for an incremental run.
    fullRun: str | None
    #: The snapshot an incremental run compared the items with; None for a full run.
    comparedWith: str | None
    #: Bytes of every item the snapshot holds, and of those the run stored itself.
    bytes: int
    newBytes: int
    #: None unless some were left out.
    leftOut: LeftOut | None


class SnapshotSummaryDocument(TypedDict, total=False):
    """One snapshot as a KeyBackup's status lists it (``services.snapshot.SnapshotSummary``
    is the summary as stored beside the snapshot). Keys are always counted; secrets and
    certificates when the snapshot's run stored or failed some."""

    id: str
    completionTime: str
    keys: int
    failedKeys: int
    secrets: int
    failedSecrets: int
    certificates: int
    failedCertificates: int
    bytes: int
    #: Bytes the snapshot stored itself; absent in summaries older than incremental runs.
    newBytes: int
    location: str
    #: The newer kept snapshots that refer to this one, when only they keep it.
    heldBy: list[str]
    #: Why retention keeps it (``KeptFor``'s values); absent before retention ran.
    keptFor: list[str]
    #: Why storage refused to delete it when retention removed it.
    deletionRefused: str


class LastSnapshot(TypedDict, total=False):
    """The newest kept snapshot; ``secrets`` and ``certificates`` are None when it holds
    none, which removes an earlier snapshot's counts."""

    id: str
    startTime: str
    completionTime: str
    keys: int
    secrets: int | None
    certificates: int | None
    bytes: int
    #: When the oldest backup it holds was taken; None when it holds none.
    oldestArtifactTime: str | None
    location: str


class CopyDocument(TypedDict, total=False):
    """One of ``spec.copies``: whether it holds the latest snapshot, and what it keeps."""

    name: str
    #: Complete or Failed, of the latest run's snapshot.
    phase: str
    snapshotId: str
    location: str
    reason: str | None
    message: str | None
    #: Backups the run wrote into the copy, and their bytes.
    written: int
    writtenBytes: int
    #: Backups the copy held already and the snapshot refers to.
    carried: int
    #: When the copy last received a complete snapshot; None before it ever did.
    lastCompleteTime: str | None
    snapshots: list[SnapshotSummaryDocument] | None


class CopyCheckDocument(TypedDict):
    name: str
    snapshots: int
    artifacts: int
    bytes: int


class FindingDocument(TypedDict):
    copy: str
    snapshotId: str | None
    kind: str | None
    name: str | None
    problem: str
    message: str


class UnprotectedDocument(TypedDict):
    kind: str
    name: str
    reason: str


class VerificationDocument(TypedDict, total=False):
    """What the latest verification (``spec.verify`` or kvbackup.io/verify-now) found."""

    slot: str
    handledTrigger: str
    startTime: str
    completionTime: str
    #: Passed, Failed (a kept backup is missing, altered or unreadable) or Error (the
    #: verification could not finish).
    result: str
    reason: str | None
    message: str | None
    copies: list[CopyCheckDocument]
    findingsTotal: int
    findings: list[FindingDocument] | None
    comparedWith: str | None
    unprotectedItems: int
    unprotected: list[UnprotectedDocument] | None
    unprotectedSince: str | None
    nextTime: str | None


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
    keys: list[ItemEntry] | None
    secrets: list[ItemEntry] | None
    certificates: list[ItemEntry] | None
    snapshots: list[SnapshotSummaryDocument]
    #: One per copy of ``spec.copies``; None without copies.
    copies: list[CopyDocument] | None
    verification: VerificationDocument


class RestoreAttempt(TypedDict, total=False):
    """The attempt in progress; a restart resumes it instead of starting over."""

    generation: int
    startTime: str
    #: How far the attempt has come (items of every kind), updated every few seconds.
    itemsDone: int | None
    itemsTotal: int | None
    #: What each item came to so far, for the next attempt (see services/journal.py),
    #: and the snapshot it is of.
    snapshotId: str | None
    itemResults: str | None


class RestoreSource(TypedDict, total=False):
    keyBackup: str
    snapshotId: str
    #: The KeyBackup copy whose manifest was read; None for a snapshot found by path.
    copy: str | None
    #: What was read from another copy than the one named, and why; None when nothing was.
    fellBack: list[str] | None


class RestoreResultCounts(TypedDict, total=False):
    """A real restore's counts, or a dry run's (``would...``); a merge patch sets the other
    mode's to None, which removes them."""

    restored: int | None
    recovered: int | None
    skipped: int | None
    failed: int | None
    wouldRestore: int | None
    wouldRecover: int | None
    wouldSkip: int | None
    wouldFail: int | None


class RestoreCounts(RestoreResultCounts, total=False):
    """Every item's counts, and each kind's apart: None for a kind the restore did not
    handle."""

    keys: RestoreResultCounts | None
    secrets: RestoreResultCounts | None
    certificates: RestoreResultCounts | None


class KeyRestoreStatus(TypedDict, total=False):
    phase: str
    observedGeneration: int
    conditions: list[ConditionDocument]
    activeRun: RestoreAttempt | None
    startTime: str
    completionTime: str
    source: RestoreSource
    counts: RestoreCounts
    keys: list[ItemEntry] | None
    secrets: list[ItemEntry] | None
    certificates: list[ItemEntry] | None
    #: Whether the last finished run was a dry run, which changed nothing.
    dryRun: bool
