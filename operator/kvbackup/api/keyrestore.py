"""The KeyRestore resource: what to bring back, from which snapshot, into which vault."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kvbackup.api import fields
from kvbackup.errors import InvalidSpecError

LATEST = "latest"


class Strategy(StrEnum):
    #: Active key -> onConflict; soft-deleted -> recover; absent -> restore from the backup.
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
    keys: tuple[str, ...] | None = None
    strategy: Strategy = Strategy.AUTO
    on_conflict: OnConflict = OnConflict.SKIP
    #: Purge a soft-deleted key and restore it from the backup instead of recovering it.
    purge_deleted: bool = False
    credentials_secret: str | None = None
    #: Read the snapshot and the vault, verify every backup and report what would be done,
    #: changing nothing.
    dry_run: bool = False


def parse_spec(spec: Mapping[str, Any]) -> KeyRestoreSpec:
    """Validate a KeyRestore spec; every refusal names the field at fault."""
    spec = fields.mapping(spec, "spec")
    raw_keys = spec.get("keys")
    keys = None if raw_keys is None else fields.key_names(raw_keys, "spec.keys")
    return KeyRestoreSpec(
        vault_url=fields.vault_url(spec.get("vaultUrl"), "spec.vaultUrl"),
        source=_parse_source(fields.mapping(spec.get("source"), "spec.source")),
        keys=keys,
        strategy=fields.enum(Strategy, spec.get("strategy"), Strategy.AUTO, "spec.strategy"),
        on_conflict=fields.enum(
            OnConflict, spec.get("onConflict"), OnConflict.SKIP, "spec.onConflict"
        ),
        purge_deleted=fields.boolean(spec.get("purgeDeletedKeys"), "spec.purgeDeletedKeys"),
        credentials_secret=fields.secret_ref(spec.get("credentials"), "spec.credentials"),
        dry_run=fields.boolean(spec.get("dryRun"), "spec.dryRun"),
    )


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
    )
