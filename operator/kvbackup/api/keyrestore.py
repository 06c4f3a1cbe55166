"""The KeyRestore resource: what to bring back, from which snapshot, into which vault."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from kvbackup.api import fields
from kvbackup.errors import InvalidSpecError

LATEST = "latest"

_E = TypeVar("_E", bound=StrEnum)


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
    keybackup: str
    snapshot: str = LATEST


@dataclass(frozen=True)
class KeyRestoreSpec:
    vault_url: str
    source: SnapshotSource
    keys: tuple[str, ...] | None = None
    strategy: Strategy = Strategy.AUTO
    on_conflict: OnConflict = OnConflict.SKIP
    #: Purge a soft-deleted key and restore it from the backup instead of recovering it.
    purge_deleted: bool = False
    credentials_secret: str | None = None


def parse_spec(spec: Mapping[str, Any]) -> KeyRestoreSpec:
    source = fields.mapping(spec.get("source"), "spec.source")
    ref = fields.mapping(source.get("keyBackupRef"), "spec.source.keyBackupRef")
    if not ref:
        raise InvalidSpecError("spec.source.keyBackupRef is required")
    raw_keys = spec.get("keys")
    keys = None
    if raw_keys is not None:
        if not isinstance(raw_keys, list) or not raw_keys:
            raise InvalidSpecError("spec.keys, when set, must list at least one key name")
        keys = tuple(fields.key_name(k, f"spec.keys[{i}]") for i, k in enumerate(raw_keys))
    return KeyRestoreSpec(
        vault_url=fields.vault_url(spec.get("vaultUrl"), "spec.vaultUrl"),
        source=SnapshotSource(
            keybackup=fields.required_str(ref, "name", "spec.source.keyBackupRef"),
            snapshot=str(ref.get("snapshot") or LATEST),
        ),
        keys=keys,
        strategy=_enum(Strategy, spec.get("strategy"), Strategy.AUTO, "spec.strategy"),
        on_conflict=_enum(OnConflict, spec.get("onConflict"), OnConflict.SKIP, "spec.onConflict"),
        purge_deleted=bool(spec.get("purgeDeletedKeys", False)),
        credentials_secret=fields.secret_ref(spec.get("credentials"), "spec.credentials"),
    )


def _enum(kind: type[_E], value: Any, default: _E, path: str) -> _E:
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidSpecError(f"{path} must be one of {allowed}, not {value!r}") from None
