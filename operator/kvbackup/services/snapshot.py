"""A snapshot: one artifact per key (the exact bytes ``backup_key`` returned) plus a manifest.

The manifest is written last, so a snapshot without one is incomplete and is never
offered for restore. Its summary (times and counts) is stored beside it, small enough
to list every snapshot of a KeyBackup without reading their per-key lists.

Manifests and summaries are read back from storage a tenant can write to, so they are
parsed like a spec: bounded in size before they are parsed, every id and name checked
against its grammar (full matches), and every id compared with the place it was found
(``Manifest.require_found_at``, ``SnapshotSummary.require_found_at``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from kvbackup.api import API_VERSION
from kvbackup.api.conditions import timestamp
from kvbackup.api.fields import KEY_NAME, NAMESPACE_NAME, OBJECT_NAME, SNAPSHOT_ID
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.errors import IntegrityError, NotFoundError, TooLargeError, foreign_text

MANIFEST_KIND = "SnapshotManifest"
#: The largest key backup a snapshot may hold. Key Vault backs up a key with all its
#: versions and refuses keys of more than 500 past versions; each version adds a few KiB
#: (its wrapped key material), so the largest backup it returns is a few MiB. Twice that
#: leaves room, and bounds what one artifact read may cost.
ARTIFACT_MAX_BYTES = 8 * 1024 * 1024
#: The largest manifest written or read back. A key's entry takes about 200 bytes (name,
#: a few version ids, digest, size, where it is kept), so this holds some 40,000 keys;
#: and a hostile manifest of this size still parses into well under 100 MiB.
MANIFEST_MAX_BYTES = 8 * 1024 * 1024
#: The largest snapshot summary read back; one is about 200 bytes.
SUMMARY_MAX_BYTES = 1024
#: A key version's id as Key Vault makes them (32 hex digits); emulators use shorter ones.
VERSION_ID = re.compile(r"[0-9A-Za-z]{1,64}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
#: The most keys one snapshot holds: a key's manifest entry takes at least some 100 bytes
#: (a digest, a size, a version id), so no manifest within its bound lists more.
SNAPSHOT_KEYS_MAX = MANIFEST_MAX_BYTES // 100
#: A KeyBackup's name is at most this long (the CRD's bound; OBJECT_NAME has no length).
_NAME_MAX = 63


def require_snapshot_id(value: object, found_in: str) -> str:
    """``value`` when it is a snapshot id as ``new_snapshot_id`` makes them (a full match:
    a trailing newline or a path segment is refused); ``found_in`` says where it was read."""
    if isinstance(value, str) and SNAPSHOT_ID.fullmatch(value):
        return value
    raise IntegrityError(
        f"{found_in} names snapshot {foreign_text(repr(value))}, which is not a snapshot id"
    )


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
    def from_json(cls, raw: bytes | str, *, found_in: str = "") -> SnapshotSummary:
        """The summary ``raw`` holds; ``found_in`` names where it was read, for errors."""
        what = f"the snapshot summary in {found_in}" if found_in else "the snapshot summary"
        if len(raw) > SUMMARY_MAX_BYTES:
            raise TooLargeError(
                f"{what} is {len(raw)} bytes; a summary is at most {SUMMARY_MAX_BYTES}"
            )
        try:
            document = json.loads(raw)
            return cls(
                snapshot_id=_checked(SNAPSHOT_ID, document["snapshotId"], "a snapshot id"),
                start_time=_parse_time(document["startTime"]),
                completion_time=_parse_time(document["completionTime"]),
                keys=_count(document["keys"], "keys"),
                failed_keys=_count(document["failedKeys"], "failedKeys"),
                total_bytes=_count(document["bytes"], "bytes"),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise IntegrityError(f"{what} is unreadable: {foreign_text(str(error))}") from None

    def require_found_at(self, snapshot_id: str, found_in: str) -> None:
        """Refuses a summary that names another snapshot than the one it was found under."""
        if self.snapshot_id != snapshot_id:
            raise IntegrityError(
                f"{found_in} holds the summary of snapshot {self.snapshot_id}, not of snapshot "
                f"{snapshot_id} whose place it is in"
            )


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
        if len(text) > MANIFEST_MAX_BYTES:
            # Refused now rather than written: no store would read it back.
            raise TooLargeError(
                f"the manifest of snapshot {self.snapshot_id} is {len(text)} bytes, more than "
                f"the {MANIFEST_MAX_BYTES} a manifest may have; back up fewer keys per KeyBackup"
            )
        return bytes(text)

    @classmethod
    def from_json(cls, raw: bytes, *, found_in: str = "") -> Manifest:
        """The manifest ``raw`` holds; ``found_in`` names where it was read, for errors."""
        what = f"the snapshot manifest in {found_in}" if found_in else "the snapshot manifest"
        if len(raw) > MANIFEST_MAX_BYTES:
            raise TooLargeError(
                f"{what} is {len(raw)} bytes; a manifest is at most {MANIFEST_MAX_BYTES}"
            )
        try:
            # Each key's entry becomes its artifact as soon as it is parsed, so a manifest
            # of many keys is never held as dicts and artifacts at once.
            document = json.loads(raw, object_hook=_artifact_or_object)
            if not isinstance(document, dict) or document.get("kind") != MANIFEST_KIND:
                raise ValueError(f"not a {MANIFEST_KIND}")
            keys = document["keys"]
            if not isinstance(keys, list) or not all(isinstance(k, KeyArtifact) for k in keys):
                raise ValueError("a key's entry lacks its name, versions, sha256 or size")
            ref = document["keyBackup"]
            namespace = _checked(NAMESPACE_NAME, ref["namespace"], "a namespace's name")
            name = _checked(OBJECT_NAME, ref["name"], "a KeyBackup's name")
            if len(name) > _NAME_MAX:
                raise ValueError(f"keyBackup.name is longer than {_NAME_MAX} characters")
            return cls(
                snapshot_id=_checked(SNAPSHOT_ID, document["snapshotId"], "a snapshot id"),
                keybackup=KeyBackupRef(namespace, name, _text(ref.get("uid", ""), "uid")),
                vault_url=_text(document["vaultUrl"], "vaultUrl"),
                start_time=_parse_time(document["startTime"]),
                completion_time=_parse_time(document["completionTime"]),
                operator_version=_text(document.get("operatorVersion", ""), "operatorVersion"),
                keys=tuple(keys),
                failures=tuple(
                    KeyFailure(
                        _text(f["name"], "a failure's name"),
                        _text(f["reason"], "a failure's reason"),
                        _text(f["message"], "a failure's message"),
                    )
                    for f in document.get("failures", [])
                ),
            )
        except TooLargeError as error:
            raise TooLargeError(f"{what} is refused: {error.message}") from None
        except (ValueError, KeyError, TypeError) as error:
            raise IntegrityError(f"{what} is unreadable: {foreign_text(str(error))}") from None

    def require_found_at(
        self, namespace: str, keybackup: str, snapshot_id: str, found_in: str
    ) -> None:
        """Refuses a manifest that names another snapshot, KeyBackup or namespace than the
        place it was found: a manifest copied or forged into a tenant's storage must not
        pass for one of its own snapshots."""
        ref = self.keybackup
        if (ref.namespace, ref.name, self.snapshot_id) != (namespace, keybackup, snapshot_id):
            raise IntegrityError(
                f"{found_in} holds the manifest of snapshot {self.snapshot_id} of KeyBackup "
                f"{ref.namespace}/{ref.name}, not of snapshot {snapshot_id} of KeyBackup "
                f"{namespace}/{keybackup} whose place it is in"
            )


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
    name = _checked(KEY_NAME, entry["name"], "a Key Vault key name")
    versions = entry["versions"]
    if not isinstance(versions, list):
        raise ValueError(f"the versions of key {name} are not a list")
    size = _count(entry["size"], f"the size of key {name}")
    if size > ARTIFACT_MAX_BYTES:
        raise TooLargeError(
            f"it records {size} bytes for key {name}, more than the {ARTIFACT_MAX_BYTES} "
            "a key backup may have"
        )
    return KeyArtifact(
        name,
        tuple(_checked(VERSION_ID, version, f"a version id (key {name})") for version in versions),
        _checked(SHA256_HEX, entry["sha256"], f"a sha256 digest (key {name})"),
        size,
        _text(entry.get("location", ""), f"where key {name} is kept"),
    )


def _checked(grammar: re.Pattern[str], value: Any, rule: str) -> str:
    """``value`` when it is a string that ``grammar`` matches in full; ``rule`` says what
    that grammar is, for the error."""
    if not isinstance(value, str) or not grammar.fullmatch(value):
        raise ValueError(f"{foreign_text(repr(value))} is not {rule}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def _count(value: Any, what: str) -> int:
    """A whole number of at least 0; true and false (ints to Python) are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} {foreign_text(repr(value))} is not a count")
    return value


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
