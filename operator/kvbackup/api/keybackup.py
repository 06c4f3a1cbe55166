"""The KeyBackup resource: which keys of which vault to back up, and where to keep them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kvbackup.api import BACKUP_NOW_ANNOTATION, fields
from kvbackup.errors import InvalidSpecError


@dataclass(frozen=True)
class KeySelector:
    """Chooses keys among all keys of the vault; an empty selector chooses every key."""

    name_pattern: re.Pattern[str] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def matches(self, name: str, tags: Mapping[str, str] | None) -> bool:
        if self.name_pattern is not None and not self.name_pattern.fullmatch(name):
            return False
        present = tags or {}
        return all(present.get(tag) == value for tag, value in self.tags.items())


@dataclass(frozen=True)
class KeyChoice:
    """Exactly one of: explicit ``names``, or a ``selector`` over the vault's keys."""

    names: tuple[str, ...] | None = None
    selector: KeySelector | None = None


@dataclass(frozen=True)
class SecretDestination:
    """Backups kept as Secrets in the KeyBackup's own namespace."""


Destination = SecretDestination


@dataclass(frozen=True)
class KeyBackupSpec:
    vault_url: str
    keys: KeyChoice
    destination: Destination
    credentials_secret: str | None = None


@dataclass(frozen=True)
class KeyBackupRef:
    """Identity of one KeyBackup object, as stored objects and manifests record it."""

    namespace: str
    name: str
    uid: str


def parse_spec(spec: Mapping[str, Any]) -> KeyBackupSpec:
    """Validate a KeyBackup spec; every refusal names the field at fault."""
    return KeyBackupSpec(
        vault_url=fields.vault_url(spec.get("vaultUrl"), "spec.vaultUrl"),
        keys=_parse_keys(fields.mapping(spec.get("keys"), "spec.keys")),
        destination=_parse_destination(fields.mapping(spec.get("destination"), "spec.destination")),
        credentials_secret=fields.secret_ref(spec.get("credentials"), "spec.credentials"),
    )


def backup_now_token(annotations: Mapping[str, str]) -> str | None:
    """The on-demand trigger's current value; a value not yet handled asks for a run."""
    return annotations.get(BACKUP_NOW_ANNOTATION) or None


def _parse_keys(keys: Mapping[str, Any]) -> KeyChoice:
    has_names = "names" in keys
    has_selector = "selector" in keys
    if has_names == has_selector:
        raise InvalidSpecError("spec.keys must set exactly one of names or selector")
    if has_names:
        raw = keys["names"]
        if not isinstance(raw, list) or not raw:
            raise InvalidSpecError("spec.keys.names must list at least one key name")
        names = tuple(fields.key_name(n, f"spec.keys.names[{i}]") for i, n in enumerate(raw))
        lowered = [n.lower() for n in names]
        if len(set(lowered)) != len(lowered):
            raise InvalidSpecError("spec.keys.names lists a key twice (names are case-insensitive)")
        return KeyChoice(names=names)
    selector = fields.mapping(keys["selector"], "spec.keys.selector")
    pattern = selector.get("namePattern")
    compiled = None
    if pattern is not None:
        try:
            compiled = re.compile(str(pattern))
        except re.error as error:
            raise InvalidSpecError(
                f"spec.keys.selector.namePattern is not a valid regular expression: {error}"
            ) from None
    tags = fields.mapping(selector.get("tags"), "spec.keys.selector.tags")
    return KeyChoice(
        selector=KeySelector(name_pattern=compiled, tags={str(k): str(v) for k, v in tags.items()})
    )


def _parse_destination(destination: Mapping[str, Any]) -> Destination:
    if not destination or "secret" in destination:
        return SecretDestination()
    raise InvalidSpecError("spec.destination must be secret: {}")
