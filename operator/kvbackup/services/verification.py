"""Scheduled verification of a KeyBackup: every kept snapshot of every copy read back and
checked against its manifest, and the latest snapshot compared with the live vault to tell
which items no snapshot protects yet.

Both sides are only read: the stores are listed and their manifests and artifacts read,
the vault's items and versions listed. Nothing is written, backed up or repaired here;
the findings are for people (and the next backup run) to act on.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from kvbackup.api.keybackup import KeyBackupRef, KeyBackupSpec
from kvbackup.api.kinds import ITEM_KINDS, ItemKind, ItemRef
from kvbackup.errors import IntegrityError, KvBackupError, NotFoundError
from kvbackup.services.backup import chosen_items
from kvbackup.services.byte_budget import ByteBudget
from kvbackup.services.ports import (
    ARTIFACT_BYTES_IN_USE,
    Clock,
    ItemInfo,
    SnapshotStore,
    VaultReads,
    read_whole_manifest,
)
from kvbackup.services.snapshot import Artifact, Manifest
from kvbackup.services.workers import DEFAULT_CONCURRENCY, in_turn


@dataclass(frozen=True)
class NamedStore:
    """One copy of a KeyBackup's snapshots, by the name status reports it under."""

    name: str
    store: SnapshotStore


class Problem(StrEnum):
    """What is wrong with a stored artifact or manifest; the value is its reason in status."""

    #: The artifact's bytes, or a manifest, are not where the copy should hold them.
    MISSING = "Missing"
    #: The bytes differ from the sha256 or size the manifest records.
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    #: Anything else the store refuses for good, e.g. bytes larger than any backup may be.
    UNREADABLE = "Unreadable"


_VERDICTS = {
    Problem.MISSING: "is missing",
    Problem.CHECKSUM_MISMATCH: "does not match its manifest",
    Problem.UNREADABLE: "cannot be read",
}


@dataclass(frozen=True)
class Finding:
    copy: str
    #: The kept snapshot whose manifest lists the item, or whose manifest is at fault;
    #: empty when the copy's snapshots could not even be listed.
    snapshot_id: str
    problem: Problem
    #: Names the item, where it was looked for and what the store or the check said.
    message: str
    #: None when the fault is the manifest's (or the listing's), not one item's.
    item: ItemRef | None = None


@dataclass(frozen=True)
class CopyCheck:
    copy: str
    #: Kept snapshots whose whole manifest was read.
    snapshots: int
    #: Distinct stored artifacts checked: one carried forward by many snapshots counts once.
    artifacts: int
    #: Bytes read back and checked.
    bytes: int


async def check_copies(
    copies: Sequence[NamedStore],
    namespace: str,
    keybackup: str,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> tuple[list[CopyCheck], list[Finding]]:
    """Every artifact of every kept snapshot of each copy, read back and checked against
    the sha256 and size its manifest records; one ``CopyCheck`` per copy, in the order
    given, and the findings in that order too, then newest snapshot first, then by item.

    A permanent error is a finding and the check goes on; a temporary one is raised, as
    retrying later is all that helps. The copies are read one after the other, so that
    the bytes held at once stay within one copy's bound (``ARTIFACT_BYTES_IN_USE``).
    """
    checks: list[CopyCheck] = []
    findings: list[Finding] = []
    for copy in copies:
        reading = _CopyReading(copy, namespace, keybackup)
        checks.append(await reading.run(concurrency))
        findings.extend(reading.ordered_findings())
    return checks, findings


class _CopyReading:
    """The read-back of one copy: what it found and how much it read."""

    def __init__(self, copy: NamedStore, namespace: str, keybackup: str) -> None:
        self._copy = copy
        self._namespace = namespace
        self._keybackup = keybackup
        #: The kept snapshots, each by its rank, newest first (0).
        self._kept: dict[str, int] = {}
        #: (home snapshot, kind, lowercased name, sha256) of each artifact taken to check.
        self._taken: set[tuple[str, ItemKind, str, str]] = set()
        self._findings: list[Finding] = []
        self._snapshots = 0
        self._bytes = 0
        self._budget = ByteBudget(ARTIFACT_BYTES_IN_USE)

    async def run(self, concurrency: int) -> CopyCheck:
        store = self._copy.store
        try:
            summaries = await store.list_snapshots(self._namespace, self._keybackup)
        except KvBackupError as error:
            _raise_if_temporary(error)
            self._findings.append(
                Finding(
                    self._copy.name,
                    "",
                    _manifest_problem(error),
                    f"In copy {self._copy.name}, the snapshots of "
                    f"{self._namespace}/{self._keybackup} cannot be listed: {error.message}",
                )
            )
            summaries = []
        self._kept = {summary.snapshot_id: rank for rank, summary in enumerate(summaries)}
        await in_turn(self._artifacts(), self._check, concurrency)
        return CopyCheck(self._copy.name, self._snapshots, len(self._taken), self._bytes)

    def ordered_findings(self) -> list[Finding]:
        def order(finding: Finding) -> tuple[int, int, str]:
            rank = self._kept.get(finding.snapshot_id, -1)
            if finding.item is None:
                return rank, -1, ""
            return rank, ITEM_KINDS.index(finding.item.kind), finding.item.name.lower()

        return sorted(self._findings, key=order)

    async def _artifacts(self) -> AsyncIterator[tuple[str, Artifact]]:
        """Each stored artifact once, with the snapshot that lists it first (newest first).
        Manifests are read as the checks reach them, so one copy's many kept snapshots are
        not all held at once."""
        for snapshot_id in self._kept:
            try:
                manifest = await read_whole_manifest(
                    self._copy.store, self._namespace, self._keybackup, snapshot_id
                )
            except KvBackupError as error:
                _raise_if_temporary(error)
                problem = _manifest_problem(error)
                self._findings.append(
                    Finding(
                        self._copy.name,
                        snapshot_id,
                        problem,
                        f"In copy {self._copy.name}, the manifest of snapshot {snapshot_id} "
                        f"at {self._where(snapshot_id)} {_VERDICTS[problem]}: {error.message}",
                    )
                )
                continue
            self._snapshots += 1
            for artifact in manifest.artifacts:
                stored = (
                    artifact.home(snapshot_id),
                    artifact.kind,
                    artifact.name.lower(),
                    artifact.sha256,
                )
                if stored not in self._taken:
                    self._taken.add(stored)
                    yield snapshot_id, artifact

    async def _check(self, listed: tuple[str, Artifact]) -> None:
        listed_in, artifact = listed
        home = artifact.home(listed_in)
        try:
            async with self._budget.held(artifact.size):
                data = await self._copy.store.read_artifact(
                    self._namespace, self._keybackup, listed_in, artifact
                )
                self._bytes += len(data)
                artifact.verify(data)
        except KvBackupError as error:
            _raise_if_temporary(error)
            problem = _artifact_problem(error)
            where = self._where(home)
            if artifact.location:
                where = f"{where} ({artifact.location})"
            # Bytes shared by many snapshots are reported once, against the snapshot that
            # stored them while it is kept: that is the one whose storage is at fault.
            self._findings.append(
                Finding(
                    self._copy.name,
                    home if home in self._kept else listed_in,
                    problem,
                    f"In copy {self._copy.name}, the backup of {artifact.ref} at {where} "
                    f"{_VERDICTS[problem]}: {error.message}",
                    artifact.ref,
                )
            )

    def _where(self, snapshot_id: str) -> str:
        return self._copy.store.location(self._namespace, self._keybackup, snapshot_id)


def _raise_if_temporary(error: KvBackupError) -> None:
    if error.temporary:
        raise error


def _artifact_problem(error: KvBackupError) -> Problem:
    if isinstance(error, NotFoundError):
        return Problem.MISSING
    if isinstance(error, IntegrityError):
        return Problem.CHECKSUM_MISMATCH
    return Problem.UNREADABLE


def _manifest_problem(error: KvBackupError) -> Problem:
    # A manifest has no checksum of its own: an IntegrityError means it does not parse
    # or names another place than where it lies, so it is unreadable, not mismatched.
    return Problem.MISSING if isinstance(error, NotFoundError) else Problem.UNREADABLE


class Unprotection(StrEnum):
    """Why the latest snapshot does not protect an item; the value is its reason in status."""

    #: The vault holds an item the spec chooses that the snapshot lacks: created since,
    #: or its backup failed.
    NOT_IN_SNAPSHOT = "NotInSnapshot"
    #: The item has versions the snapshot's artifact does not list.
    NEWER_VERSIONS = "NewerVersions"


@dataclass(frozen=True)
class UnprotectedItem:
    item: ItemRef
    why: Unprotection


async def unprotected_items(
    spec: KeyBackupSpec,
    latest: Manifest | None,
    vault: VaultReads,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[UnprotectedItem]:
    """The items ``spec`` chooses that ``latest`` (a whole manifest; None when there is no
    snapshot) would not restore as the vault holds them now, by kind (ITEM_KINDS order),
    then by name. The items are chosen as a backup run chooses them.

    A listed item whose listing says what the snapshot recorded of it costs no call, so
    an unchanged vault is compared for the price of its listing. A named item the vault
    does not hold is not unprotected: there is nothing to protect. Errors of the vault
    (temporary or not) are raised.
    """
    found: list[UnprotectedItem] = []

    async def compare(chosen: tuple[ItemRef, ItemInfo | None]) -> None:
        item, info = chosen
        artifact = latest.find(*item) if latest is not None else None
        if info is not None:
            if artifact is None:
                found.append(UnprotectedItem(item, Unprotection.NOT_IN_SNAPSHOT))
                return
            if artifact.change is not None and artifact.change == info.change:
                return
        try:
            versions = await vault.list_versions(*item)
        except NotFoundError:
            return
        if not versions.ids:
            return
        if artifact is None:
            found.append(UnprotectedItem(item, Unprotection.NOT_IN_SNAPSHOT))
        elif not set(versions.ids) <= set(artifact.versions):
            found.append(UnprotectedItem(item, Unprotection.NEWER_VERSIONS))

    await in_turn(_unmanaged(chosen_items(spec, vault)), compare, concurrency)
    return sorted(found, key=lambda u: (ITEM_KINDS.index(u.item.kind), u.item.name.lower()))


async def _unmanaged(
    chosen: AsyncIterator[tuple[ItemRef, ItemInfo | None]],
) -> AsyncIterator[tuple[ItemRef, ItemInfo | None]]:
    """The chosen items a backup run backs up: a certificate's key and secret come with it."""
    async for item, info in chosen:
        if info is None or not info.managed:
            yield item, info


@dataclass(frozen=True)
class VerificationReport:
    start_time: datetime.datetime
    completion_time: datetime.datetime
    #: One per copy, in the order the copies were given (the primary first).
    checks: tuple[CopyCheck, ...]
    findings: tuple[Finding, ...]
    #: The latest snapshot compared with the vault; empty when none could be read.
    compared_with: str
    unprotected: tuple[UnprotectedItem, ...]

    @property
    def passed(self) -> bool:
        """Whether every kept backup is intact. Items not yet protected do not fail it:
        taking them is the next backup run's work, not a fault of what is stored."""
        return not self.findings


async def verify(
    spec: KeyBackupSpec,
    keybackup: KeyBackupRef,
    copies: Sequence[NamedStore],
    vault: VaultReads,
    *,
    clock: Clock,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> VerificationReport:
    """Every copy read back (``check_copies``), then the latest snapshot compared with
    the vault (``unprotected_items``): the primary's (the first copy), or when it has
    none or it cannot be read, the next copy's that can."""
    start = clock()
    checks, findings = await check_copies(
        copies, keybackup.namespace, keybackup.name, concurrency=concurrency
    )
    latest = await _latest_readable(copies, keybackup)
    unprotected = await unprotected_items(spec, latest, vault, concurrency=concurrency)
    return VerificationReport(
        start_time=start,
        completion_time=clock(),
        checks=tuple(checks),
        findings=tuple(findings),
        compared_with=latest.snapshot_id if latest is not None else "",
        unprotected=tuple(unprotected),
    )


async def _latest_readable(
    copies: Sequence[NamedStore], keybackup: KeyBackupRef
) -> Manifest | None:
    """The whole manifest of the latest snapshot of the first copy that can give one; why
    the others could not is among ``check_copies``'s findings already."""
    namespace, name = keybackup.namespace, keybackup.name
    for copy in copies:
        try:
            summaries = await copy.store.list_snapshots(namespace, name)
            if summaries:
                return await read_whole_manifest(
                    copy.store, namespace, name, summaries[0].snapshot_id
                )
        except KvBackupError as error:
            _raise_if_temporary(error)
    return None
