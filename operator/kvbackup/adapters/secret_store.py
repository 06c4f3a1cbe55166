"""Snapshots kept as Kubernetes Secrets in the KeyBackup's own namespace.

Layout, for KeyBackup ``kb`` and snapshot ``s``:

* ``kb-s-a-<run>-<n>`` (role ``artifact``): a pack of many items (keys, secrets and
  certificates alike), up to ``pack_size`` bytes. Each item's data entry holds the exact
  bytes Key Vault's backup of it returned: ``<name>`` for a key (as before there were
  other kinds), ``secret_<name>`` for a secret, ``certificate_<name>`` for a certificate,
  so that items of different kinds sharing a name stay apart. ``kvbackup.index.json``
  lists each entry's kind, versions and sha256, so a resumed run can check the pack
  instead of backing its items up again (an entry without a kind is a key's, as packs
  written before there were other kinds have). An item larger than a pack is split over
  packs of its own, as entries ``<entry>.0``, ``<entry>.1``, ... (Key Vault names hold
  only letters, digits and dashes, so no name has a dot or an underscore.)
* ``kb-s-m<i>`` (role ``manifest-part``): part ``i`` of the manifest (``manifest.json``);
  the manifest records which Secrets hold each item.
* ``kb-s`` (role ``manifest``): the snapshot's summary (``summary.json``), with the
  number and sha256 of the manifest parts; written last, it makes the snapshot complete.

Snapshots written before packing (one Secret ``kb-s-k<hash>-p<i>`` per key part, and
the whole manifest in ``kb-s``) are still listed and restored; they hold keys only.

An item unchanged since an earlier snapshot is not stored again: its manifest entry's
``storedIn`` names the snapshot whose packs hold the bytes, and those packs keep that
snapshot's labels and names. So ``kubectl get secrets -l
kvbackup.io/keybackup=<kb>,kvbackup.io/snapshot=<storedIn>`` finds them, and the
break-glass commands read the item from there as from any snapshot's packs.

Every Secret carries the labels ``kvbackup.io/keybackup``, ``kvbackup.io/snapshot`` and
``kvbackup.io/role``, and no owner reference, so backups outlive the KeyBackup object.

A tenant can create and edit Secrets in its namespace, so what is read back is checked
before it is used: a Secret is taken for part of a snapshot only when its name is the one
this store gives that part and its labels say the same KeyBackup, snapshot and role; a
snapshot id is read from a label only when it is a snapshot id, and every data entry is
bounded before it is decoded. A manifest's ``location`` may name only packs of the
snapshot holding the item (its own, or the one ``storedIn`` names, which is only a
snapshot id and so always one of the same KeyBackup), so no other Secret is read, nor
its digest or size reported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.api import KEYBACKUP_LABEL, ROLE_LABEL, SNAPSHOT_LABEL
from kvbackup.api.fields import KEY_NAME, SNAPSHOT_ID
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.api.kinds import ITEM_KINDS, ItemKind, ItemRef
from kvbackup.errors import (
    ConflictError,
    IntegrityError,
    KvBackupError,
    NotFoundError,
    TooLargeError,
)
from kvbackup.services.ports import StoredSnapshot
from kvbackup.services.snapshot import (
    ARTIFACT_MAX_BYTES,
    MANIFEST_MAX_BYTES,
    SHA256_HEX,
    SNAPSHOT_KEYS_MAX,
    SUMMARY_MAX_BYTES,
    VERSION_ID,
    Artifact,
    Manifest,
    SnapshotSummary,
    require_snapshot_id,
    sha256_hex,
)

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
#: Packs kept decoded while restoring: items are read roughly in the order they were packed.
CACHED_PACKS = 4
#: Packs per page when a resumed run reads back what its snapshot holds.
RESUME_PAGE = 2
#: Chunks of split items a resumed run holds while it waits for their other chunks (the
#: listing gives packs in name order, not in the order they were written): two of the
#: largest backups.
RESUME_PENDING_MAX = 2 * ARTIFACT_MAX_BYTES
#: Manifest Secrets per page when snapshots are listed: each is a small summary, but one a
#: tenant wrote may hold up to the API server's 1 MiB.
MANIFEST_PAGE = 8
#: What holding one waiting chunk costs besides its bytes, counted against the bound: so
#: that many empty chunks cannot grow the bookkeeping without end.
_CHUNK_BOOKKEEPING = 1024
#: The most bytes one data entry of a Secret holds: the API server's limit on its data.
SECRET_DATA_MAX = 1_048_576
#: The most packs one item is split over: a backup of ``ARTIFACT_MAX_BYTES`` in packs of
#: 128 KiB or more.
PACKS_PER_ITEM_MAX = 64
#: The most parts one manifest is split over: ``MANIFEST_MAX_BYTES`` in parts of 32 KiB or
#: more.
MANIFEST_PARTS_MAX = 256
#: Index bytes reserved per item beside its kind, name and versions.
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


def entry_name(kind: ItemKind, name: str, chunk: int, chunks: int) -> str:
    """The data key of one item's bytes, or of one chunk of an item split over packs: a
    key's is its name, as in packs written before there were other kinds; another kind's
    starts with the kind (``secret_db-password``), which no Key Vault name holds."""
    whole = name if kind is ItemKind.KEY else f"{kind.value}_{name}"
    return whole if chunks == 1 else f"{whole}.{chunk}"


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
        kind: ItemKind,
        name: str,
        data: bytes,
        versions: tuple[str, ...] = (),
    ) -> str:
        require_snapshot_id(snapshot_id, f"a request for snapshots of {keybackup.name}")
        entry = {
            "kind": kind.value,
            "name": name,
            "versions": list(versions),
            "sha256": sha256_hex(data),
        }
        room = self._pack_size - INDEX_ENTRY_OVERHEAD - len(json.dumps(entry))
        if len(data) > room:
            return await self._write_split(keybackup, snapshot_id, entry, data, room)
        # Bookkeeping first, writes after: other items join the next pack meanwhile.
        slot = (keybackup.namespace, keybackup.name, snapshot_id)
        ready = []
        pack = self._open.get(slot)
        if pack is not None and pack.size + len(data) > room:
            ready.append(self._open.pop(slot))
            pack = None
        if pack is None:
            pack = self._open[slot] = self._new_pack(keybackup, snapshot_id)
        pack.data[entry_name(kind, name, 0, 1)] = data
        pack.index.append({**entry, "size": len(data), "chunk": 0, "chunks": 1})
        pack.size += self._pack_size - room + len(data)
        if pack.stale:
            ready.append(self._open.pop(slot))
        for finished in ready:
            await self._write_pack(keybackup, snapshot_id, finished)
        return pack.name

    async def resumable(self, keybackup: KeyBackupRef, snapshot_id: str) -> list[Artifact]:
        """Each pack is checked as it is listed: an item's bytes are hashed as soon as all
        its chunks are in, and only chunks of items still incomplete are kept, up to
        ``RESUME_PENDING_MAX`` bytes. What does not check out is left out (redone)."""
        require_snapshot_id(snapshot_id, f"a request for snapshots of {keybackup.name}")
        packs = _pack_names(keybackup.name, snapshot_id)
        waiting = _Waiting()
        found: dict[ItemRef, Artifact] = {}
        async for secret in self._api.list_secrets(
            f"list stored backups of snapshot {snapshot_id}",
            keybackup.namespace,
            _selector(keybackup.name, snapshot_id, "artifact"),
            page_size=RESUME_PAGE,
        ):
            pack_name = str((secret.get("metadata") or {}).get("name", ""))
            if not packs.fullmatch(pack_name):
                continue
            data = secret.get("data") or {}
            for entry in _pack_index(data):
                kind = _entry_kind(entry)
                item = ItemRef(kind, entry["name"].lower())  # names are case-insensitive
                encoded = data.get(entry_name(kind, entry["name"], entry["chunk"], entry["chunks"]))
                if item in found or not isinstance(encoded, str):
                    continue
                try:
                    piece = _decoded(encoded, ARTIFACT_MAX_BYTES, "", "")
                except KvBackupError:
                    continue
                artifact = waiting.add(entry, piece, pack_name)
                if artifact is not None:
                    found[item] = artifact
                    if len(found) >= SNAPSHOT_KEYS_MAX:
                        return list(found.values())
        return list(found.values())

    async def write_manifest(self, manifest: Manifest, summary: SnapshotSummary) -> None:
        ref = manifest.keybackup
        require_snapshot_id(manifest.snapshot_id, f"a request for snapshots of {ref.name}")
        # A summary naming another snapshot would fail every later listing of the KeyBackup.
        found_in = f"what was given to store with the manifest of {ref.namespace}/{ref.name}"
        summary.require_found_at(manifest.snapshot_id, found_in)
        pack = self._open.pop((ref.namespace, ref.name, manifest.snapshot_id), None)
        if pack is not None and pack.data:
            await self._write_pack(ref, manifest.snapshot_id, pack)
        if self._write_failure is not None:
            # Items already counted as stored were in the pack that failed: no manifest may
            # claim them. The run is retried and resumes from the packs that did land.
            raise self._write_failure
        document = manifest.to_json()
        parts = [
            document[i : i + self._pack_size] for i in range(0, len(document), self._pack_size)
        ]
        if len(parts) > MANIFEST_PARTS_MAX:
            raise TooLargeError(
                f"the manifest of snapshot {manifest.snapshot_id} would take {len(parts)} "
                f"Secrets; a manifest is read back from at most {MANIFEST_PARTS_MAX}"
            )
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
            {SUMMARY_DATA_KEY: summary.to_json()},
            annotations={
                MANIFEST_PARTS_ANNOTATION: str(len(parts)),
                MANIFEST_SHA256_ANNOTATION: sha256_hex(document),
            },
        )

    async def list_snapshots(self, namespace: str, keybackup: str) -> list[SnapshotSummary]:
        """Each manifest Secret is checked as it comes: its snapshot label must be a
        snapshot id, its name the one that snapshot's manifest has, and the summary in it
        must name that snapshot; one that does not fails the listing, naming the Secret."""
        summaries = []
        async for item in self._api.list_secrets(
            f"list snapshots of {namespace}/{keybackup}",
            namespace,
            f"{KEYBACKUP_LABEL}={keybackup},{ROLE_LABEL}=manifest",
            page_size=MANIFEST_PAGE,
        ):
            metadata = item.get("metadata") or {}
            found_in = f"Secret {namespace}/{metadata.get('name', '')}"
            labels = metadata.get("labels") or {}
            snapshot_id = require_snapshot_id(labels.get(SNAPSHOT_LABEL), found_in)
            if metadata.get("name") != manifest_secret_name(keybackup, snapshot_id):
                raise IntegrityError(
                    f"{found_in} is labelled as the manifest of snapshot {snapshot_id}, whose "
                    f"manifest is Secret {manifest_secret_name(keybackup, snapshot_id)}"
                )
            data = item.get("data") or {}
            if SUMMARY_DATA_KEY in data:
                raw = _decoded(
                    data[SUMMARY_DATA_KEY], SUMMARY_MAX_BYTES, found_in, "the most a summary has"
                )
                summary = SnapshotSummary.from_json(raw, found_in=found_in)
                summary.require_found_at(snapshot_id, found_in)
                summaries.append(summary)
            elif MANIFEST_DATA_KEY in data:
                raw = _decoded(
                    data[MANIFEST_DATA_KEY], MANIFEST_MAX_BYTES, found_in, "a manifest's most"
                )
                manifest = Manifest.from_json(raw, found_in=found_in)
                manifest.require_found_at(namespace, keybackup, snapshot_id, found_in)
                summaries.append(_summary_of_whole(manifest, found_in))
        return sorted(summaries, key=lambda s: s.snapshot_id, reverse=True)

    async def read_manifest(self, namespace: str, keybackup: str, snapshot_id: str) -> Manifest:
        require_snapshot_id(snapshot_id, f"a request for snapshots of {keybackup}")
        name = manifest_secret_name(keybackup, snapshot_id)
        found_in = f"Secret {namespace}/{name}"
        what = f"read the manifest of snapshot {snapshot_id}"
        secret = await self._api.read_secret(what, namespace, name)
        _require_part_of(secret, keybackup, snapshot_id, "manifest", found_in)
        data = secret.get("data") or {}
        if MANIFEST_DATA_KEY in data:
            document = _decoded(
                data[MANIFEST_DATA_KEY], MANIFEST_MAX_BYTES, found_in, "the most a manifest has"
            )
        else:
            total, expected = _manifest_parts(secret, found_in)
            parts: list[bytes] = []
            size = 0
            for index in range(total):
                part_name = manifest_part_name(keybackup, snapshot_id, index)
                part_in = f"Secret {namespace}/{part_name}"
                part = await self._api.read_secret(what, namespace, part_name)
                _require_part_of(part, keybackup, snapshot_id, "manifest-part", part_in)
                encoded = (part.get("data") or {}).get(MANIFEST_DATA_KEY, "")
                piece = _decoded(
                    encoded, MANIFEST_MAX_BYTES - size, part_in, "the most a manifest has"
                )
                size += len(piece)
                parts.append(piece)
            document = b"".join(parts)
            if sha256_hex(document) != expected:
                raise IntegrityError(
                    f"the manifest of snapshot {snapshot_id} has sha256 {sha256_hex(document)}; "
                    f"{found_in} recorded {expected}"
                )
        manifest = Manifest.from_json(document, found_in=found_in)
        manifest.require_found_at(namespace, keybackup, snapshot_id, found_in)
        return manifest

    async def read_artifact(
        self, namespace: str, keybackup: str, snapshot_id: str, artifact: Artifact
    ) -> bytes:
        """Only from packs of the snapshot holding the item (``artifact.home``): a
        ``location`` naming any other Secret is refused before it is read, and a pack is
        used only once its labels name that snapshot of this KeyBackup."""
        require_snapshot_id(snapshot_id, f"a request for snapshots of {keybackup}")
        # Checked when the manifest was parsed, and again here: it becomes part of names.
        home = require_snapshot_id(
            artifact.home(snapshot_id), f"the manifest of snapshot {snapshot_id} of {keybackup}"
        )
        if not artifact.location:
            return await self._read_legacy(namespace, keybackup, home, artifact)
        item = ItemRef(artifact.kind, artifact.name)
        packs = artifact.location.split(",")
        ours = _pack_names(keybackup, home)
        if len(packs) > PACKS_PER_ITEM_MAX or not all(ours.fullmatch(pack) for pack in packs):
            raise IntegrityError(
                f"the manifest of snapshot {snapshot_id} keeps {item} in Secrets "
                f"that are not packs of snapshot {home}"
            )
        chunks = []
        size = 0
        for chunk, pack_name in enumerate(packs):
            data = await self._pack_data(namespace, keybackup, home, pack_name, item)
            encoded = data.get(entry_name(item.kind, item.name, chunk, len(packs)))
            if encoded is None:
                raise _missing(item, home, f"Secret {namespace}/{pack_name}")
            piece = _decoded(
                encoded,
                artifact.size - size,
                f"Secret {namespace}/{pack_name}",
                f"the size the manifest records for {item}",
            )
            size += len(piece)
            chunks.append(piece)
        return b"".join(chunks)

    async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
        """Snapshot ids from labels, each only when it is a snapshot id and the Secret's
        name is one this store gives a part of that snapshot; other Secrets are ignored."""
        complete: dict[str, bool] = {}
        async for meta in self._api.list_secret_metadata(
            f"list stored snapshots of {namespace}/{keybackup}",
            namespace,
            f"{KEYBACKUP_LABEL}={keybackup}",
        ):
            labels = meta.get("labels") or {}
            snapshot_id = labels.get(SNAPSHOT_LABEL)
            name = str(meta.get("name", ""))
            if not (
                isinstance(snapshot_id, str)
                and SNAPSHOT_ID.fullmatch(snapshot_id)
                and name.startswith(manifest_secret_name(keybackup, snapshot_id))
            ):
                continue
            is_manifest = labels.get(ROLE_LABEL) == "manifest"
            complete[snapshot_id] = complete.get(snapshot_id, False) or is_manifest
        return [StoredSnapshot(sid, done) for sid, done in sorted(complete.items(), reverse=True)]

    async def delete_snapshot(self, namespace: str, keybackup: str, snapshot_id: str) -> None:
        require_snapshot_id(snapshot_id, f"a request for snapshots of {keybackup}")
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
        """An item too large for one pack: each chunk in a pack of its own, written now."""
        chunks = [data[i : i + room] for i in range(0, len(data), room)]
        names = []
        for chunk, piece in enumerate(chunks):
            pack = self._new_pack(keybackup, snapshot_id)
            pack.data[entry_name(_entry_kind(entry), entry["name"], chunk, len(chunks))] = piece
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

    async def _pack_data(
        self,
        namespace: str,
        keybackup: str,
        snapshot_id: str,
        pack_name: str,
        item: ItemRef,
    ) -> Mapping[str, str]:
        """A pack of snapshot ``snapshot_id``: its data entries, still base64-encoded; the
        last few packs are kept (a pack's name tells its KeyBackup and snapshot)."""
        slot = (namespace, pack_name)
        cached = self._cached.get(slot)
        if cached is not None:
            self._cached.move_to_end(slot)
            return cached
        try:
            secret = await self._api.read_secret(f"read backup of {item}", namespace, pack_name)
        except NotFoundError:
            raise _missing(item, snapshot_id, f"Secret {namespace}/{pack_name}") from None
        found_in = f"Secret {namespace}/{pack_name}"
        _require_part_of(secret, keybackup, snapshot_id, "artifact", found_in)
        data: Mapping[str, str] = secret.get("data") or {}
        self._cached[slot] = data
        while len(self._cached) > CACHED_PACKS:
            self._cached.popitem(last=False)
        return data

    async def _read_legacy(
        self, namespace: str, keybackup: str, snapshot_id: str, artifact: Artifact
    ) -> bytes:
        """A key of snapshot ``snapshot_id`` written before packing, found by its name
        alone. Only keys were stored so: another kind's artifact must say which packs hold
        it."""
        if artifact.kind is not ItemKind.KEY:
            raise IntegrityError(
                f"the manifest does not say which Secrets of snapshot {snapshot_id} keep "
                f"{artifact.kind} {artifact.name}"
            )
        key_name = artifact.name
        chunks: list[bytes] = []
        size = 0
        total = 1
        while len(chunks) < total:
            name = legacy_artifact_name(keybackup, snapshot_id, key_name, len(chunks))
            found_in = f"Secret {namespace}/{name}"
            try:
                secret = await self._api.read_secret(
                    f"read backup of key {key_name}", namespace, name
                )
            except NotFoundError:
                raise _missing(ItemRef(ItemKind.KEY, key_name), snapshot_id, found_in) from None
            _require_part_of(secret, keybackup, snapshot_id, "artifact", found_in)
            annotations = (secret.get("metadata") or {}).get("annotations") or {}
            total = _bounded_count(
                annotations.get(LEGACY_PARTS_ANNOTATION, "1"), PACKS_PER_ITEM_MAX, found_in
            )
            piece = _decoded(
                (secret.get("data") or {}).get(LEGACY_DATA_KEY, ""),
                artifact.size - size,
                found_in,
                f"the size the manifest records for key {key_name}",
            )
            size += len(piece)
            chunks.append(piece)
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


class _Waiting:
    """Chunks of split items whose other chunks are still to come, up to
    ``RESUME_PENDING_MAX`` bytes in all (each chunk counted with its bookkeeping); a
    chunk beyond that is left out, and its item is backed up again."""

    def __init__(self) -> None:
        self._chunks: dict[ItemRef, dict[int, tuple[bytes, str]]] = {}
        self._entries: dict[ItemRef, dict[str, Any]] = {}
        self._bytes = 0

    def add(self, entry: dict[str, Any], piece: bytes, pack_name: str) -> Artifact | None:
        """The item's artifact once this chunk completes it and its bytes match the sha256
        recorded; None until then, or when they do not."""
        item, total = ItemRef(_entry_kind(entry), entry["name"]), entry["chunks"]
        cost = len(piece) + _CHUNK_BOOKKEEPING
        if self._bytes + cost > RESUME_PENDING_MAX:
            return None
        recorded = self._entries.setdefault(item, entry)
        chunks = self._chunks.setdefault(item, {})
        if entry["chunk"] in chunks or recorded["chunks"] != total:
            return None  # written again by a later run, or split otherwise: the first counts
        chunks[entry["chunk"]] = (piece, pack_name)
        self._bytes += cost
        if len(chunks) < total:
            return None
        del self._chunks[item], self._entries[item]
        self._bytes -= sum(len(piece) + _CHUNK_BOOKKEEPING for piece, _ in chunks.values())
        whole = b"".join(chunks[i][0] for i in range(total))
        if recorded["sha256"] != sha256_hex(whole):
            return None
        location = ",".join(chunks[i][1] for i in range(total))
        versions = tuple(recorded["versions"])
        return Artifact(item.name, versions, recorded["sha256"], len(whole), location, item.kind)


def _missing(item: ItemRef, snapshot_id: str, found_in: str) -> NotFoundError:
    """The error for an item's backup absent from the snapshot holding it."""
    return NotFoundError(
        f"backup of {item} is missing from snapshot {snapshot_id} ({found_in})",
        reason="ArtifactMissing",
    )


def _summary_of_whole(manifest: Manifest, found_in: str) -> SnapshotSummary:
    """The summary of a manifest stored without one, as before packing: only a whole
    manifest can tell it, and only those were ever stored so."""
    if manifest.differential:
        raise IntegrityError(f"{found_in} holds a differential manifest and no summary of it")
    return manifest.summary


def _pack_index(data: Mapping[str, str]) -> list[dict[str, Any]]:
    """A pack's index; entries that do not check out are left out (their items are redone)."""
    try:
        raw = _decoded(data.get(INDEX_DATA_KEY, ""), SECRET_DATA_MAX, "", "")
        entries = json.loads(raw or b"[]")
    except (ValueError, KvBackupError):
        return []
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if _is_index_entry(entry)]


def _is_index_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("kind", ItemKind.KEY.value), str)
        and entry.get("kind", ItemKind.KEY.value) in ITEM_KINDS
        and isinstance(entry.get("name"), str)
        and bool(KEY_NAME.fullmatch(entry["name"]))
        and isinstance(entry.get("versions"), list)
        and bool(entry["versions"])
        and all(isinstance(v, str) and VERSION_ID.fullmatch(v) for v in entry["versions"])
        and isinstance(entry.get("sha256"), str)
        and bool(SHA256_HEX.fullmatch(entry["sha256"]))
        and isinstance(entry.get("chunk"), int)
        and isinstance(entry.get("chunks"), int)
        and 0 <= entry["chunk"] < entry["chunks"] <= PACKS_PER_ITEM_MAX
    )


def _entry_kind(entry: Mapping[str, Any]) -> ItemKind:
    """The kind of item an index entry (one ``_is_index_entry`` passed) is for: a key's
    when it names none, as entries written before there were other kinds do."""
    return ItemKind(entry.get("kind", ItemKind.KEY.value))


def _pack_names(keybackup: str, snapshot_id: str) -> re.Pattern[str]:
    """The names ``pack_secret_name`` gives the packs of one snapshot."""
    own = re.escape(f"{manifest_secret_name(keybackup, snapshot_id)}-a-")
    return re.compile(own + r"[0-9a-f]{1,16}-[0-9]{1,9}")


def _require_part_of(
    secret: Mapping[str, Any], keybackup: str, snapshot_id: str, role: str, found_in: str
) -> None:
    """Refuses a Secret whose labels do not say it is the ``role`` of this snapshot: its
    contents are then neither used nor reported."""
    labels = (secret.get("metadata") or {}).get("labels") or {}
    expected = _labels(keybackup, snapshot_id, role)
    if any(labels.get(label) != value for label, value in expected.items()):
        raise IntegrityError(
            f"{found_in} is not labelled as the {role} of snapshot {snapshot_id} of KeyBackup "
            f"{keybackup} ({', '.join(f'{k}={v}' for k, v in expected.items())})"
        )


def _manifest_parts(secret: Mapping[str, Any], found_in: str) -> tuple[int, str]:
    """How many parts the manifest is split over, and the sha256 of the whole."""
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    expected = annotations.get(MANIFEST_SHA256_ANNOTATION)
    if not isinstance(expected, str) or not SHA256_HEX.fullmatch(expected):
        raise IntegrityError(f"{found_in} does not say how its manifest is stored")
    total = _bounded_count(annotations.get(MANIFEST_PARTS_ANNOTATION), MANIFEST_PARTS_MAX, found_in)
    return total, expected


def _bounded_count(text: Any, most: int, found_in: str) -> int:
    """A count of parts from an annotation: 1 to ``most``."""
    if not isinstance(text, str) or not re.fullmatch(r"[1-9][0-9]{0,5}", text) or int(text) > most:
        raise IntegrityError(
            f"{found_in} says its contents are split over {text!r} parts, not 1 to {most}"
        )
    return int(text)


def _decoded(encoded: Any, limit: int, found_in: str, why: str) -> bytes:
    """A Secret's data entry, decoded, once its length shows it holds at most ``limit``
    bytes (``why`` says whose bound): nothing larger is decoded."""
    if not isinstance(encoded, str):
        raise IntegrityError(f"{found_in} holds data that is not base64")
    if len(encoded) > 4 * ((max(limit, 0) + 2) // 3):
        raise TooLargeError(f"{found_in} holds more than {limit} bytes, {why}")
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise IntegrityError(f"{found_in} holds data that is not base64") from None
    if len(decoded) > limit:  # base64's length tells the size only to within two bytes
        raise TooLargeError(f"{found_in} holds more than {limit} bytes, {why}")
    return decoded


def _selector(keybackup: str, snapshot_id: str, role: str) -> str:
    return f"{KEYBACKUP_LABEL}={keybackup},{SNAPSHOT_LABEL}={snapshot_id},{ROLE_LABEL}={role}"


def _labels(keybackup: str, snapshot_id: str, role: str) -> dict[str, str]:
    return {KEYBACKUP_LABEL: keybackup, SNAPSHOT_LABEL: snapshot_id, ROLE_LABEL: role}
