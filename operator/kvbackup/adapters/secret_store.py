"""Snapshots kept as Kubernetes Secrets in the KeyBackup's own namespace.

Layout, for KeyBackup ``kb`` and snapshot ``s``:

* ``kb-s-a-<run>-<n>`` (role ``artifact``): a pack of many keys, up to ``pack_size``
  bytes. Data entry ``<key-name>`` holds the exact bytes ``backup_key`` returned for that
  key; ``kvbackup.index.json`` lists each entry's versions and sha256, so a resumed run
  can check the pack instead of backing its keys up again. A key larger than a pack is
  split over packs of its own, as entries ``<key-name>.0``, ``<key-name>.1``, ...
  (Key Vault names hold only letters, digits and dashes, so no key name has a dot.)
* ``kb-s-m<i>`` (role ``manifest-part``): part ``i`` of the manifest (``manifest.json``);
  the manifest records which Secrets hold each key.
* ``kb-s`` (role ``manifest``): the snapshot's summary (``summary.json``), with the
  number and sha256 of the manifest parts; written last, it makes the snapshot complete.

Snapshots written before packing (one Secret ``kb-s-k<hash>-p<i>`` per key part, and
the whole manifest in ``kb-s``) are still listed and restored.

Every Secret carries the labels ``kvbackup.io/keybackup``, ``kvbackup.io/snapshot`` and
``kvbackup.io/role``, and no owner reference, so backups outlive the KeyBackup object.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.api import KEYBACKUP_LABEL, ROLE_LABEL, SNAPSHOT_LABEL
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.errors import ConflictError, IntegrityError, KvBackupError, NotFoundError
from kvbackup.services.ports import StoredSnapshot
from kvbackup.services.snapshot import KeyArtifact, Manifest, SnapshotSummary, sha256_hex

#: Bytes per Secret, index included: under the API server's 1 MiB limit on Secret data.
DEFAULT_PACK_SIZE = 900_000
INDEX_DATA_KEY = "kvbackup.index.json"
MANIFEST_DATA_KEY = "manifest.json"
SUMMARY_DATA_KEY = "summary.json"
MANIFEST_PARTS_ANNOTATION = "kvbackup.io/manifest-parts"
MANIFEST_SHA256_ANNOTATION = "kvbackup.io/manifest-sha256"
#: Longest a pack stays open before it is written, full or not: what a crash can lose
#: of a slow run, since a resumed run keeps only what was written.
PACK_MAX_AGE_SECONDS = 5.0
#: Packs kept decoded while restoring: keys are read roughly in the order they were packed.
CACHED_PACKS = 4
#: Packs per page when a resumed run reads back what its snapshot holds.
RESUME_PAGE = 2
#: Index bytes reserved per key beside its name and versions.
INDEX_ENTRY_OVERHEAD = 160
#: The layout before packing: part ``i`` of one key in data key ``backup``.
LEGACY_DATA_KEY = "backup"
LEGACY_PARTS_ANNOTATION = "kvbackup.io/parts"


def manifest_secret_name(keybackup: str, snapshot_id: str) -> str:
    return f"{keybackup}-{snapshot_id}"


def manifest_part_name(keybackup: str, snapshot_id: str, part: int) -> str:
    return f"{keybackup}-{snapshot_id}-m{part}"


def legacy_artifact_name(keybackup: str, snapshot_id: str, key_name: str, part: int) -> str:
    digest = hashlib.sha256(key_name.lower().encode()).hexdigest()[:12]
    return f"{keybackup}-{snapshot_id}-k{digest}-p{part}"


def pack_secret_name(keybackup: str, snapshot_id: str, run: str, number: int) -> str:
    return f"{keybackup}-{snapshot_id}-a-{run}-{number}"


def entry_name(key_name: str, chunk: int, chunks: int) -> str:
    """The data key of one key's bytes, or of one chunk of a key split over packs."""
    return key_name if chunks == 1 else f"{key_name}.{chunk}"


@dataclass
class _Pack:
    name: str
    data: dict[str, bytes] = field(default_factory=dict)
    index: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    opened: float = field(default_factory=time.monotonic)

    @property
    def stale(self) -> bool:
        return time.monotonic() - self.opened >= PACK_MAX_AGE_SECONDS


class SecretSnapshotStore:
    """``SnapshotStore`` on Kubernetes Secrets; one instance serves one run."""

    def __init__(self, api: KubernetesApi, pack_size: int = DEFAULT_PACK_SIZE) -> None:
        self._api = api
        self._pack_size = pack_size
        # Packs are named per run, so a resumed run never overwrites what it resumes.
        self._run = secrets.token_hex(2)
        self._packs_started = 0
        self._open: dict[tuple[str, str, str], _Pack] = {}
        self._write_failure: KvBackupError | None = None
        self._cached: OrderedDict[tuple[str, str], Mapping[str, str]] = OrderedDict()

    async def write_artifact(
        self,
        keybackup: KeyBackupRef,
        snapshot_id: str,
        key_name: str,
        data: bytes,
        versions: tuple[str, ...] = (),
    ) -> str:
        entry = {"name": key_name, "versions": list(versions), "sha256": sha256_hex(data)}
        room = self._pack_size - INDEX_ENTRY_OVERHEAD - len(json.dumps(entry))
        if len(data) > room:
            return await self._write_split(keybackup, snapshot_id, entry, data, room)
        # Bookkeeping first, writes after: other keys join the next pack meanwhile.
        slot = (keybackup.namespace, keybackup.name, snapshot_id)
        ready = []
        pack = self._open.get(slot)
        if pack is not None and pack.size + len(data) > room:
            ready.append(self._open.pop(slot))
            pack = None
        if pack is None:
            pack = self._open[slot] = self._new_pack(keybackup, snapshot_id)
        pack.data[key_name] = data
        pack.index.append({**entry, "size": len(data), "chunk": 0, "chunks": 1})
        pack.size += self._pack_size - room + len(data)
        if pack.stale:
            ready.append(self._open.pop(slot))
        for finished in ready:
            await self._write_pack(keybackup, snapshot_id, finished)
        return pack.name

    async def resumable(self, keybackup: KeyBackupRef, snapshot_id: str) -> list[KeyArtifact]:
        chunks: dict[str, dict[int, bytes]] = {}
        entries: dict[str, tuple[dict[str, Any], dict[int, str]]] = {}
        async for item in self._api.list_secrets(
            f"list stored backups of snapshot {snapshot_id}",
            keybackup.namespace,
            _selector(keybackup.name, snapshot_id, "artifact"),
            page_size=RESUME_PAGE,
        ):
            pack_name = str((item.get("metadata") or {}).get("name", ""))
            data = item.get("data") or {}
            for entry in _pack_index(data):
                name, chunk, total = entry["name"], entry["chunk"], entry["chunks"]
                encoded = data.get(entry_name(name, chunk, total))
                if encoded is None:
                    continue
                chunks.setdefault(name, {})[chunk] = _decode(encoded)
                entries.setdefault(name, (entry, {}))[1][chunk] = pack_name
        found = []
        for name, (entry, packs) in entries.items():
            total = int(entry["chunks"])
            if sorted(chunks[name]) != list(range(total)):
                continue
            whole = b"".join(chunks[name][i] for i in range(total))
            if entry["versions"] and entry["sha256"] == sha256_hex(whole):
                location = ",".join(packs[i] for i in range(total))
                artifact = KeyArtifact(
                    name, tuple(entry["versions"]), entry["sha256"], len(whole), location
                )
                found.append(artifact)
        return found

    async def write_manifest(self, manifest: Manifest) -> None:
        ref = manifest.keybackup
        pack = self._open.pop((ref.namespace, ref.name, manifest.snapshot_id), None)
        if pack is not None and pack.data:
            await self._write_pack(ref, manifest.snapshot_id, pack)
        if self._write_failure is not None:
            # Keys already counted as stored were in the pack that failed: no manifest may
            # claim them. The run is retried and resumes from the packs that did land.
            raise self._write_failure
        document = manifest.to_json()
        parts = [
            document[i : i + self._pack_size] for i in range(0, len(document), self._pack_size)
        ]
        for index, part in enumerate(parts):
            await self._put(
                ref.namespace,
                manifest_part_name(ref.name, manifest.snapshot_id, index),
                _labels(ref.name, manifest.snapshot_id, "manifest-part"),
                {MANIFEST_DATA_KEY: part},
            )
        await self._put(
            ref.namespace,
            manifest_secret_name(ref.name, manifest.snapshot_id),
            _labels(ref.name, manifest.snapshot_id, "manifest"),
            {SUMMARY_DATA_KEY: manifest.summary.to_json()},
            annotations={
                MANIFEST_PARTS_ANNOTATION: str(len(parts)),
                MANIFEST_SHA256_ANNOTATION: sha256_hex(document),
            },
        )

    async def list_snapshots(self, namespace: str, keybackup: str) -> list[SnapshotSummary]:
        summaries = []
        async for item in self._api.list_secrets(
            f"list snapshots of {namespace}/{keybackup}",
            namespace,
            f"{KEYBACKUP_LABEL}={keybackup},{ROLE_LABEL}=manifest",
        ):
            data = item.get("data") or {}
            if SUMMARY_DATA_KEY in data:
                summaries.append(SnapshotSummary.from_json(_decode(data[SUMMARY_DATA_KEY])))
            elif MANIFEST_DATA_KEY in data:
                summaries.append(Manifest.from_json(_decode(data[MANIFEST_DATA_KEY])).summary)
        return sorted(summaries, key=lambda s: s.snapshot_id, reverse=True)

    async def read_manifest(self, namespace: str, keybackup: str, snapshot_id: str) -> Manifest:
        name = manifest_secret_name(keybackup, snapshot_id)
        secret = await self._api.read_secret(
            f"read the manifest of snapshot {snapshot_id}", namespace, name
        )
        data = secret.get("data") or {}
        if MANIFEST_DATA_KEY in data:
            return Manifest.from_json(_decode(data[MANIFEST_DATA_KEY]))
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        try:
            total = int(annotations[MANIFEST_PARTS_ANNOTATION])
            expected = str(annotations[MANIFEST_SHA256_ANNOTATION])
        except (KeyError, ValueError):
            raise IntegrityError(
                f"Secret {namespace}/{name} does not say how its manifest is stored"
            ) from None
        parts = []
        for index in range(total):
            part = await self._api.read_secret(
                f"read the manifest of snapshot {snapshot_id}",
                namespace,
                manifest_part_name(keybackup, snapshot_id, index),
            )
            parts.append(_decode((part.get("data") or {}).get(MANIFEST_DATA_KEY, "")))
        document = b"".join(parts)
        if sha256_hex(document) != expected:
            raise IntegrityError(
                f"the manifest of snapshot {snapshot_id} has sha256 {sha256_hex(document)}; "
                f"Secret {namespace}/{name} recorded {expected}"
            )
        return Manifest.from_json(document)

    async def read_artifact(
        self, namespace: str, keybackup: str, snapshot_id: str, artifact: KeyArtifact
    ) -> bytes:
        if not artifact.location:
            return await self._read_legacy(namespace, keybackup, snapshot_id, artifact.name)
        packs = artifact.location.split(",")
        chunks = []
        for chunk, pack_name in enumerate(packs):
            data = await self._pack_data(namespace, pack_name, artifact.name)
            encoded = data.get(entry_name(artifact.name, chunk, len(packs)))
            if encoded is None:
                raise NotFoundError(
                    f"backup of key {artifact.name} is missing from Secret {namespace}/{pack_name}",
                    reason="ArtifactMissing",
                )
            chunks.append(_decode(encoded))
        return b"".join(chunks)

    async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
        complete: dict[str, bool] = {}
        for meta in await self._api.list_secret_metadata(
            f"list stored snapshots of {namespace}/{keybackup}",
            namespace,
            f"{KEYBACKUP_LABEL}={keybackup}",
        ):
            labels = meta.get("labels") or {}
            snapshot_id = labels.get(SNAPSHOT_LABEL)
            if snapshot_id:
                is_manifest = labels.get(ROLE_LABEL) == "manifest"
                complete[snapshot_id] = complete.get(snapshot_id, False) or is_manifest
        return [StoredSnapshot(sid, done) for sid, done in sorted(complete.items(), reverse=True)]

    async def delete_snapshot(self, namespace: str, keybackup: str, snapshot_id: str) -> None:
        selector = f"{KEYBACKUP_LABEL}={keybackup},{SNAPSHOT_LABEL}={snapshot_id}"
        for narrowed in (f"{selector},{ROLE_LABEL}=manifest", selector):
            await self._api.call(
                f"delete snapshot {snapshot_id} of {namespace}/{keybackup}",
                self._api.core.delete_collection_namespaced_secret,
                namespace,
                label_selector=narrowed,
            )

    def location(self, namespace: str, keybackup: str, snapshot_id: str) -> str:
        return (
            f"secrets in namespace {namespace} with labels "
            f"{KEYBACKUP_LABEL}={keybackup},{SNAPSHOT_LABEL}={snapshot_id}"
        )

    def _new_pack(self, keybackup: KeyBackupRef, snapshot_id: str) -> _Pack:
        number = self._packs_started
        self._packs_started += 1
        return _Pack(pack_secret_name(keybackup.name, snapshot_id, self._run, number))

    async def _write_split(
        self,
        keybackup: KeyBackupRef,
        snapshot_id: str,
        entry: dict[str, Any],
        data: bytes,
        room: int,
    ) -> str:
        """A key too large for one pack: each chunk in a pack of its own, written now."""
        chunks = [data[i : i + room] for i in range(0, len(data), room)]
        names = []
        for chunk, piece in enumerate(chunks):
            pack = self._new_pack(keybackup, snapshot_id)
            pack.data[entry_name(entry["name"], chunk, len(chunks))] = piece
            pack.index.append({**entry, "size": len(data), "chunk": chunk, "chunks": len(chunks)})
            await self._write_pack(keybackup, snapshot_id, pack)
            names.append(pack.name)
        return ",".join(names)

    async def _write_pack(self, keybackup: KeyBackupRef, snapshot_id: str, pack: _Pack) -> None:
        index = json.dumps(pack.index, separators=(",", ":")).encode()
        try:
            await self._put(
                keybackup.namespace,
                pack.name,
                _labels(keybackup.name, snapshot_id, "artifact"),
                {**pack.data, INDEX_DATA_KEY: index},
            )
        except KvBackupError as error:
            self._write_failure = self._write_failure or error
            raise

    async def _pack_data(self, namespace: str, pack_name: str, key_name: str) -> Mapping[str, str]:
        """A pack's data entries, still base64-encoded; the last few packs are kept."""
        slot = (namespace, pack_name)
        cached = self._cached.get(slot)
        if cached is not None:
            self._cached.move_to_end(slot)
            return cached
        try:
            secret = await self._api.read_secret(
                f"read backup of key {key_name}", namespace, pack_name
            )
        except NotFoundError:
            raise NotFoundError(
                f"backup of key {key_name} is missing (Secret {namespace}/{pack_name})",
                reason="ArtifactMissing",
            ) from None
        data: Mapping[str, str] = secret.get("data") or {}
        self._cached[slot] = data
        while len(self._cached) > CACHED_PACKS:
            self._cached.popitem(last=False)
        return data

    async def _read_legacy(
        self, namespace: str, keybackup: str, snapshot_id: str, key_name: str
    ) -> bytes:
        chunks: list[bytes] = []
        total = 1
        while len(chunks) < total:
            name = legacy_artifact_name(keybackup, snapshot_id, key_name, len(chunks))
            try:
                secret = await self._api.read_secret(
                    f"read backup of key {key_name}", namespace, name
                )
            except NotFoundError:
                raise NotFoundError(
                    f"backup of key {key_name} is missing from snapshot {snapshot_id} "
                    f"(Secret {name})",
                    reason="ArtifactMissing",
                ) from None
            annotations = (secret.get("metadata") or {}).get("annotations") or {}
            total = int(annotations.get(LEGACY_PARTS_ANNOTATION, "1"))
            chunks.append(_decode((secret.get("data") or {}).get(LEGACY_DATA_KEY, "")))
        return b"".join(chunks)

    async def _put(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        data: Mapping[str, bytes],
        *,
        annotations: dict[str, str] | None = None,
    ) -> None:
        """Create the Secret, or replace it: redoing a crashed run must not duplicate it."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        }
        what = f"write Secret {namespace}/{name}"
        try:
            await self._api.call(what, self._api.core.create_namespaced_secret, namespace, body)
        except ConflictError:
            await self._api.call(
                what, self._api.core.replace_namespaced_secret, name, namespace, body
            )


def _pack_index(data: Mapping[str, str]) -> list[dict[str, Any]]:
    """A pack's index; entries that do not parse are left out (their keys are redone)."""
    try:
        entries = json.loads(_decode(data.get(INDEX_DATA_KEY, "")) or b"[]")
    except (ValueError, IntegrityError):
        return []
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if _is_index_entry(entry)]


def _is_index_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and isinstance(entry.get("versions"), list)
        and isinstance(entry.get("sha256"), str)
        and isinstance(entry.get("chunk"), int)
        and isinstance(entry.get("chunks"), int)
        and 0 <= entry["chunk"] < entry["chunks"]
    )


def _decode(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise IntegrityError("a stored Secret holds data that is not base64") from None


def _selector(keybackup: str, snapshot_id: str, role: str) -> str:
    return f"{KEYBACKUP_LABEL}={keybackup},{SNAPSHOT_LABEL}={snapshot_id},{ROLE_LABEL}={role}"


def _labels(keybackup: str, snapshot_id: str, role: str) -> dict[str, str]:
    return {KEYBACKUP_LABEL: keybackup, SNAPSHOT_LABEL: snapshot_id, ROLE_LABEL: role}
