"""The KeyBackup resource: which keys, secrets and certificates of which vault to back up,
and where to keep them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import re2

from kvbackup.api import BACKUP_NOW_ANNOTATION, VERIFY_NOW_ANNOTATION, fields
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.api.schedule import Schedule, parse_duration, parse_time_zone
from kvbackup.errors import InvalidSpecError, foreign_text

#: Longest ``namePattern`` (the CRD's maxLength too): a key name has at most 127
#: characters, and matching costs time in proportion to the pattern's size.
NAME_PATTERN_MAX_LENGTH = 256
#: Memory for one compiled pattern; RE2 refuses a pattern whose program needs more, such as
#: nested counted repetitions that expand to millions of states.
_NAME_PATTERN_MAX_MEMORY = 1 << 20


@dataclass(frozen=True)
class NamePattern:
    """A regular expression in RE2's syntax that a key's whole name must match.

    Matched on the event loop that serves every tenant's objects, so with RE2, whose time
    is linear in the name: Python's ``re`` backtracks, and a pattern such as ``(a+)+$``
    over one long name would stall every other run. RE2 has no backreferences nor
    lookaround, which is what makes that guarantee possible.
    """

    text: str
    _compiled: Any = field(repr=False, compare=False)

    @classmethod
    def compile(cls, text: str, path: str) -> NamePattern:
        if len(text) > NAME_PATTERN_MAX_LENGTH:
            raise InvalidSpecError(
                f"{path} is {len(text)} characters long; at most {NAME_PATTERN_MAX_LENGTH} "
                "are allowed"
            )
        options = re2.Options()
        options.max_mem = _NAME_PATTERN_MAX_MEMORY
        # Else RE2 logs the refused pattern itself to stderr, outside the operator's log.
        options.log_errors = False
        try:
            compiled = re2.compile(text, options=options)
        except re2.error as error:
            reason = error.args[0].decode(errors="replace") if error.args else "invalid"
            raise InvalidSpecError(
                f"{path} is not a regular expression in RE2 syntax (no backreferences "
                f"or lookaround): {foreign_text(reason)}"
            ) from None
        return cls(text, compiled)

    def fullmatch(self, name: str) -> bool:
        return self._compiled.fullmatch(name) is not None


@dataclass(frozen=True)
class ItemSelector:
    """Chooses items of one kind among all the vault's items of that kind; an empty
    selector chooses every one."""

    name_pattern: NamePattern | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def matches(self, name: str, tags: Mapping[str, str] | None) -> bool:
        if self.name_pattern is not None and not self.name_pattern.fullmatch(name):
            return False
        present = tags or {}
        return all(present.get(tag) == value for tag, value in self.tags.items())


@dataclass(frozen=True)
class ItemChoice:
    """Exactly one of: explicit ``names``, or a ``selector`` over the vault's items of
    one kind."""

    names: tuple[str, ...] | None = None
    selector: ItemSelector | None = None


@dataclass(frozen=True)
class SecretDestination:
    """Backups kept as Secrets in the KeyBackup's own namespace."""


@dataclass(frozen=True)
class BlobDestination:
    """Backups kept in an Azure Blob Storage container, under ``prefix``."""

    container: fields.BlobContainer
    prefix: str = ""


Destination = SecretDestination | BlobDestination

#: The name of a KeyBackup's own destination (``spec.destination``) among its copies.
PRIMARY = "primary"
#: Most copies a KeyBackup may name beside its destination (the CRD's maxItems too).
COPIES_MAX = 3


class DeletionPolicy(StrEnum):
    #: Backups outlive the KeyBackup object.
    RETAIN = "Retain"
    #: Deleting the KeyBackup deletes its snapshots.
    DELETE = "Delete"


#: ``spec.fullBackupEvery`` when unset.
DEFAULT_FULL_BACKUP_EVERY = datetime.timedelta(hours=24)


#: The zone of a KeyBackup without ``spec.timeZone``.
UTC = ZoneInfo("UTC")
#: The calendar tiers of a retention policy, finest first, each by its spec field.
TIERS = ("keepDaily", "keepWeekly", "keepMonthly", "keepYearly")


@dataclass(frozen=True)
class Retention:
    """Which snapshots to keep. ``keep_last`` and the tiers are keep rules: a snapshot any
    of them keeps is kept. With none set, every snapshot is. ``max_age`` bounds them all:
    a snapshot older than it is removed, whatever keeps it."""

    keep_last: int | None = None
    max_age: datetime.timedelta | None = None
    #: By tier (``TIERS``): the newest snapshot of each of the last N days, weeks (ISO,
    #: from Monday), months or years that have one, as restic's ``forget`` keeps them.
    tiers: Mapping[str, int] = field(default_factory=dict)
    #: Whose calendar the tiers count in: the KeyBackup's ``spec.timeZone``.
    time_zone: datetime.tzinfo = UTC

    @property
    def has_keep_rule(self) -> bool:
        return self.keep_last is not None or bool(self.tiers)


@dataclass(frozen=True)
class BlobCopy:
    """A further destination that every snapshot is written to, with its own retention."""

    name: str
    destination: BlobDestination
    retention: Retention


@dataclass(frozen=True)
class KeyBackupSpec:
    vault_url: str
    #: What to back up of each kind the spec selects (at least one), in ITEM_KINDS order.
    choices: Mapping[ItemKind, ItemChoice]
    destination: Destination
    credentials_secret: str | None = None
    schedule: Schedule | None = None
    suspend: bool = False
    retention: Retention = Retention()
    deletion_policy: DeletionPolicy = DeletionPolicy.RETAIN
    #: Every item is backed up afresh at least this often, changed or not: what an
    #: incremental run cannot see in the listing is caught within this long.
    full_backup_every: datetime.timedelta = DEFAULT_FULL_BACKUP_EVERY
    #: Further destinations the same snapshots are written to, in the spec's order.
    copies: tuple[BlobCopy, ...] = ()
    #: When every kept snapshot of every copy is read back and checked, and the latest
    #: compared with the vault.
    verify: Schedule | None = None

    def destinations(self) -> dict[str, Destination]:
        """Every place the snapshots are kept, by copy name, the primary first."""
        return destinations_of(self.destination, self.copies)


@dataclass(frozen=True)
class KeyBackupRef:
    """Identity of one KeyBackup object, as stored objects and manifests record it."""

    namespace: str
    name: str
    uid: str


def parse_spec(
    spec: Mapping[str, Any], *, min_schedule_interval: datetime.timedelta = datetime.timedelta(0)
) -> KeyBackupSpec:
    """Validate a KeyBackup spec; every refusal names the field at fault. A schedule that
    may run more often than ``min_schedule_interval`` is refused."""
    spec = fields.mapping(spec, "spec")
    retention = _parse_retention(
        fields.mapping(spec.get("retention"), "spec.retention"), _time_zone(spec), "spec.retention"
    )
    destination = parse_destination(spec)
    return KeyBackupSpec(
        vault_url=fields.vault_url(spec.get("vaultUrl"), "spec.vaultUrl"),
        choices=_parse_choices(spec),
        destination=destination,
        credentials_secret=fields.secret_ref(spec.get("credentials"), "spec.credentials"),
        schedule=_parse_schedule(spec, min_schedule_interval),
        suspend=fields.boolean(spec.get("suspend"), "spec.suspend"),
        retention=retention,
        deletion_policy=fields.enum(
            DeletionPolicy, spec.get("deletionPolicy"), DeletionPolicy.RETAIN, "spec.deletionPolicy"
        ),
        full_backup_every=_parse_full_backup_every(spec.get("fullBackupEvery")),
        copies=_parse_copies(spec, destination, retention),
        verify=_parse_schedule(spec, min_schedule_interval, "verify"),
    )


def parse_destination(spec: Mapping[str, Any]) -> Destination:
    """Only where a KeyBackup keeps its snapshots: enough to find or delete them, whatever
    else its spec says."""
    spec = fields.mapping(spec, "spec")
    return _parse_destination(fields.mapping(spec.get("destination"), "spec.destination"))


def parse_destinations(spec: Mapping[str, Any]) -> dict[str, Destination]:
    """Every place a KeyBackup keeps its snapshots, by copy name, the primary first."""
    spec = fields.mapping(spec, "spec")
    destination = parse_destination(spec)
    return destinations_of(destination, _parse_copies(spec, destination, Retention()))


def destinations_of(destination: Destination, copies: Sequence[BlobCopy]) -> dict[str, Destination]:
    return {PRIMARY: destination} | {copy.name: copy.destination for copy in copies}


def backup_now_token(annotations: Mapping[str, str]) -> str | None:
    """The on-demand trigger's current value; a value not yet handled asks for a run."""
    return annotations.get(BACKUP_NOW_ANNOTATION) or None


def verify_now_token(annotations: Mapping[str, str]) -> str | None:
    """The on-demand verification's current value; a value not yet handled asks for one."""
    return annotations.get(VERIFY_NOW_ANNOTATION) or None


def _parse_choices(spec: Mapping[str, Any]) -> dict[ItemKind, ItemChoice]:
    choices = {
        kind: _parse_choice(fields.mapping(spec[kind.plural], f"spec.{kind.plural}"), kind)
        for kind in ITEM_KINDS
        if spec.get(kind.plural) is not None
    }
    if not choices:
        raise InvalidSpecError("spec must select at least one of keys, secrets or certificates")
    return choices


def _parse_choice(choice: Mapping[str, Any], kind: ItemKind) -> ItemChoice:
    path = f"spec.{kind.plural}"
    has_names = "names" in choice
    has_selector = "selector" in choice
    if has_names == has_selector:
        raise InvalidSpecError(f"{path} must set exactly one of names or selector")
    if has_names:
        return ItemChoice(names=fields.item_names(choice["names"], f"{path}.names", kind))
    selector = fields.mapping(choice["selector"], f"{path}.selector")
    pattern = selector.get("namePattern")
    compiled = None
    if pattern is not None:
        compiled = NamePattern.compile(str(pattern), f"{path}.selector.namePattern")
    tags = fields.mapping(selector.get("tags"), f"{path}.selector.tags")
    return ItemChoice(
        selector=ItemSelector(name_pattern=compiled, tags={str(k): str(v) for k, v in tags.items()})
    )


def _time_zone(spec: Mapping[str, Any]) -> ZoneInfo:
    return parse_time_zone(str(spec.get("timeZone") or UTC.key), "spec.timeZone")


def _parse_schedule(
    spec: Mapping[str, Any], min_interval: datetime.timedelta, field_name: str = "schedule"
) -> Schedule | None:
    expression = spec.get(field_name)
    if not expression:
        return None
    return Schedule.parse(
        str(expression), _time_zone(spec), f"spec.{field_name}", min_interval=min_interval
    )


def _parse_retention(retention: Mapping[str, Any], zone: datetime.tzinfo, path: str) -> Retention:
    max_age = retention.get("maxAge")
    keep_last = retention.get("keepLast")
    return Retention(
        keep_last=None if keep_last is None else _count(retention, "keepLast", path),
        max_age=parse_duration(str(max_age), f"{path}.maxAge") if max_age else None,
        tiers={
            tier: _count(retention, tier, path) for tier in TIERS if retention.get(tier) is not None
        },
        time_zone=zone,
    )


def _count(retention: Mapping[str, Any], name: str, path: str) -> int:
    value = retention.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSpecError(f"{path}.{name} must be at least 1, not {value!r}")
    return value


def _parse_copies(
    spec: Mapping[str, Any], destination: Destination, retention: Retention
) -> tuple[BlobCopy, ...]:
    """``spec.copies``: each a blob destination apart from every other, named uniquely
    (``primary`` is the destination's own name), with the spec's retention unless its own."""
    entries = spec.get("copies") or []
    if not isinstance(entries, list):
        raise InvalidSpecError("spec.copies must be a list")
    if len(entries) > COPIES_MAX:
        raise InvalidSpecError(f"spec.copies names {len(entries)} copies; at most {COPIES_MAX}")
    copies: list[BlobCopy] = []
    places = {_place(destination): PRIMARY}
    for index, entry in enumerate(entries):
        path = f"spec.copies[{index}]"
        entry = fields.mapping(entry, path)
        name = fields.object_name(entry.get("name"), f"{path}.name", pattern=fields.NAMESPACE_NAME)
        if name == PRIMARY or any(copy.name == name for copy in copies):
            raise InvalidSpecError(
                f"{path}.name {name!r} is taken: each copy needs a name of its own, and "
                f"{PRIMARY!r} is spec.destination's"
            )
        if "blob" not in entry:
            raise InvalidSpecError(f"{path}.blob is required: copies are kept in Blob Storage")
        blob = fields.mapping(entry["blob"], f"{path}.blob")
        copy_destination = BlobDestination(
            container=fields.blob_container(blob, f"{path}.blob"),
            prefix=fields.blob_prefix(blob.get("prefix"), f"{path}.blob.prefix"),
        )
        place = _place(copy_destination)
        if place in places:
            raise InvalidSpecError(
                f"{path}.blob is the same container and prefix as copy {places[place]!r}: a "
                "copy must be kept apart from the others"
            )
        places[place] = name
        own = entry.get("retention")
        copies.append(
            BlobCopy(
                name,
                copy_destination,
                retention
                if own is None
                else _parse_retention(
                    fields.mapping(own, f"{path}.retention"),
                    retention.time_zone,
                    f"{path}.retention",
                ),
            )
        )
    return tuple(copies)


def _place(destination: Destination) -> tuple[str, ...]:
    """Where a destination's snapshots go, to tell two destinations sharing it apart."""
    if isinstance(destination, SecretDestination):
        return ("secret",)
    container = destination.container
    return (
        container.account_url.rstrip("/").lower(),
        container.name,
        destination.prefix.strip("/"),
    )


def _parse_full_backup_every(value: Any) -> datetime.timedelta:
    if value is None:
        return DEFAULT_FULL_BACKUP_EVERY
    return parse_duration(str(value), "spec.fullBackupEvery")


def _parse_destination(destination: Mapping[str, Any]) -> Destination:
    if "secret" in destination and "blob" in destination:
        raise InvalidSpecError("spec.destination must set exactly one of secret or blob")
    if "blob" in destination:
        blob = fields.mapping(destination["blob"], "spec.destination.blob")
        return BlobDestination(
            container=fields.blob_container(blob, "spec.destination.blob"),
            prefix=fields.blob_prefix(blob.get("prefix"), "spec.destination.blob.prefix"),
        )
    return SecretDestination()
