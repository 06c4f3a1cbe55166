"""A snapshot: one artifact per item (the exact bytes Key Vault's backup of a key, secret
or certificate returned) plus a manifest that records each artifact's kind.

Snapshots are incremental. An item whose listing entry is unchanged since the previous
snapshot is not backed up again: the new manifest refers to the artifact an earlier
snapshot stored (``Artifact.stored_in``), with the same bytes and sha256. A manifest is
either whole (it lists every item) or differential: it names a whole manifest as its
``base`` and lists only what differs from it (items added, changed or carried from
elsewhere, and ``removed`` ones), so a run that changes little writes little. Reading a
snapshot merges a differential manifest onto its base (``whole_manifest``); a base is
always whole, so that takes one more read, never a chain.

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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from kvbackup.api import API_VERSION
from kvbackup.api.conditions import timestamp
from kvbackup.api.fields import KEY_NAME, NAMESPACE_NAME, OBJECT_NAME, SNAPSHOT_ID
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.api.kinds import ITEM_KINDS, ItemKind, ItemRef
from kvbackup.errors import IntegrityError, NotFoundError, TooLargeError, foreign_text

MANIFEST_KIND = "SnapshotManifest"
#: The largest key backup a snapshot may hold. Key Vault backs up a key with all its
#: versions and refuses keys of more than 500 past versions; each version adds a few KiB
#: (its wrapped key material), so the largest backup it returns is a few MiB. Twice that
#: leaves room, and bounds what one artifact read may cost.
ARTIFACT_MAX_BYTES = 8 * 1024 * 1024
#: The largest manifest written or read back. A key's entry takes about 300 bytes (name,
#: a few version ids, digest, size, where it is kept, its change record), so this holds
#: some 25,000 keys; and a hostile manifest of this size still parses into well under
#: 100 MiB.
MANIFEST_MAX_BYTES = 8 * 1024 * 1024
#: The largest snapshot summary read back; one is about 200 bytes.
SUMMARY_MAX_BYTES = 1024
#: A key version's id as Key Vault makes them (32 hex digits); emulators use shorter ones.
VERSION_ID = re.compile(r"[0-9A-Za-z]{1,64}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
FINGERPRINT_HEX = re.compile(r"[0-9a-f]{32}")
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
class ChangeRecord:
    """What a vault's listing said of an item when its backup was taken: when its current
    version was last updated, and a digest of that and of every attribute the listing
    gave (enabled, expiry, tags, creation time...). Two equal records mean nothing the
    listing shows has changed in between."""

    updated: datetime.datetime
    fingerprint: str

    @classmethod
    def of(cls, updated: datetime.datetime, facts: Iterable[object]) -> ChangeRecord:
        """The record of a listing entry: ``facts`` are what it gave besides ``updated``,
        in an order fixed per kind. Key Vault keeps times to the second, so ``updated``
        is too, whatever a client parsed."""
        second = updated.astimezone(datetime.UTC).replace(microsecond=0)
        text = json.dumps([timestamp(second), *facts], default=str, sort_keys=True)
        return cls(second, hashlib.sha256(text.encode()).hexdigest()[:32])

    def settled_before(self, moment: datetime.datetime) -> bool:
        """Whether a later change must show as another ``updated``: only when the item was
        last updated in a whole second before ``moment`` (the start of the run that read
        the listing). A change within the same second as the last would not show."""
        return self.updated < moment.astimezone(datetime.UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Artifact:
    """One backed-up item: its versions and the digest and size of its stored bytes."""

    name: str
    versions: tuple[str, ...]
    sha256: str
    size: int
    #: Where the store put the bytes (e.g. the Secrets holding them); empty when the store
    #: finds them by key name alone, as in snapshots written before packing.
    location: str = ""
    kind: ItemKind = ItemKind.KEY
    #: The snapshot whose storage holds the bytes, when it is not the manifest's own: the
    #: item was unchanged, so its earlier backup was carried forward.
    stored_in: str = ""
    #: The listing's record of the item when the bytes were taken; None when there is none
    #: to trust (the next run backs the item up again).
    change: ChangeRecord | None = None

    @property
    def ref(self) -> ItemRef:
        return ItemRef(self.kind, self.name)

    def home(self, snapshot_id: str) -> str:
        """The snapshot holding the bytes, for an artifact listed by ``snapshot_id``."""
        return self.stored_in or snapshot_id

    def carried_from(self, snapshot_id: str) -> Artifact:
        """This artifact, as listed by ``snapshot_id``, when a later snapshot refers to it."""
        return replace(self, stored_in=self.home(snapshot_id))

    def verify(self, data: bytes) -> None:
        digest = sha256_hex(data)
        if digest != self.sha256 or len(data) != self.size:
            raise IntegrityError(
                f"stored backup of {self.kind} {self.name} has sha256 {digest} and "
                f"{len(data)} bytes; the manifest recorded {self.sha256} and {self.size} bytes"
            )


@dataclass(frozen=True, slots=True)
class ItemFailure:
    name: str
    reason: str
    message: str
    kind: ItemKind = ItemKind.KEY


#: A summary's count of stored and of failed items, per kind, as its JSON names them.
_COUNT_FIELDS = {
    ItemKind.KEY: ("keys", "failedKeys"),
    ItemKind.SECRET: ("secrets", "failedSecrets"),
    ItemKind.CERTIFICATE: ("certificates", "failedCertificates"),
}


@dataclass(frozen=True, slots=True)
class SnapshotSummary:
    """What a listing of snapshots tells: enough for retention, status and choosing one."""

    snapshot_id: str
    start_time: datetime.datetime
    completion_time: datetime.datetime
    keys: int
    failed_keys: int
    total_bytes: int
    secrets: int = 0
    failed_secrets: int = 0
    certificates: int = 0
    failed_certificates: int = 0
    #: Bytes the snapshot stored itself; the rest it refers to in earlier snapshots. None
    #: in summaries written before snapshots were incremental: all of ``total_bytes``.
    new_bytes: int | None = None

    @property
    def stored_bytes(self) -> int:
        return self.total_bytes if self.new_bytes is None else self.new_bytes

    def stored(self, kind: ItemKind) -> int:
        """How many items of ``kind`` the snapshot holds."""
        return {
            ItemKind.KEY: self.keys,
            ItemKind.SECRET: self.secrets,
            ItemKind.CERTIFICATE: self.certificates,
        }[kind]

    def failed(self, kind: ItemKind) -> int:
        """How many items of ``kind`` the run that wrote it could not back up."""
        return {
            ItemKind.KEY: self.failed_keys,
            ItemKind.SECRET: self.failed_secrets,
            ItemKind.CERTIFICATE: self.failed_certificates,
        }[kind]

    @property
    def items(self) -> int:
        """Items of every kind the snapshot holds."""
        return self.keys + self.secrets + self.certificates

    @property
    def failed_items(self) -> int:
        return self.failed_keys + self.failed_secrets + self.failed_certificates

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "snapshotId": self.snapshot_id,
            "startTime": timestamp(self.start_time),
            "completionTime": timestamp(self.completion_time),
            "bytes": self.total_bytes,
        }
        if self.new_bytes is not None:
            document["newBytes"] = self.new_bytes
        for kind, (stored, failed) in _COUNT_FIELDS.items():
            # Keys are always counted, so that a keys-only summary reads as it always did.
            if kind is ItemKind.KEY or self.stored(kind) or self.failed(kind):
                document[stored] = self.stored(kind)
                document[failed] = self.failed(kind)
        return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str, *, found_in: str = "") -> SnapshotSummary:
        """The summary ``raw`` holds; ``found_in`` names where it was read, for errors.
        Counts of secrets and certificates are absent from summaries of keys-only runs."""
        what = f"the snapshot summary in {found_in}" if found_in else "the snapshot summary"
        if len(raw) > SUMMARY_MAX_BYTES:
            raise TooLargeError(
                f"{what} is {len(raw)} bytes; a summary is at most {SUMMARY_MAX_BYTES}"
            )
        try:
            document = json.loads(raw)
            if not isinstance(document, dict):
                raise ValueError("it is not an object")
            return cls(
                snapshot_id=_checked(SNAPSHOT_ID, document["snapshotId"], "a snapshot id"),
                start_time=_parse_time(document["startTime"]),
                completion_time=_parse_time(document["completionTime"]),
                keys=_count(document["keys"], "keys"),
                failed_keys=_count(document["failedKeys"], "failedKeys"),
                total_bytes=_count(document["bytes"], "bytes"),
                secrets=_count(document.get("secrets", 0), "secrets"),
                failed_secrets=_count(document.get("failedSecrets", 0), "failedSecrets"),
                certificates=_count(document.get("certificates", 0), "certificates"),
                failed_certificates=_count(
                    document.get("failedCertificates", 0), "failedCertificates"
                ),
                new_bytes=(
                    None
                    if document.get("newBytes") is None
                    else _count(document["newBytes"], "newBytes")
                ),
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
    #: The items stored, of every kind, in the order they were listed: all of them in a
    #: whole manifest, only those that differ from the base in a differential one.
    artifacts: tuple[Artifact, ...]
    failures: tuple[ItemFailure, ...] = field(default=())
    #: The whole manifest this one lists differences from; empty when it is whole itself.
    base: str = ""
    #: Items of the base that this snapshot does not hold (differential manifests only).
    removed: tuple[ItemRef, ...] = ()
    #: Built by the first lookup: a restore looks up every item, a backup none.
    _by_name: dict[tuple[ItemKind, str], Artifact] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def find(self, kind: ItemKind, name: str) -> Artifact | None:
        """The item's artifact, or None; Key Vault names are case-insensitive, so the
        lookup is too."""
        by_name = self._by_name
        if by_name is None:
            by_name = {(a.kind, a.name.lower()): a for a in self.artifacts}
            object.__setattr__(self, "_by_name", by_name)
        return by_name.get((kind, name.lower()))

    def artifact(self, kind: ItemKind, name: str) -> Artifact:
        """The item's artifact; NotFoundError (``<Kind>NotInSnapshot``) when it has none."""
        found = self.find(kind, name)
        if found is None:
            raise NotFoundError(
                f"{kind} {name} is not in snapshot {self.snapshot_id}",
                reason=f"{kind.camel}NotInSnapshot",
            )
        return found

    def of_kind(self, kind: ItemKind) -> tuple[Artifact, ...]:
        return tuple(artifact for artifact in self.artifacts if artifact.kind is kind)

    @property
    def differential(self) -> bool:
        return bool(self.base)

    @property
    def references(self) -> frozenset[str]:
        """The earlier snapshots this one needs: its base, and those holding bytes it
        refers to. Retention keeps them while this snapshot is kept."""
        homes = {artifact.stored_in for artifact in self.artifacts} | {self.base}
        return frozenset(homes - {"", self.snapshot_id})

    @property
    def total_bytes(self) -> int:
        return sum(artifact.size for artifact in self.artifacts)

    @property
    def new_bytes(self) -> int:
        """Bytes of the artifacts this snapshot stored itself."""
        return sum(artifact.size for artifact in self.artifacts if not artifact.stored_in)

    def merged_onto(self, base: Manifest) -> Manifest:
        """The whole manifest of this differential one, given its base (read from the same
        KeyBackup's storage): the base's items, less those removed, with this manifest's
        own entries in place of the base's. The base's own artifacts are kept where the
        base stored them; the result names no base, as it needs none."""
        if not self.differential:
            return self
        found_in = f"the base of snapshot {self.snapshot_id}"
        if base.snapshot_id != self.base or base.keybackup != self.keybackup:
            raise IntegrityError(
                f"{found_in} is snapshot {self.base}, but snapshot {base.snapshot_id} of "
                f"{base.keybackup.namespace}/{base.keybackup.name} was read for it"
            )
        if base.differential:
            raise IntegrityError(f"{found_in}, snapshot {self.base}, is not a whole manifest")
        if base.vault_url != self.vault_url:
            raise IntegrityError(
                f"{found_in}, snapshot {self.base}, is of vault {base.vault_url}, not "
                f"{self.vault_url}"
            )
        merged = {
            (a.kind, a.name.lower()): a.carried_from(base.snapshot_id) for a in base.artifacts
        }
        for kind, name in self.removed:
            merged.pop((kind, name.lower()), None)
        for artifact in self.artifacts:
            merged[(artifact.kind, artifact.name.lower())] = artifact
        ordered = sorted(merged.values(), key=lambda a: ITEM_KINDS.index(a.kind))
        return replace(self, artifacts=tuple(ordered), base="", removed=())

    def differences_from(self, base: Manifest) -> Manifest:
        """This whole manifest as a differential one on ``base`` (a whole manifest of an
        earlier snapshot): only the entries that differ from the base's, and the base's
        items this one does not hold."""
        own: list[Artifact] = []
        for artifact in self.artifacts:
            earlier = base.find(artifact.kind, artifact.name)
            if earlier is None or earlier.carried_from(base.snapshot_id) != artifact:
                own.append(artifact)
        removed = tuple(a.ref for a in base.artifacts if self.find(a.kind, a.name) is None)
        return replace(self, artifacts=tuple(own), base=base.snapshot_id, removed=removed)

    def self_contained(self) -> Manifest:
        """This whole manifest as one whose every artifact lies beside it, as in an export.
        A differential manifest does not list every item: it is refused."""
        if self.differential:
            raise ValueError(f"snapshot {self.snapshot_id}'s manifest is differential")
        return replace(
            self,
            artifacts=tuple(replace(a, stored_in="", location="") for a in self.artifacts),
            base="",
            removed=(),
        )

    @property
    def summary(self) -> SnapshotSummary:
        """Of a whole manifest only: a differential one does not list every item."""
        if self.differential:
            raise ValueError(f"snapshot {self.snapshot_id}'s manifest is differential")

        def stored(kind: ItemKind) -> int:
            return sum(1 for artifact in self.artifacts if artifact.kind is kind)

        def failed(kind: ItemKind) -> int:
            return sum(1 for failure in self.failures if failure.kind is kind)

        return SnapshotSummary(
            snapshot_id=self.snapshot_id,
            start_time=self.start_time,
            completion_time=self.completion_time,
            keys=stored(ItemKind.KEY),
            failed_keys=failed(ItemKind.KEY),
            total_bytes=self.total_bytes,
            secrets=stored(ItemKind.SECRET),
            failed_secrets=failed(ItemKind.SECRET),
            certificates=stored(ItemKind.CERTIFICATE),
            failed_certificates=failed(ItemKind.CERTIFICATE),
            new_bytes=self.new_bytes,
        )

    def to_json(self) -> bytes:
        """One list per kind (``keys``, ``secrets``, ``certificates``), each entry naming its
        kind: a keys-only manifest reads as it did before there were other kinds."""
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
            "failures": [_failure_document(f) for f in self.failures],
        }
        if self.differential:
            document["base"] = self.base
            document["removed"] = [{"kind": k.value, "name": n} for k, n in self.removed]
        present = [k for k in ITEM_KINDS if k is ItemKind.KEY or any(self.of_kind(k))]
        for kind in present:
            document[kind.plural] = []
        # The items are written one entry at a time into the document's empty lists, so a
        # manifest of many items is never held as a document of dicts besides its text.
        skeleton = _compact_json(document)
        lists = sorted(
            (skeleton.index(f'"{kind.plural}":['.encode()) + len(kind.plural) + 4, kind)
            for kind in present
        )
        text, copied = bytearray(), 0
        for at, kind in lists:
            text += skeleton[copied:at]
            copied = at
            for index, artifact in enumerate(self.of_kind(kind)):
                if index:
                    text += b","
                text += _compact_json(_artifact_document(artifact))
        text += skeleton[copied:]
        if len(text) > MANIFEST_MAX_BYTES:
            # Refused now rather than written: no store would read it back.
            raise TooLargeError(
                f"the manifest of snapshot {self.snapshot_id} is {len(text)} bytes, more than "
                f"the {MANIFEST_MAX_BYTES} a manifest may have; back up fewer items per KeyBackup"
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
            # Each item's entry becomes its artifact as soon as it is parsed, so a manifest
            # of many items is never held as dicts and artifacts at once.
            document = json.loads(raw, object_hook=_artifact_or_object)
            if not isinstance(document, dict) or document.get("kind") != MANIFEST_KIND:
                raise ValueError(f"not a {MANIFEST_KIND}")
            artifacts: list[Artifact] = []
            for kind in ITEM_KINDS:
                listed = (
                    document[kind.plural] if kind is ItemKind.KEY else document.get(kind.plural, [])
                )
                if not isinstance(listed, list) or not all(
                    isinstance(a, Artifact) and a.kind is kind for a in listed
                ):
                    raise ValueError(
                        f"an entry of {kind.plural} lacks its name, versions, sha256 or size, "
                        f"or is not of kind {kind}"
                    )
                artifacts.extend(listed)
            base = document.get("base", "")
            if base:
                _checked(SNAPSHOT_ID, base, "a snapshot id")
            removed = document.get("removed", [])
            if not isinstance(removed, list) or len(removed) > SNAPSHOT_KEYS_MAX:
                raise ValueError("removed is not a list of items")
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
                artifacts=tuple(artifacts),
                failures=tuple(
                    ItemFailure(
                        _text(f["name"], "a failure's name"),
                        _text(f["reason"], "a failure's reason"),
                        _text(f["message"], "a failure's message"),
                        _kind(f.get("kind", ItemKind.KEY.value)),
                    )
                    for f in document.get("failures", [])
                ),
                base=base,
                removed=tuple(_removed_item(entry) for entry in removed),
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


async def whole_manifest(
    manifest: Manifest, read_base: Callable[[str], Awaitable[Manifest]]
) -> Manifest:
    """``manifest`` with every item listed: merged onto its base when it is differential.
    ``read_base`` reads a manifest of the same KeyBackup by snapshot id, as stored."""
    if not manifest.differential:
        return manifest
    return manifest.merged_onto(await read_base(manifest.base))


def _compact_json(document: dict[str, Any]) -> bytes:
    # Compact: a manifest lists every key, and a Secret holds at most 1 MiB.
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _failure_document(failure: ItemFailure) -> dict[str, Any]:
    return {
        "kind": failure.kind.value,
        "name": failure.name,
        "reason": failure.reason,
        "message": failure.message,
    }


def _artifact_document(artifact: Artifact) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": artifact.kind.value,
        "name": artifact.name,
        "versions": list(artifact.versions),
        "sha256": artifact.sha256,
        "size": artifact.size,
    }
    if artifact.location:
        document["location"] = artifact.location
    if artifact.stored_in:
        document["storedIn"] = artifact.stored_in
    if artifact.change is not None:
        document["updated"] = timestamp(artifact.change.updated)
        document["fingerprint"] = artifact.change.fingerprint
    return document


def _removed_item(entry: Any) -> ItemRef:
    if not isinstance(entry, dict):
        raise ValueError("an entry of removed is not an object")
    kind = _kind(entry.get("kind"))
    return ItemRef(kind, _checked(KEY_NAME, entry.get("name"), f"a Key Vault {kind} name"))


def _artifact_or_object(entry: dict[str, Any]) -> Any:
    if not {"name", "versions", "sha256", "size"} <= entry.keys():
        return entry
    # A manifest is read back from storage a tenant may write to, and an item's name
    # becomes part of the path its backup is read from: only Key Vault's names pass.
    kind = _kind(entry.get("kind", ItemKind.KEY.value))
    name = _checked(KEY_NAME, entry["name"], f"a Key Vault {kind} name")
    versions = entry["versions"]
    if not isinstance(versions, list):
        raise ValueError(f"the versions of {kind} {name} are not a list")
    size = _count(entry["size"], f"the size of {kind} {name}")
    if size > ARTIFACT_MAX_BYTES:
        raise TooLargeError(
            f"it records {size} bytes for {kind} {name}, more than the {ARTIFACT_MAX_BYTES} "
            "a backup may have"
        )
    stored_in = entry.get("storedIn", "")
    if stored_in:
        _checked(SNAPSHOT_ID, stored_in, f"a snapshot id (where {kind} {name} is stored)")
    change = None
    if "updated" in entry or "fingerprint" in entry:
        change = ChangeRecord(
            _parse_time(_text(entry.get("updated"), f"the updated time of {kind} {name}")),
            _checked(FINGERPRINT_HEX, entry.get("fingerprint"), f"a fingerprint ({kind} {name})"),
        )
    return Artifact(
        name,
        tuple(
            _checked(VERSION_ID, version, f"a version id ({kind} {name})") for version in versions
        ),
        _checked(SHA256_HEX, entry["sha256"], f"a sha256 digest ({kind} {name})"),
        size,
        _text(entry.get("location", ""), f"where {kind} {name} is kept"),
        kind,
        stored_in,
        change,
    )


def _kind(value: Any) -> ItemKind:
    if not isinstance(value, str) or value not in ITEM_KINDS:
        raise ValueError(
            f"{foreign_text(repr(value))} is not a kind of item (key, secret or certificate)"
        )
    return ItemKind(value)


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
