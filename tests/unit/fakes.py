"""In-memory stand-ins for the service ports, and builders shared by the tests.

``InMemoryVault`` and ``InMemoryStore`` implement the ``VaultItems`` and ``SnapshotStore``
protocols of ``kvbackup.services.ports`` with plain dictionaries. They model the few
Key Vault rules the domain logic relies on: key names are case-insensitive, a deleted
key stays soft-deleted until purged, and restoring a backup over a name that still
exists (active or soft-deleted) is a conflict.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo

from kvbackup.api.keybackup import (
    ItemChoice,
    ItemSelector,
    KeyBackupRef,
    KeyBackupSpec,
    SecretDestination,
)
from kvbackup.api.keyrestore import LATEST, KeyRestoreSpec, OnConflict, SnapshotSource, Strategy
from kvbackup.api.kinds import ItemKind
from kvbackup.errors import ConflictError, InvalidSpecError, KvBackupError, NotFoundError
from kvbackup.services.backup import run_backup
from kvbackup.services.ports import (
    ItemInfo,
    ItemState,
    ItemVersions,
    OpenedSnapshot,
    StoredSnapshot,
)
from kvbackup.services.snapshot import (
    Artifact,
    ChangeRecord,
    ItemFailure,
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


class Ticking:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = MOMENT

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += datetime.timedelta(**delta)


def clock() -> datetime.datetime:
    """The services' clock, stopped at MOMENT."""
    return MOMENT


#: When the items of an ``InMemoryVault`` were last updated, unless a test changes them.
UPDATED = MOMENT - datetime.timedelta(days=1)


@dataclass
class StoredItem:
    name: str
    versions: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)
    managed: bool = False
    deleted: bool = False
    updated: datetime.datetime = UPDATED
    #: Attributes of versions before the current one, which a listing does not show.
    older_attributes: str = ""

    @property
    def listed(self) -> ChangeRecord:
        """What a listing of the vault's items says of it."""
        return ChangeRecord.of(self.updated, [self.versions[-1:], sorted(self.tags.items())])

    @property
    def versions_listed(self) -> ChangeRecord:
        """What a listing of its versions says of it: every version's attributes."""
        return ChangeRecord.of(self.updated, [self.versions, self.older_attributes])


def operation(verb: str, kind: ItemKind) -> str:
    """How ``InMemoryVault.calls`` names a call: ``backup_key``, ``restore_secret``,
    ``certificate_state``, ``list_versions`` (of a key), ``list_secret_versions``."""
    if verb == "state":
        return f"{kind}_state"
    if verb == "list_versions":
        return verb if kind is ItemKind.KEY else f"list_{kind}_versions"
    return f"{verb}_{kind}"


class InMemoryVault:
    """``VaultItems`` over a dict; every call is logged in ``calls`` as (operation, name),
    the operation named by ``operation``. Each kind has names of its own, as in Key Vault."""

    def __init__(self) -> None:
        self.items: dict[tuple[ItemKind, str], StoredItem] = {}
        self.calls: list[tuple[str, str]] = []
        #: Errors to raise from one operation on one item: {(operation, name): error}.
        self.failures: dict[tuple[str, str], KvBackupError] = {}

    def add(
        self,
        name: str,
        *,
        versions: tuple[str, ...] = ("v1",),
        tags: Mapping[str, str] | None = None,
        managed: bool = False,
        deleted: bool = False,
        kind: ItemKind = ItemKind.KEY,
    ) -> None:
        self.items[(kind, name.lower())] = StoredItem(
            name, versions, dict(tags or {}), managed, deleted
        )

    def add_certificate(self, name: str, *, versions: tuple[str, ...] = ("v1",)) -> None:
        """A certificate with the key and the secret Key Vault makes for it, both managed."""
        self.add(name, versions=versions, kind=ItemKind.CERTIFICATE)
        for kind in (ItemKind.KEY, ItemKind.SECRET):
            self.add(name, versions=versions, managed=True, kind=kind)

    def change(
        self,
        name: str,
        at: datetime.datetime,
        *,
        versions: tuple[str, ...] | None = None,
        tags: Mapping[str, str] | None = None,
        older_attributes: str | None = None,
        kind: ItemKind = ItemKind.KEY,
    ) -> None:
        """Change an item at ``at``: a new version, its tags, or an older version's
        attributes (which leaves the listing's ``updated`` as it was, as Key Vault does)."""
        item = self.items[(kind, name.lower())]
        if versions is not None:
            item.versions = versions
        if tags is not None:
            item.tags = dict(tags)
        if older_attributes is not None:
            item.older_attributes = older_attributes
        else:
            item.updated = at

    def state_of(self, name: str, kind: ItemKind = ItemKind.KEY) -> ItemState:
        item = self.items.get((kind, name.lower()))
        if item is None:
            return ItemState.ABSENT
        return ItemState.SOFT_DELETED if item.deleted else ItemState.ACTIVE

    def fail(self, operation: str, name: str, error: KvBackupError) -> None:
        self.failures[(operation, name.lower())] = error

    def names_touched(self) -> set[str]:
        return {name.lower() for _, name in self.calls}

    def _enter(self, verb: str, kind: ItemKind, name: str) -> None:
        called = operation(verb, kind)
        self.calls.append((called, name))
        error = self.failures.get((called, name.lower()))
        if error is not None:
            raise error

    def _active(self, kind: ItemKind, name: str) -> StoredItem:
        item = self.items.get((kind, name.lower()))
        if item is None or item.deleted:
            raise NotFoundError(f"{kind} {name} not found")
        return item

    async def list_items(self, kind: ItemKind) -> AsyncIterator[ItemInfo]:
        for (of_kind, _), item in list(self.items.items()):
            if of_kind is kind and not item.deleted:
                yield ItemInfo(item.name, dict(item.tags), item.managed, item.listed)

    async def list_versions(self, kind: ItemKind, name: str) -> ItemVersions:
        self._enter("list_versions", kind, name)
        item = self._active(kind, name)
        return ItemVersions(item.versions, item.versions_listed)

    async def backup(self, kind: ItemKind, name: str) -> bytes:
        self._enter("backup", kind, name)
        item = self._active(kind, name)
        document = {
            "kind": kind.value,
            "name": item.name,
            "versions": list(item.versions),
            "tags": item.tags,
            "older": item.older_attributes,
        }
        return json.dumps(document).encode()

    async def item_state(self, kind: ItemKind, name: str) -> ItemState:
        self._enter("state", kind, name)
        return self.state_of(name, kind)

    async def restore(self, kind: ItemKind, backup: bytes) -> str:
        document = json.loads(backup)
        name = str(document["name"])
        self._enter("restore", kind, name)
        if document.get("kind", ItemKind.KEY.value) != kind.value:
            raise InvalidSpecError(f"the backup of {name} is not a {kind} backup")
        if (kind, name.lower()) in self.items:
            raise ConflictError(f"{kind} {name} already exists")
        self.add(name, versions=tuple(document["versions"]), kind=kind)
        return name

    async def recover(self, kind: ItemKind, name: str) -> None:
        self._enter("recover", kind, name)
        item = self.items.get((kind, name.lower()))
        if item is None or not item.deleted:
            raise NotFoundError(f"deleted {kind} {name} not found")
        item.deleted = False

    async def purge(self, kind: ItemKind, name: str) -> None:
        self._enter("purge", kind, name)
        item = self.items.get((kind, name.lower()))
        if item is None or not item.deleted:
            raise NotFoundError(f"deleted {kind} {name} not found")
        del self.items[(kind, name.lower())]


class InMemoryStore:
    """``SnapshotStore`` over a dict; ``writes`` records the order of writes and deletions.

    Artifacts stored under a snapshot id without a manifest form an incomplete snapshot,
    as the leftovers of a run that died before writing its manifest do.
    """

    def __init__(self) -> None:
        self.artifacts: dict[tuple[str, str, str, str], bytes] = {}
        #: What was recorded beside each artifact when it was written.
        self.recorded: dict[tuple[str, str, str, str], Artifact] = {}
        #: Manifests as written: whole or differential.
        self.manifests: list[Manifest] = []
        #: The summary written beside each manifest, by (namespace, keybackup, snapshot id).
        self.summaries: dict[tuple[str, str, str], SnapshotSummary] = {}
        self.writes: list[str] = []
        #: Raised by ``list_stored``, as by a store whose container or credential is wrong.
        self.unavailable: KvBackupError | None = None

    async def write_artifact(
        self,
        keybackup: KeyBackupRef,
        snapshot_id: str,
        kind: ItemKind,
        name: str,
        data: bytes,
        versions: tuple[str, ...] = (),
    ) -> str:
        self.writes.append(f"artifact {name}" if kind is ItemKind.KEY else f"{kind} {name}")
        stored = (keybackup.namespace, keybackup.name, snapshot_id, _stored_name(kind, name))
        location = f"memory:{_stored_name(kind, name)}"
        self.artifacts[stored] = data
        self.recorded[stored] = Artifact(
            name, versions, sha256_hex(data), len(data), location, kind
        )
        return location

    async def resumable(self, keybackup: KeyBackupRef, snapshot_id: str) -> list[Artifact]:
        return [
            artifact
            for stored, artifact in self.recorded.items()
            if stored[:3] == (keybackup.namespace, keybackup.name, snapshot_id)
            and artifact.versions
            and sha256_hex(self.artifacts.get(stored, b"")) == artifact.sha256
        ]

    async def write_manifest(self, manifest: Manifest, summary: SnapshotSummary) -> None:
        """Replaces a manifest of the same snapshot, as a redone run's does in storage."""
        self.writes.append("manifest")
        ref = manifest.keybackup
        self.manifests = [
            m
            for m in self.manifests
            if not _of_snapshot(m, ref.namespace, ref.name, manifest.snapshot_id)
        ]
        self.manifests.append(manifest)
        self.summaries[(ref.namespace, ref.name, manifest.snapshot_id)] = summary

    async def list_snapshots(self, namespace: str, keybackup: str) -> list[SnapshotSummary]:
        """The summaries written; of a manifest a test added directly, its own."""
        return [
            self.summaries.get((namespace, keybackup, m.snapshot_id)) or m.summary
            for m in self._manifests_of(namespace, keybackup)
        ]

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
        self, namespace: str, keybackup: str, snapshot_id: str, artifact: Artifact
    ) -> bytes:
        stored = _stored_name(artifact.kind, artifact.name)
        data = self.artifacts.get((namespace, keybackup, artifact.home(snapshot_id), stored))
        if data is None:
            raise NotFoundError(
                f"backup of {artifact.kind} {artifact.name} is missing", reason="ArtifactMissing"
            )
        return data

    async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
        if self.unavailable is not None:
            raise self.unavailable
        complete = {m.snapshot_id for m in self._manifests_of(namespace, keybackup)}
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
            manifest = manifest_at(snapshot_id, failed=failed, ref=ref)
            stored = Artifact("app-key", ("v1",), sha256_hex(data), len(data))
            self.manifests.append(replace(manifest, artifacts=(stored,)))

    def replace_artifact(self, name: str, data: bytes, kind: ItemKind = ItemKind.KEY) -> None:
        """Overwrite a stored backup behind the manifest's back, as a tamperer would."""
        for stored in self.artifacts:
            if stored[3] == _stored_name(kind, name):
                self.artifacts[stored] = data
                return
        raise KeyError(name)


def _stored_name(kind: ItemKind, name: str) -> str:
    """Where the store keeps an item: keys under their name, as before other kinds."""
    return name.lower() if kind is ItemKind.KEY else f"{kind}/{name.lower()}"


def _of_snapshot(manifest: Manifest, namespace: str, keybackup: str, snapshot_id: str) -> bool:
    ref = manifest.keybackup
    return (ref.namespace, ref.name, manifest.snapshot_id) == (namespace, keybackup, snapshot_id)


def backup_spec(
    *names: str,
    selector: ItemSelector | None = None,
    choices: Mapping[ItemKind, ItemChoice] | None = None,
) -> KeyBackupSpec:
    """A KeyBackup of the keys ``names``, or of those ``selector`` chooses; or of
    ``choices``, per kind."""
    keys = ItemChoice(selector=selector) if selector is not None else ItemChoice(names=names)
    return KeyBackupSpec(
        vault_url=VAULT_URL,
        choices=choices if choices is not None else {ItemKind.KEY: keys},
        destination=SecretDestination(),
    )


def restore_spec(
    *,
    keys: tuple[str, ...] | None = None,
    items: Mapping[ItemKind, tuple[str, ...]] | None = None,
    strategy: Strategy = Strategy.AUTO,
    on_conflict: OnConflict = OnConflict.SKIP,
    purge_deleted: bool | frozenset[ItemKind] = False,
    snapshot: str = LATEST,
    dry_run: bool = False,
) -> KeyRestoreSpec:
    """A KeyRestore from a snapshot of ``REF`` into the vault at ``TARGET_URL``; ``keys``
    names keys only, ``items`` names items per kind; ``purge_deleted`` True purges keys."""
    purged = frozenset({ItemKind.KEY}) if purge_deleted is True else purge_deleted or frozenset()
    return KeyRestoreSpec(
        vault_url=TARGET_URL,
        source=SnapshotSource(REF.name, snapshot),
        items=items if items is not None else {ItemKind.KEY: keys} if keys else None,
        strategy=strategy,
        on_conflict=on_conflict,
        purge_deleted=purged,
        dry_run=dry_run,
    )


def manifest_of(
    *artifacts: Artifact, ref: KeyBackupRef = REF, snapshot_id: str = SNAPSHOT_ID
) -> Manifest:
    """The manifest of a complete snapshot listing ``artifacts``, as a run at MOMENT writes it."""
    return Manifest(
        snapshot_id=snapshot_id,
        keybackup=ref,
        vault_url=VAULT_URL,
        start_time=MOMENT,
        completion_time=MOMENT + datetime.timedelta(seconds=30),
        operator_version="0.1.0",
        artifacts=artifacts,
    )


def artifacts_of(
    backups: Mapping[str, bytes], locations: Mapping[str, str] | None = None
) -> tuple[Artifact, ...]:
    """What a manifest records of each key's backup bytes (versions v1 and v2), with where
    the store put them (``locations``, by key name; none: found by key name)."""
    where = locations or {}
    return tuple(
        Artifact(name, ("v1", "v2"), sha256_hex(data), len(data), where.get(name, ""))
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
        artifacts=(Artifact("app-key", ("v1",), "0" * 64, 10),),
        failures=(ItemFailure("gone-key", "NotFound", "key gone-key not found"),) if failed else (),
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


class StaticToken:
    """An async credential whose token never expires: for clients of the emulators and
    of fakes, which accept any token."""

    async def get_token(self, *_: Any, **__: Any) -> AccessToken:
        return AccessToken("token", 2**31)

    async def get_token_info(self, *_: Any, **__: Any) -> AccessTokenInfo:
        return AccessTokenInfo("token", 2**31)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> StaticToken:
        return self

    async def __aexit__(self, *_: object) -> None:
        pass
