"""Snapshots kept as Kubernetes Secrets in the KeyBackup's own namespace.

Layout, for KeyBackup ``kb`` and snapshot ``s``:

* ``kb-s-k<hash>-p<i>``: part ``i`` of one key's backup bytes, in data key ``backup``.
  A Secret holds at most 1 MiB, so a larger backup (a key with very many versions) is
  split into parts of ``part_size`` bytes; concatenating the parts in order gives the
  exact bytes ``backup_key`` returned.
* ``kb-s``: the manifest (``manifest.json``), written last.

Every Secret carries the labels ``kvbackup.io/keybackup``, ``kvbackup.io/snapshot`` and
``kvbackup.io/role`` (``artifact`` or ``manifest``), and no owner reference, so backups
outlive the KeyBackup object.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.api import KEYBACKUP_LABEL, ROLE_LABEL, SNAPSHOT_LABEL
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.errors import ConflictError, NotFoundError
from kvbackup.services.ports import StoredSnapshot
from kvbackup.services.snapshot import KeyArtifact, Manifest, sha256_hex

#: Bytes of backup per Secret: under the API server's 1 MiB limit on Secret data.
DEFAULT_PART_SIZE = 1_000_000
BACKUP_DATA_KEY = "backup"
MANIFEST_DATA_KEY = "manifest.json"
KEY_NAME_ANNOTATION = "kvbackup.io/key-name"
PARTS_ANNOTATION = "kvbackup.io/parts"
#: On every part: the sha256 of the whole backup, and the key's versions, comma-separated.
SHA256_ANNOTATION = "kvbackup.io/sha256"
VERSIONS_ANNOTATION = "kvbackup.io/versions"


def manifest_secret_name(keybackup: str, snapshot_id: str) -> str:
    return f"{keybackup}-{snapshot_id}"


def artifact_secret_name(keybackup: str, snapshot_id: str, key_name: str, part: int) -> str:
    # Key names are case-insensitive and may be longer than a Secret name allows.
    digest = hashlib.sha256(key_name.lower().encode()).hexdigest()[:12]
    return f"{keybackup}-{snapshot_id}-k{digest}-p{part}"


class SecretSnapshotStore:
    """``SnapshotStore`` on Kubernetes Secrets."""

    def __init__(self, api: KubernetesApi, part_size: int = DEFAULT_PART_SIZE) -> None:
        self._api = api
        self._part_size = part_size

    async def write_artifact(
        self,
        keybackup: KeyBackupRef,
        snapshot_id: str,
        key_name: str,
        data: bytes,
        versions: tuple[str, ...] = (),
    ) -> None:
        parts = [data[i : i + self._part_size] for i in range(0, len(data), self._part_size)]
        annotations = {
            KEY_NAME_ANNOTATION: key_name,
            PARTS_ANNOTATION: str(len(parts)),
            SHA256_ANNOTATION: sha256_hex(data),
            VERSIONS_ANNOTATION: ",".join(versions),
        }
        for index, chunk in enumerate(parts or [b""]):
            await self._put(
                keybackup.namespace,
                artifact_secret_name(keybackup.name, snapshot_id, key_name, index),
                labels=_labels(keybackup.name, snapshot_id, "artifact"),
                annotations=annotations,
                data={BACKUP_DATA_KEY: chunk},
            )

    async def resumable(self, keybackup: KeyBackupRef, snapshot_id: str) -> list[KeyArtifact]:
        secrets = await self._api.call(
            f"list stored backups of snapshot {snapshot_id}",
            self._api.core.list_namespaced_secret,
            keybackup.namespace,
            label_selector=(
                f"{KEYBACKUP_LABEL}={keybackup.name},{SNAPSHOT_LABEL}={snapshot_id},"
                f"{ROLE_LABEL}=artifact"
            ),
        )
        parts: dict[str, dict[int, bytes]] = {}
        recorded: dict[str, Mapping[str, str]] = {}
        for item in secrets.items:
            meta = item.metadata
            written: Mapping[str, str] = (meta.annotations if meta else None) or {}
            key_name = written.get(KEY_NAME_ANNOTATION)
            index = ((meta.name if meta else None) or "").rpartition("-p")[2]
            if not key_name or not index.isdigit():
                continue
            recorded[key_name] = written
            data = base64.b64decode((item.data or {}).get(BACKUP_DATA_KEY, ""))
            parts.setdefault(key_name, {})[int(index)] = data
        found = []
        for key_name, written in recorded.items():
            total, chunks = int(written.get(PARTS_ANNOTATION, "1")), parts[key_name]
            if sorted(chunks) != list(range(total)):
                continue
            data = b"".join(chunks[index] for index in range(total))
            versions = tuple(v for v in written.get(VERSIONS_ANNOTATION, "").split(",") if v)
            if versions and written.get(SHA256_ANNOTATION) == sha256_hex(data):
                found.append(KeyArtifact(key_name, versions, sha256_hex(data), len(data)))
        return found

    async def write_manifest(self, manifest: Manifest) -> None:
        ref = manifest.keybackup
        await self._put(
            ref.namespace,
            manifest_secret_name(ref.name, manifest.snapshot_id),
            labels=_labels(ref.name, manifest.snapshot_id, "manifest"),
            annotations={},
            data={MANIFEST_DATA_KEY: manifest.to_json()},
        )

    async def list_snapshots(self, namespace: str, keybackup: str) -> list[Manifest]:
        secrets = await self._api.call(
            f"list snapshots of {namespace}/{keybackup}",
            self._api.core.list_namespaced_secret,
            namespace,
            label_selector=f"{KEYBACKUP_LABEL}={keybackup},{ROLE_LABEL}=manifest",
        )
        manifests = [
            Manifest.from_json(base64.b64decode(item.data[MANIFEST_DATA_KEY]))
            for item in secrets.items
            if item.data and MANIFEST_DATA_KEY in item.data
        ]
        return sorted(manifests, key=lambda m: m.snapshot_id, reverse=True)

    async def read_artifact(
        self, namespace: str, keybackup: str, snapshot_id: str, key_name: str
    ) -> bytes:
        chunks: list[bytes] = []
        total = 1
        part = 0
        while part < total:
            name = artifact_secret_name(keybackup, snapshot_id, key_name, part)
            try:
                secret = await self._api.call(
                    f"read backup of key {key_name}",
                    self._api.core.read_namespaced_secret,
                    name,
                    namespace,
                )
            except NotFoundError:
                raise NotFoundError(
                    f"backup of key {key_name} is missing from snapshot {snapshot_id} "
                    f"(Secret {name})",
                    reason="ArtifactMissing",
                ) from None
            annotations = (secret.metadata.annotations if secret.metadata else None) or {}
            total = int(annotations.get(PARTS_ANNOTATION, "1"))
            chunks.append(base64.b64decode((secret.data or {}).get(BACKUP_DATA_KEY, "")))
            part += 1
        return b"".join(chunks)

    async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
        secrets = await self._api.call(
            f"list stored snapshots of {namespace}/{keybackup}",
            self._api.core.list_namespaced_secret,
            namespace,
            label_selector=f"{KEYBACKUP_LABEL}={keybackup}",
        )
        complete: dict[str, bool] = {}
        for item in secrets.items:
            labels = (item.metadata.labels if item.metadata else None) or {}
            snapshot_id = labels.get(SNAPSHOT_LABEL)
            if snapshot_id:
                is_manifest = labels.get(ROLE_LABEL) == "manifest"
                complete[snapshot_id] = complete.get(snapshot_id, False) or is_manifest
        return [StoredSnapshot(sid, done) for sid, done in sorted(complete.items(), reverse=True)]

    async def delete_snapshot(self, namespace: str, keybackup: str, snapshot_id: str) -> None:
        selector = f"{KEYBACKUP_LABEL}={keybackup},{SNAPSHOT_LABEL}={snapshot_id}"
        for role in ("manifest", "artifact"):
            await self._api.call(
                f"delete snapshot {snapshot_id} of {namespace}/{keybackup}",
                self._api.core.delete_collection_namespaced_secret,
                namespace,
                label_selector=f"{selector},{ROLE_LABEL}={role}",
            )

    def location(self, namespace: str, keybackup: str, snapshot_id: str) -> str:
        return (
            f"secrets in namespace {namespace} with labels "
            f"{KEYBACKUP_LABEL}={keybackup},{SNAPSHOT_LABEL}={snapshot_id}"
        )

    async def _put(
        self,
        namespace: str,
        name: str,
        *,
        labels: dict[str, str],
        annotations: dict[str, str],
        data: dict[str, bytes],
    ) -> None:
        """Create the Secret, or replace it: redoing a crashed run must not duplicate it."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        }
        what = f"write Secret {namespace}/{name}"
        try:
            await self._api.call(what, self._api.core.create_namespaced_secret, namespace, body)
        except ConflictError:
            await self._api.call(
                what, self._api.core.replace_namespaced_secret, name, namespace, body
            )


def _labels(keybackup: str, snapshot_id: str, role: str) -> dict[str, str]:
    return {KEYBACKUP_LABEL: keybackup, SNAPSHOT_LABEL: snapshot_id, ROLE_LABEL: role}
