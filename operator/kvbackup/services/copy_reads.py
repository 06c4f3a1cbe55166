"""Reading a KeyBackup's snapshot from the copy a KeyRestore names, and from the others
when that copy lacks the snapshot or one of its backups, or holds bytes that fail their
checksums."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AsyncExitStack

from kvbackup.api.keybackup import Destination
from kvbackup.api.keyrestore import LATEST, SnapshotSource
from kvbackup.errors import KvBackupError, MissingReferenceError
from kvbackup.services.ports import (
    OpenedSnapshot,
    SnapshotStore,
    SnapshotStores,
    read_whole_manifest,
)
from kvbackup.services.snapshot import Artifact, Manifest, SnapshotSummary

#: Most fallbacks a restore tells of one by one; the rest are counted.
FALLBACKS_TOLD = 10


class CopyFallback:
    """The copies of one KeyBackup, in the order a restore reads them, each opened (and
    its manifest read) the first time it is needed."""

    def __init__(
        self,
        stack: AsyncExitStack,
        stores: SnapshotStores,
        namespace: str,
        source: SnapshotSource,
        destinations: Mapping[str, Destination],
    ) -> None:
        if source.copy not in destinations:
            raise MissingReferenceError(
                f"KeyBackup {source.keybackup} has no copy {source.copy!r}; its copies are "
                f"{', '.join(destinations)}",
                reason="CopyNotFound",
            )
        self._stack, self._stores, self._namespace = stack, stores, namespace
        self._keybackup = source.keybackup
        self._destinations = destinations
        self.order = [source.copy, *(name for name in destinations if name != source.copy)]
        self._opened: dict[str, SnapshotStore] = {}
        self._manifests: dict[str, Manifest] = {}
        self._opening = asyncio.Lock()
        self.snapshot_id = ""
        #: What was read from another copy than the one named, and why, as a user reads it.
        self.fallbacks: list[str] = []
        self._untold = 0
        #: Copies whose manifest of the snapshot could not be read, and why.
        self._unreadable: dict[str, KvBackupError] = {}

    async def open(self, wanted: str) -> OpenedSnapshot:
        """The snapshot ``wanted`` (an id or ``latest``) of the first copy that has it."""
        first: KvBackupError | None = None
        for name in self.order:
            try:
                store = await self._store(name)
                chosen = choose_snapshot(
                    await store.list_snapshots(self._namespace, self._keybackup),
                    wanted,
                    self._keybackup,
                )
                self.snapshot_id = chosen.snapshot_id
                manifest = await self._manifest(name)
            except KvBackupError as error:
                first = first or error
                if name not in self._unreadable:  # its manifest's failure is told already
                    self._unreadable[name] = error
                    self._fell_back(f"copy {name}: {error.message}")
                continue
            return OpenedSnapshot(manifest, self.read, copy=name, fallbacks=self.fallbacks)
        assert first is not None, "a KeyBackup has at least its primary destination"
        raise first

    async def read(self, artifact: Artifact) -> bytes:
        """The artifact's bytes, checked against the manifest, from the first copy whose
        own entry for the item has the same sha256 and whose bytes match it."""
        first: KvBackupError | None = None
        for name in self.order:
            try:
                manifest = await self._manifest(name)
            except KvBackupError as error:
                first = first or error
                continue
            entry = manifest.find(artifact.kind, artifact.name)
            if entry is None or entry.sha256 != artifact.sha256:
                continue
            try:
                data = await self._opened[name].read_artifact(
                    self._namespace, self._keybackup, self.snapshot_id, entry
                )
                entry.verify(data)
            except KvBackupError as error:
                first = first or error
                self._fell_back(f"{artifact.kind} {artifact.name} in copy {name}: {error.message}")
                continue
            return data
        assert first is not None, "the copy the manifest was read from lists the artifact"
        raise first

    def _fell_back(self, why: str) -> None:
        """Tells the first fallbacks one by one, then counts the others in a last entry."""
        if len(self.fallbacks) < FALLBACKS_TOLD:
            self.fallbacks.append(why)
            return
        self._untold += 1
        more = f"and {self._untold} more"
        if self._untold == 1:
            self.fallbacks.append(more)
        else:
            self.fallbacks[-1] = more

    async def _store(self, name: str) -> SnapshotStore:
        async with self._opening:
            store = self._opened.get(name)
            if store is None:
                store = await self._stack.enter_async_context(
                    self._stores.store(self._namespace, self._destinations[name])
                )
                self._opened[name] = store
            return store

    async def _manifest(self, name: str) -> Manifest:
        """The copy's whole manifest of the snapshot; a copy that could not give it is told
        once, and not asked again."""
        if name in self._unreadable:
            raise self._unreadable[name]
        store = await self._store(name)
        async with self._opening:
            manifest = self._manifests.get(name)
            if manifest is None:
                try:
                    manifest = await read_whole_manifest(
                        store, self._namespace, self._keybackup, self.snapshot_id
                    )
                except KvBackupError as error:
                    self._unreadable[name] = error
                    self._fell_back(f"copy {name}: {error.message}")
                    raise
                self._manifests[name] = manifest
            return manifest


def choose_snapshot(
    snapshots: list[SnapshotSummary], wanted: str, keybackup: str
) -> SnapshotSummary:
    """``latest`` or a snapshot id among the complete snapshots (newest first)."""
    if not snapshots:
        raise MissingReferenceError(
            f"no complete snapshot of KeyBackup {keybackup} exists", reason="SourceNotFound"
        )
    if wanted == LATEST:
        return snapshots[0]
    for summary in snapshots:
        if summary.snapshot_id == wanted:
            return summary
    raise MissingReferenceError(
        f"KeyBackup {keybackup} has no complete snapshot {wanted}", reason="SourceNotFound"
    )
