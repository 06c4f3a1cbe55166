"""In-memory stand-ins for the service ports, and builders shared by the tests.

``InMemoryVault`` and ``InMemoryStore`` implement the ``VaultKeys`` and ``SnapshotStore``
protocols of ``kvbackup.services.ports`` with plain dictionaries. They model the few
Key Vault rules the domain logic relies on: key names are case-insensitive, a deleted
key stays soft-deleted until purged, and restoring a backup over a name that still
exists (active or soft-deleted) is a conflict.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import partial

from kvbackup.api.keybackup import (
    KeyBackupRef,
    KeyBackupSpec,
    KeyChoice,
    KeySelector,
    SecretDestination,
)
from kvbackup.api.keyrestore import LATEST, KeyRestoreSpec, OnConflict, SnapshotSource, Strategy
from kvbackup.errors import ConflictError, KvBackupError, NotFoundError
from kvbackup.services.backup import run_backup
from kvbackup.services.ports import KeyInfo, KeyState, OpenedSnapshot, StoredSnapshot
from kvbackup.services.snapshot import (
    KeyArtifact,
    KeyFailure,
    Manifest,
    SnapshotSummary,
    sha256_hex,
)

VAULT_URL = "https://source.vault.azure.net"
TARGET_URL = "https://target.vault.azure.net"
NAMESPACE = "team-a"
REF = KeyBackupRef(NAMESPACE, "nightly", "0b0e2c7a-uid")
SNAPSHOT_ID = "20240501-120000-abcd"
MOMENT = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)


def clock() -> datetime.datetime:
    """The services' clock, stopped at MOMENT."""
    return MOMENT


@dataclass
class StoredKey:
    name: str
    versions: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)
    managed: bool = False
    deleted: bool = False


class InMemoryVault:
    """``VaultKeys`` over a dict; every call is logged in ``calls`` as (operation, name)."""

    def __init__(self) -> None:
        self.keys: dict[str, StoredKey] = {}
        self.calls: list[tuple[str, str]] = []
        #: Errors to raise from one operation on one key: {(operation, name): error}.
        self.failures: dict[tuple[str, str], KvBackupError] = {}

    def add(
        self,
        name: str,
        *,
        versions: tuple[str, ...] = ("v1",),
        tags: Mapping[str, str] | None = None,
        managed: bool = False,
        deleted: bool = False,
    ) -> None:
        self.keys[name.lower()] = StoredKey(name, versions, dict(tags or {}), managed, deleted)

    def state_of(self, name: str) -> KeyState:
        key = self.keys.get(name.lower())
        if key is None:
            return KeyState.ABSENT
        return KeyState.SOFT_DELETED if key.deleted else KeyState.ACTIVE

    def fail(self, operation: str, name: str, error: KvBackupError) -> None:
        self.failures[(operation, name.lower())] = error

    def names_touched(self) -> set[str]:
        return {name.lower() for _, name in self.calls}

    def _enter(self, operation: str, name: str) -> None:
        self.calls.append((operation, name))
        error = self.failures.get((operation, name.lower()))
        if error is not None:
            raise error

    def _active(self, name: str) -> StoredKey:
        key = self.keys.get(name.lower())
        if key is None or key.deleted:
            raise NotFoundError(f"key {name} not found")
        return key

    async def list_keys(self) -> AsyncIterator[KeyInfo]:
        for key in list(self.keys.values()):
            if not key.deleted:
                yield KeyInfo(key.name, dict(key.tags), key.managed)

    async def list_versions(self, name: str) -> tuple[str, ...]:
        self._enter("list_versions", name)
        return self._active(name).versions

    async def backup_key(self, name: str) -> bytes:
        self._enter("backup_key", name)
        key = self._active(name)
        return json.dumps({"name": key.name, "versions": list(key.versions)}).encode()

    async def key_state(self, name: str) -> KeyState:
        self._enter("key_state", name)
        return self.state_of(name)

    async def restore_key(self, backup: bytes) -> str:
        document = json.loads(backup)
        name = str(document["name"])
        self._enter("restore_key", name)
        if name.lower() in self.keys:
            raise ConflictError(f"key {name} already exists")
        self.add(name, versions=tuple(document["versions"]))
        return name

    async def recover_key(self, name: str) -> None:
        self._enter("recover_key", name)
        key = self.keys.get(name.lower())
        if key is None or not key.deleted:
            raise NotFoundError(f"deleted key {name} not found")
        key.deleted = False

    async def purge_key(self, name: str) -> None:
        self._enter("purge_key", name)
        key = self.keys.get(name.lower())
        if key is None or not key.deleted:
            raise NotFoundError(f"deleted key {name} not found")
        del self.keys[name.lower()]


class InMemoryStore:
    """``SnapshotStore`` over a dict; ``writes`` records the order of writes and deletions.

    Artifacts stored under a snapshot id without a manifest form an incomplete snapshot,
    as the leftovers of a run that died before writing its manifest do.
    """

    def __init__(self) -> None:
        self.artifacts: dict[tuple[str, str, str, str], bytes] = {}
        #: What was recorded beside each artifact when it was written.
        self.recorded: dict[tuple[str, str, str, str], KeyArtifact] = {}
        self.manifests: list[Manifest] = []
        self.writes: list[str] = []
        #: Raised by ``list_stored``, as by a store whose container or credential is wrong.
        self.unavailable: KvBackupError | None = None

    async def write_artifact(
        self,
        keybackup: KeyBackupRef,
        snapshot_id: str,
        key_name: str,
        data: bytes,
        versions: tuple[str, ...] = (),
    ) -> str:
        self.writes.append(f"artifact {key_name}")
        stored = (keybackup.namespace, keybackup.name, snapshot_id, key_name.lower())
        location = f"memory:{key_name.lower()}"
        self.artifacts[stored] = data
        self.recorded[stored] = KeyArtifact(
            key_name, versions, sha256_hex(data), len(data), location
        )
        return location

    async def resumable(self, keybackup: KeyBackupRef, snapshot_id: str) -> list[KeyArtifact]:
        return [
            artifact
            for stored, artifact in self.recorded.items()
            if stored[:3] == (keybackup.namespace, keybackup.name, snapshot_id)
            and artifact.versions
            and sha256_hex(self.artifacts.get(stored, b"")) == artifact.sha256
        ]

    async def write_manifest(self, manifest: Manifest) -> None:
        """Replaces a manifest of the same snapshot, as a redone run's does in storage."""
        self.writes.append("manifest")
        ref = manifest.keybackup
        self.manifests = [
            m
            for m in self.manifests
            if not _of_snapshot(m, ref.namespace, ref.name, manifest.snapshot_id)
        ]
        self.manifests.append(manifest)

    async def list_snapshots(self, namespace: str, keybackup: str) -> list[SnapshotSummary]:
        return [m.summary for m in self._manifests_of(namespace, keybackup)]

    async def read_manifest(self, namespace: str, keybackup: str, snapshot_id: str) -> Manifest:
        for manifest in self._manifests_of(namespace, keybackup):
            if manifest.snapshot_id == snapshot_id:
                return manifest
        raise NotFoundError(f"no manifest of {snapshot_id}")

    def _manifests_of(self, namespace: str, keybackup: str) -> list[Manifest]:
        found = [
            m
            for m in self.manifests
            if m.keybackup.namespace == namespace and m.keybackup.name == keybackup
        ]
        return sorted(found, key=lambda m: m.snapshot_id, reverse=True)

    async def read_artifact(
        self, namespace: str, keybackup: str, snapshot_id: str, artifact: KeyArtifact
    ) -> bytes:
        data = self.artifacts.get((namespace, keybackup, snapshot_id, artifact.name.lower()))
        if data is None:
            raise NotFoundError(
                f"backup of key {artifact.name} is missing", reason="ArtifactMissing"
            )
        return data

    async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
        if self.unavailable is not None:
            raise self.unavailable
        complete = {m.snapshot_id for m in await self.list_snapshots(namespace, keybackup)}
        with_artifacts = {
            snapshot_id
            for (ns, name, snapshot_id, _) in self.artifacts
            if (ns, name) == (namespace, keybackup)
        }
        return [
            StoredSnapshot(snapshot_id, snapshot_id in complete)
            for snapshot_id in sorted(complete | with_artifacts, reverse=True)
        ]

    async def delete_snapshot(self, namespace: str, keybackup: str, snapshot_id: str) -> None:
        """Manifest first, so a half-deleted snapshot never looks complete."""
        self.writes.append(f"delete manifest {snapshot_id}")
        self.manifests = [
            m for m in self.manifests if not _of_snapshot(m, namespace, keybackup, snapshot_id)
        ]
        self.writes.append(f"delete artifacts {snapshot_id}")
        self.artifacts = {
            stored: data
            for stored, data in self.artifacts.items()
            if stored[:3] != (namespace, keybackup, snapshot_id)
        }

    def location(self, namespace: str, keybackup: str, snapshot_id: str) -> str:
        return f"memory://{namespace}/{keybackup}/{snapshot_id}"

    def add_snapshot(
        self,
        snapshot_id: str,
        *,
        complete: bool = True,
        failed: bool = False,
        ref: KeyBackupRef = REF,
    ) -> None:
        """Store one artifact under ``snapshot_id`` and, when ``complete``, its manifest.

        The snapshot completes a minute after the time its id records; ``failed`` adds a
        failed key to the manifest, as a partially failed run leaves one.
        """
        data = b"backup of app-key in " + snapshot_id.encode()
        self.artifacts[(ref.namespace, ref.name, snapshot_id, "app-key")] = data
        if complete:
            self.manifests.append(manifest_at(snapshot_id, failed=failed, ref=ref))

    def replace_artifact(self, key_name: str, data: bytes) -> None:
        """Overwrite a stored backup behind the manifest's back, as a tamperer would."""
        for stored in self.artifacts:
            if stored[3] == key_name.lower():
                self.artifacts[stored] = data
                return
        raise KeyError(key_name)


def _of_snapshot(manifest: Manifest, namespace: str, keybackup: str, snapshot_id: str) -> bool:
    ref = manifest.keybackup
    return (ref.namespace, ref.name, manifest.snapshot_id) == (namespace, keybackup, snapshot_id)


def backup_spec(*names: str, selector: KeySelector | None = None) -> KeyBackupSpec:
    keys = KeyChoice(selector=selector) if selector is not None else KeyChoice(names=names)
    return KeyBackupSpec(vault_url=VAULT_URL, keys=keys, destination=SecretDestination())


def restore_spec(
    *,
    keys: tuple[str, ...] | None = None,
    strategy: Strategy = Strategy.AUTO,
    on_conflict: OnConflict = OnConflict.SKIP,
    purge_deleted: bool = False,
    snapshot: str = LATEST,
    dry_run: bool = False,
) -> KeyRestoreSpec:
    """A KeyRestore from a snapshot of ``REF`` into the vault at ``TARGET_URL``."""
    return KeyRestoreSpec(
        vault_url=TARGET_URL,
        source=SnapshotSource(REF.name, snapshot),
        keys=keys,
        strategy=strategy,
        on_conflict=on_conflict,
        purge_deleted=purge_deleted,
        dry_run=dry_run,
    )


def manifest_of(
    *artifacts: KeyArtifact, ref: KeyBackupRef = REF, snapshot_id: str = SNAPSHOT_ID
) -> Manifest:
    """The manifest of a complete snapshot listing ``artifacts``, as a run at MOMENT writes it."""
    return Manifest(
        snapshot_id=snapshot_id,
        keybackup=ref,
        vault_url=VAULT_URL,
        start_time=MOMENT,
        completion_time=MOMENT + datetime.timedelta(seconds=30),
        operator_version="0.1.0",
        keys=artifacts,
    )


def artifacts_of(
    backups: Mapping[str, bytes], locations: Mapping[str, str] | None = None
) -> tuple[KeyArtifact, ...]:
    """What a manifest records of each key's backup bytes (versions v1 and v2), with where
    the store put them (``locations``, by key name; none: found by key name)."""
    where = locations or {}
    return tuple(
        KeyArtifact(name, ("v1", "v2"), sha256_hex(data), len(data), where.get(name, ""))
        for name, data in backups.items()
    )


def manifest_at(snapshot_id: str, *, failed: bool = False, ref: KeyBackupRef = REF) -> Manifest:
    """A manifest started at the time ``snapshot_id`` records and completed a minute later."""
    started = datetime.datetime.strptime(snapshot_id[:15], "%Y%m%d-%H%M%S").replace(
        tzinfo=datetime.UTC
    )
    return Manifest(
        snapshot_id=snapshot_id,
        keybackup=ref,
        vault_url=VAULT_URL,
        start_time=started,
        completion_time=started + datetime.timedelta(minutes=1),
        operator_version="0.1.0",
        keys=(KeyArtifact("app-key", ("v1",), "0" * 64, 10),),
        failures=(KeyFailure("gone-key", "NotFound", "key gone-key not found"),) if failed else (),
    )


def opened(store: InMemoryStore, manifest: Manifest) -> OpenedSnapshot:
    """``manifest``'s snapshot, read from ``store`` as the runtime hands it to a restore."""
    ref = manifest.keybackup
    return OpenedSnapshot(
        manifest, partial(store.read_artifact, ref.namespace, ref.name, manifest.snapshot_id)
    )


async def take_snapshot(store: InMemoryStore, *keys: tuple[str, tuple[str, ...]]) -> Manifest:
    """Back up ``keys`` (name, versions) from a fresh source vault into ``store``."""
    source = InMemoryVault()
    for name, versions in keys:
        source.add(name, versions=versions)
    await run_backup(
        backup_spec(*(name for name, _ in keys)), REF, SNAPSHOT_ID, source, store, clock=clock
    )
    return store.manifests[-1]
