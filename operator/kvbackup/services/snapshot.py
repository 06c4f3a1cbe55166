"""A snapshot: one artifact per key (the exact bytes ``backup_key`` returned) plus a manifest.

The manifest is written last, so a snapshot without one is incomplete and is never
offered for restore. Its summary (times and counts) is stored beside it, small enough
to list every snapshot of a KeyBackup without reading their per-key lists.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from kvbackup.api import API_VERSION
from kvbackup.api.conditions import timestamp
from kvbackup.api.fields import KEY_NAME
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.errors import IntegrityError, NotFoundError

MANIFEST_KIND = "SnapshotManifest"


def new_snapshot_id(moment: datetime.datetime) -> str:
    """Sortable by time, unique enough for one KeyBackup, and valid in object names."""
    return f"{moment.astimezone(datetime.UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def snapshot_time(snapshot_id: str) -> datetime.datetime | None:
    """When a snapshot was started, read back from its id; None for a foreign id."""
    try:
        started = datetime.datetime.strptime(snapshot_id[:15], "%Y%m%d-%H%M%S")
    except ValueError:
        return None
    return started.replace(tzinfo=datetime.UTC)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyArtifact:
    """One backed-up key: its versions and the digest and size of its stored bytes."""

    name: str
    versions: tuple[str, ...]
    sha256: str
    size: int
    #: Where the store put the bytes (e.g. the Secrets holding them); empty when the store
    #: finds them by key name alone, as in snapshots written before packing.
    location: str = ""

    def verify(self, data: bytes) -> None:
        digest = sha256_hex(data)
        if digest != self.sha256 or len(data) != self.size:
            raise IntegrityError(
                f"stored backup of key {self.name} has sha256 {digest} and {len(data)} bytes; "
                f"the manifest recorded {self.sha256} and {self.size} bytes"
            )


@dataclass(frozen=True, slots=True)
class KeyFailure:
    name: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class SnapshotSummary:
    """What a listing of snapshots tells: enough for retention, status and choosing one."""

    snapshot_id: str
    start_time: datetime.datetime
    completion_time: datetime.datetime
    keys: int
    failed_keys: int
    total_bytes: int

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "snapshotId": self.snapshot_id,
                "startTime": timestamp(self.start_time),
                "completionTime": timestamp(self.completion_time),
                "keys": self.keys,
                "failedKeys": self.failed_keys,
                "bytes": self.total_bytes,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> SnapshotSummary:
        try:
            document = json.loads(raw)
            return cls(
                snapshot_id=str(document["snapshotId"]),
                start_time=_parse_time(document["startTime"]),
                completion_time=_parse_time(document["completionTime"]),
                keys=int(document["keys"]),
                failed_keys=int(document["failedKeys"]),
                total_bytes=int(document["bytes"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise IntegrityError(f"snapshot summary is unreadable: {error}") from None


@dataclass(frozen=True, slots=True)
class Manifest:
    snapshot_id: str
    keybackup: KeyBackupRef
    vault_url: str
    start_time: datetime.datetime
    completion_time: datetime.datetime
    operator_version: str
    keys: tuple[KeyArtifact, ...]
    failures: tuple[KeyFailure, ...] = field(default=())
    #: Built by the first lookup: a restore looks up every key, a backup none.
    _by_name: dict[str, KeyArtifact] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def artifact(self, key_name: str) -> KeyArtifact:
        """The key's artifact; Key Vault names are case-insensitive, so the lookup is too."""
        by_name = self._by_name
        if by_name is None:
            by_name = {artifact.name.lower(): artifact for artifact in self.keys}
            object.__setattr__(self, "_by_name", by_name)
        try:
            return by_name[key_name.lower()]
        except KeyError:
            raise NotFoundError(
                f"key {key_name} is not in snapshot {self.snapshot_id}", reason="KeyNotInSnapshot"
            ) from None

    @property
    def total_bytes(self) -> int:
        return sum(artifact.size for artifact in self.keys)

    @property
    def summary(self) -> SnapshotSummary:
        return SnapshotSummary(
            snapshot_id=self.snapshot_id,
            start_time=self.start_time,
            completion_time=self.completion_time,
            keys=len(self.keys),
            failed_keys=len(self.failures),
            total_bytes=self.total_bytes,
        )

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": MANIFEST_KIND,
            "snapshotId": self.snapshot_id,
            "keyBackup": {
                "namespace": self.keybackup.namespace,
                "name": self.keybackup.name,
                "uid": self.keybackup.uid,
            },
            "vaultUrl": self.vault_url,
            "startTime": timestamp(self.start_time),
            "completionTime": timestamp(self.completion_time),
            "operatorVersion": self.operator_version,
            "keys": [],
            "failures": [
                {"name": f.name, "reason": f.reason, "message": f.message} for f in self.failures
            ],
        }
        # The keys are written one entry at a time into the document's empty list, so a
        # manifest of many keys is never held as a document of dicts besides its text.
        head, _, tail = _compact_json(document).partition(b'"keys":[]')
        text = bytearray(head + b'"keys":[')
        for index, artifact in enumerate(self.keys):
            if index:
                text += b","
            text += _compact_json(_artifact_document(artifact))
        text += b"]" + tail
        return bytes(text)

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            # Each key's entry becomes its artifact as soon as it is parsed, so a manifest
            # of many keys is never held as dicts and artifacts at once.
            document = json.loads(raw, object_hook=_artifact_or_object)
            if not isinstance(document, dict) or document.get("kind") != MANIFEST_KIND:
                raise ValueError(f"not a {MANIFEST_KIND}")
            keys = document["keys"]
            if not all(isinstance(artifact, KeyArtifact) for artifact in keys):
                raise ValueError("a key's entry lacks its name, versions, sha256 or size")
            ref = document["keyBackup"]
            return cls(
                snapshot_id=document["snapshotId"],
                keybackup=KeyBackupRef(ref["namespace"], ref["name"], ref.get("uid", "")),
                vault_url=document["vaultUrl"],
                start_time=_parse_time(document["startTime"]),
                completion_time=_parse_time(document["completionTime"]),
                operator_version=document.get("operatorVersion", ""),
                keys=tuple(keys),
                failures=tuple(
                    KeyFailure(f["name"], f["reason"], f["message"])
                    for f in document.get("failures", [])
                ),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise IntegrityError(f"snapshot manifest is unreadable: {error}") from None


def _compact_json(document: dict[str, Any]) -> bytes:
    # Compact: a manifest lists every key, and a Secret holds at most 1 MiB.
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _artifact_document(artifact: KeyArtifact) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": artifact.name,
        "versions": list(artifact.versions),
        "sha256": artifact.sha256,
        "size": artifact.size,
    }
    if artifact.location:
        document["location"] = artifact.location
    return document


def _artifact_or_object(entry: dict[str, Any]) -> Any:
    if not {"name", "versions", "sha256", "size"} <= entry.keys():
        return entry
    # A manifest is read back from storage a tenant may write to, and a key's name
    # becomes part of the path its backup is read from: only Key Vault's names pass.
    if not isinstance(entry["name"], str) or not KEY_NAME.match(entry["name"]):
        raise ValueError(f"{entry['name']!r} is not a Key Vault key name")
    return KeyArtifact(
        entry["name"],
        tuple(entry["versions"]),
        entry["sha256"],
        int(entry["size"]),
        str(entry.get("location", "")),
    )


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
