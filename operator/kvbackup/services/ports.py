"""What the services need from the outside world; adapters implement these."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Protocol

from kvbackup.api.keybackup import Destination, KeyBackupRef
from kvbackup.api.keyrestore import BlobSnapshotSource
from kvbackup.api.kinds import ItemKind
from kvbackup.services.byte_budget import ByteBudget
from kvbackup.services.snapshot import (
    ARTIFACT_MAX_BYTES,
    Artifact,
    ChangeRecord,
    Manifest,
    SnapshotSummary,
    whole_manifest,
)

#: The current time in UTC; passed in, so that a run's timing can be tested.
Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    """The real ``Clock``."""
    return datetime.datetime.now(datetime.UTC)


class ItemState(StrEnum):
    ACTIVE = "Active"
    SOFT_DELETED = "SoftDeleted"
    ABSENT = "Absent"


@dataclass(frozen=True)
class ItemInfo:
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    #: Keys and secrets that back a certificate: backed up with the certificate, not alone.
    managed: bool = False
    #: What the listing says of the item, to tell whether it changed since a snapshot.
    change: ChangeRecord | None = None


@dataclass(frozen=True)
class ItemVersions:
    """An item's versions, oldest first, and the record of what their listing said: it
    changes with any version's attributes, so it tells a named item's changes apart."""

    ids: tuple[str, ...]
    change: ChangeRecord | None = None


@dataclass(frozen=True)
class StoredSnapshot:
    """Anything stored under one snapshot id; complete once its manifest exists."""

    snapshot_id: str
    complete: bool


class VaultReads(Protocol):
    """The operations of one vault that change nothing: all a dry run is given. Each names
    the kind of item it concerns: keys, secrets and certificates have names of their own."""

    def list_items(self, kind: ItemKind) -> AsyncIterator[ItemInfo]: ...

    async def list_versions(self, kind: ItemKind, name: str) -> ItemVersions: ...

    async def item_state(self, kind: ItemKind, name: str) -> ItemState: ...


class VaultItems(VaultReads, Protocol):
    """The operations of one vault, under one identity, on items of every kind."""

    async def backup(self, kind: ItemKind, name: str) -> bytes:
        """Exactly the bytes Key Vault's backup of the item returned."""
        ...

    async def restore(self, kind: ItemKind, backup: bytes) -> str:
        """Restores an item from its backup; returns the restored item's name."""
        ...

    async def recover(self, kind: ItemKind, name: str) -> None: ...

    async def purge(self, kind: ItemKind, name: str) -> None: ...


class SnapshotStore(Protocol):
    """Where snapshots live: Kubernetes Secrets today, other backends beside it."""

    async def write_artifact(
        self,
        keybackup: KeyBackupRef,
        snapshot_id: str,
        kind: ItemKind,
        name: str,
        data: bytes,
        versions: tuple[str, ...] = (),
    ) -> str:
        """Store one item's backup bytes, recording their sha256 and the item's versions
        beside them, so that a resumed run can check them instead of backing up again.
        Items of different kinds may share a name: a store keeps them apart.

        A store may gather several items into one write; everything handed to it is
        stored by the time ``write_manifest`` returns. Returns where the bytes went
        (``Artifact.location``), recorded in the manifest.
        """
        ...

    async def resumable(self, keybackup: KeyBackupRef, snapshot_id: str) -> list[Artifact]:
        """The artifacts a snapshot already holds whose bytes still match the sha256
        recorded with them (an interrupted run's work); empty for a new snapshot."""
        ...

    async def write_manifest(self, manifest: Manifest, summary: SnapshotSummary) -> None:
        """Finish storing the artifacts, then write the manifest (whole or differential, as
        given) and beside it ``summary`` (of the whole snapshot, for listings): the
        snapshot is complete."""
        ...

    async def list_snapshots(self, namespace: str, keybackup: str) -> list[SnapshotSummary]:
        """Complete snapshots (those with a manifest), newest first."""
        ...

    async def read_manifest(self, namespace: str, keybackup: str, snapshot_id: str) -> Manifest:
        """The manifest of a complete snapshot as stored: a differential one still needs
        merging onto its base (``snapshot.whole_manifest``)."""
        ...

    async def read_artifact(
        self, namespace: str, keybackup: str, snapshot_id: str, artifact: Artifact
    ) -> bytes:
        """The bytes of an artifact listed by snapshot ``snapshot_id``; from the storage of
        ``artifact.stored_in`` when it names an earlier snapshot of the same KeyBackup."""
        ...

    async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
        """Every snapshot id with anything stored, complete or not (for garbage collection)."""
        ...

    async def delete_snapshot(self, namespace: str, keybackup: str, snapshot_id: str) -> None:
        """Remove the manifest first, so a half-deleted snapshot never looks complete.
        Retention calls this only for snapshots no kept snapshot refers to."""
        ...

    def location(self, namespace: str, keybackup: str, snapshot_id: str) -> str:
        """Where a user finds the snapshot, e.g. a label selector or a blob path."""
        ...


#: Artifact bytes of one opened snapshot held at once, read and not yet let go of: a run
#: works on tens of keys at a time, and a manifest may record each at up to
#: ARTIFACT_MAX_BYTES, so without a bound a forged one could hold hundreds of MiB.
ARTIFACT_BYTES_IN_USE = 4 * ARTIFACT_MAX_BYTES


@dataclass(frozen=True)
class OpenedSnapshot:
    """A chosen snapshot: its manifest and how to read the artifacts it lists."""

    manifest: Manifest
    read_artifact: Callable[[Artifact], Awaitable[bytes]]
    budget: ByteBudget = field(default_factory=lambda: ByteBudget(ARTIFACT_BYTES_IN_USE))
    #: The KeyBackup copy the manifest was read from; empty for a snapshot found by path.
    copy: str = ""
    #: What was read from another copy than the one named, and why; grows as it is read.
    fallbacks: list[str] = field(default_factory=list)

    @asynccontextmanager
    async def verified(self, artifact: Artifact) -> AsyncIterator[bytes]:
        """The artifact's bytes, once their sha256 and size match the manifest's, for as
        long as they are in use; the bytes in use at once are bounded by ``budget``."""
        async with self.budget.held(artifact.size):
            data = await self.read_artifact(artifact)
            artifact.verify(data)
            yield data


async def read_whole_manifest(
    store: SnapshotStore, namespace: str, keybackup: str, snapshot_id: str
) -> Manifest:
    """The manifest of a complete snapshot listing every item it holds."""
    manifest = await store.read_manifest(namespace, keybackup, snapshot_id)
    return await whole_manifest(manifest, partial(store.read_manifest, namespace, keybackup))


class SnapshotStores(Protocol):
    """Opens the store a destination names, under the namespace's own credentials."""

    def store(
        self, namespace: str, destination: Destination
    ) -> AbstractAsyncContextManager[SnapshotStore]: ...

    def snapshot_at_path(
        self, namespace: str, source: BlobSnapshotSource
    ) -> AbstractAsyncContextManager[OpenedSnapshot]:
        """A snapshot found by its blob path alone, with no KeyBackup object needed."""
        ...

    async def destinations_of(
        self, namespace: str, keybackup: str
    ) -> dict[str, Destination] | None:
        """Where a KeyBackup keeps its snapshots, by copy name, the primary first; None once
        the object is gone."""
        ...
