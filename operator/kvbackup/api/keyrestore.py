"""The KeyRestore resource: what to bring back (keys, secrets, certificates), from which
snapshot, into which vault."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kvbackup.api import fields
from kvbackup.api.keybackup import PRIMARY
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.errors import InvalidSpecError

LATEST = "latest"


class Strategy(StrEnum):
    #: Active item -> onConflict; soft-deleted -> recover; absent -> restore from the backup.
    AUTO = "Auto"
    RESTORE_ONLY = "RestoreOnly"
    RECOVER_ONLY = "RecoverOnly"


class OnConflict(StrEnum):
    SKIP = "Skip"
    FAIL = "Fail"


@dataclass(frozen=True)
class SnapshotSource:
    """A KeyBackup's snapshot, wherever that KeyBackup keeps them."""

    keybackup: str
    snapshot: str = LATEST
    #: The copy to read first (``primary``: the KeyBackup's destination); the others are
    #: read when it lacks the snapshot or one of its backups, or fails their checksums.
    copy: str = PRIMARY


@dataclass(frozen=True)
class BlobSnapshotSource:
    """A snapshot found by its folder in a blob container, e.g. after the cluster is gone."""

    container: fields.BlobContainer
    #: The snapshot's folder in the container, or its URL (as a KeyBackup's status shows).
    path: str

    @property
    def url(self) -> str | None:
        """The path when it is given as a URL, which names a host of its own."""
        return self.path if "://" in self.path else None


@dataclass(frozen=True)
class KeyRestoreSpec:
    vault_url: str
    source: SnapshotSource | BlobSnapshotSource
    #: The names to bring back, per kind; None: every item of the snapshot. A kind the
    #: mapping lacks is not restored.
    items: Mapping[ItemKind, tuple[str, ...]] | None = None
    strategy: Strategy = Strategy.AUTO
    on_conflict: OnConflict = OnConflict.SKIP
    #: Kinds whose soft-deleted items are purged and restored from the backup instead of
    #: recovered (``purgeDeletedKeys``, ``purgeDeletedSecrets``, ``purgeDeletedCertificates``).
    purge_deleted: frozenset[ItemKind] = frozenset()
    credentials_secret: str | None = None
    #: Read the snapshot and the vault, verify every backup and report what would be done,
    #: changing nothing.
    dry_run: bool = False


def parse_spec(spec: Mapping[str, Any]) -> KeyRestoreSpec:
    """Validate a KeyRestore spec; every refusal names the field at fault."""
    spec = fields.mapping(spec, "spec")
    items = {
        kind: fields.item_names(spec[kind.plural], f"spec.{kind.plural}", kind)
        for kind in ITEM_KINDS
        if spec.get(kind.plural) is not None
    }
    return KeyRestoreSpec(
        vault_url=fields.vault_url(spec.get("vaultUrl"), "spec.vaultUrl"),
        source=_parse_source(fields.mapping(spec.get("source"), "spec.source")),
        items=items or None,
        strategy=fields.enum(Strategy, spec.get("strategy"), Strategy.AUTO, "spec.strategy"),
        on_conflict=fields.enum(
            OnConflict, spec.get("onConflict"), OnConflict.SKIP, "spec.onConflict"
        ),
        purge_deleted=frozenset(
            kind
            for kind in ITEM_KINDS
            if fields.boolean(spec.get(purge_field(kind)), f"spec.{purge_field(kind)}")
        ),
        credentials_secret=fields.secret_ref(spec.get("credentials"), "spec.credentials"),
        dry_run=fields.boolean(spec.get("dryRun"), "spec.dryRun"),
    )


def purge_field(kind: ItemKind) -> str:
    """The spec's switch that purges soft-deleted items of ``kind`` before restoring."""
    return f"purgeDeleted{kind.camel}s"


def _parse_source(source: Mapping[str, Any]) -> SnapshotSource | BlobSnapshotSource:
    if ("keyBackupRef" in source) == ("blob" in source):
        raise InvalidSpecError("spec.source must set exactly one of keyBackupRef or blob")
    if "blob" in source:
        blob = fields.mapping(source["blob"], "spec.source.blob")
        return BlobSnapshotSource(
            container=fields.blob_container(blob, "spec.source.blob"),
            path=fields.snapshot_path(blob.get("path"), "spec.source.blob.path"),
        )
    ref = fields.mapping(source["keyBackupRef"], "spec.source.keyBackupRef")
    return SnapshotSource(
        keybackup=fields.object_name(ref.get("name"), "spec.source.keyBackupRef.name"),
        snapshot=fields.snapshot_choice(
            ref.get("snapshot"), "spec.source.keyBackupRef.snapshot", latest=LATEST
        ),
        copy=fields.object_name(
            ref.get("copy") or PRIMARY,
            "spec.source.keyBackupRef.copy",
            pattern=fields.NAMESPACE_NAME,
        ),
    )
