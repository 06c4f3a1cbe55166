"""Reading typed values out of a custom resource body, with errors that name the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import SplitResult, urlsplit

from kvbackup.api.kinds import ItemKind
from kvbackup.errors import InvalidSpecError

# Every grammar here is written as the CRDs' patterns are (``^...$``) and checked with
# ``fullmatch``: ``match`` with ``$`` also accepts the text followed by a newline.

#: Key Vault object names: 1-127 letters, digits and dashes.
KEY_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")

_E = TypeVar("_E", bound=StrEnum)


def mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpecError(f"{path} must be an object")
    return value


def boolean(value: Any, path: str) -> bool:
    """An optional boolean; absent is false. A string such as "false" is refused."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidSpecError(f"{path} must be true or false, not {value!r}")
    return value


def required_str(body: Mapping[str, Any], key: str, path: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidSpecError(f"{path}.{key} is required")
    return value


def _plain(text: str) -> bool:
    """Printable ASCII without spaces: what a URL is written in. urlsplit drops tabs and
    newlines wherever they are, so ``https://v.vault\n.azure.net`` would read as another
    text than the one written."""
    return text.isascii() and text.isprintable() and " " not in text


def _split(url: str, what: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as error:  # e.g. an unclosed "[" of an IPv6 address
        raise InvalidSpecError(f"{what} is not a URL: {error}") from None


def vault_url(value: Any, path: str) -> str:
    """The vault's base URL, normalised to ``https://host[:port]`` without a trailing slash."""
    if not isinstance(value, str) or not value:
        raise InvalidSpecError(f"{path} is required")
    if not _plain(value):
        raise InvalidSpecError(f"{path} must be printable ASCII without spaces, not {value!r}")
    parts = _split(value, f"{path} ({value!r})")
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidSpecError(
            f"{path} must be a vault URL such as https://myvault.vault.azure.net, not {value!r}"
        )
    if parts.query or parts.fragment or parts.username:
        raise InvalidSpecError(f"{path} must not carry a query, fragment or user: {value!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 and parts.netloc.rsplit("]", 1)[-1].count(":"):
        raise InvalidSpecError(f"{path} has a port outside 1-65535: {value!r}")
    host = parts.hostname.lower()
    return f"https://{host}:{port}" if port else f"https://{host}"


_CONTAINER = re.compile(r"^[a-z0-9](-?[a-z0-9])+$")
#: An account URL (the CRD's pattern is this text) has no path, but on loopback one path
#: segment: the account's name, as emulators such as Azurite address an account
#: (``http://127.0.0.1:10000/devstoreaccount1``). Anything more would be read as a
#: container; and elsewhere the blob SDK drops such a path (``*.blob.core.windows.net``) or
#: sends it (custom domains, ``*.blob.storage.azure.net``), where Blob Storage reads it as
#: the container, so ``https://acct.blob.core.windows.net/other`` would reach container
#: ``other`` while the identity rules and status spoke of another.
ACCOUNT_URL = re.compile(
    r"^https?://([^/?#\s]+|(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?/[a-z0-9]{3,24})/?$"
)

#: One segment of a folder in a container: letters, digits, '.', '_' and '-', not dots
#: alone. The blob SDK sends through aiohttp, whose URL parser resolves '.' and '..' before
#: the request leaves, so ``team-a/../other/x`` would reach container ``other``; '%' is not
#: allowed, so no encoded form (``%2e%2e``, ``%2F``) can spell a dot segment or a slash.
_FOLDER_SEGMENT = r"\.*[A-Za-z0-9_-][A-Za-z0-9._-]*"
#: Segments joined by single slashes, with one trailing slash at most: no empty segment.
_FOLDER = rf"{_FOLDER_SEGMENT}(/{_FOLDER_SEGMENT})*/?"
#: ``destination.blob.prefix`` (the CRD's pattern is this text).
BLOB_PREFIX = re.compile(rf"^({_FOLDER})?$")
#: ``source.blob.path``: a folder, or the URL of one whose path is a folder (as a
#: KeyBackup's status shows it). The URL's host is checked against the allow-list later.
SNAPSHOT_PATH = re.compile(rf"^(https?://[^/?#%\\@\s]+/)?{_FOLDER}$")
_FOLDER_RULE = (
    "folder names of letters, digits, '.', '_' or '-' separated by single slashes, "
    "without a leading slash, and none of them '.' or '..'"
)


def require_secure_transport(url: str, what: str) -> None:
    """https, or plain http to an emulator on loopback: backup bytes and credentials must not
    cross a network in clear text, however the endpoint was given."""
    parts = _split(url, what)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise InvalidSpecError(
            f"{what} must be an https URL such as https://myaccount.blob.core.windows.net "
            "(http only on loopback, for an emulator)"
        )


def account_url(value: Any, path: str) -> str:
    """A storage account's blob endpoint; http only for emulators on loopback."""
    if not isinstance(value, str) or not value:
        raise InvalidSpecError(f"{path} is required")
    if not (ACCOUNT_URL.fullmatch(value) and _plain(value)):
        raise InvalidSpecError(
            f"{path} must be an account's blob endpoint with no path, query or fragment "
            "(on loopback, for an emulator, the account's name as its path: 3-24 lowercase "
            f"letters or digits), not {value!r}"
        )
    require_secure_transport(value, f"{path} ({value!r})")
    return value.rstrip("/")


def blob_prefix(value: Any, path: str) -> str:
    """A folder in a container under which snapshots are kept; absent or empty: the root."""
    if value is None:
        return ""
    if not isinstance(value, str) or not BLOB_PREFIX.fullmatch(value):
        raise InvalidSpecError(f"{path} must be {_FOLDER_RULE}, not {value!r}")
    return value.rstrip("/")


def snapshot_path(value: Any, path: str) -> str:
    """A snapshot's folder in a container, or its URL."""
    if not isinstance(value, str) or not (SNAPSHOT_PATH.fullmatch(value) and _plain(value)):
        raise InvalidSpecError(
            f"{path} must be a snapshot's folder ({_FOLDER_RULE}) or its URL, not {value!r}"
        )
    return value


@dataclass(frozen=True)
class BlobContainer:
    """A blob container and how to reach it."""

    account_url: str
    name: str
    #: A Secret in the object's namespace with ``connectionString`` or ``sasToken``;
    #: None: the operator's own identity.
    credentials_secret: str | None = None


def container_name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidSpecError(f"{path} is required")
    if not (_CONTAINER.fullmatch(value) and 3 <= len(value) <= 63):
        raise InvalidSpecError(
            f"{path} must be 3-63 lowercase letters, digits or single dashes, not {value!r}"
        )
    return value


def blob_container(blob: Mapping[str, Any], path: str) -> BlobContainer:
    """The ``accountUrl``, ``container`` and ``credentials`` fields of ``blob``."""
    container = container_name(blob.get("container"), f"{path}.container")
    return BlobContainer(
        account_url=account_url(blob.get("accountUrl"), f"{path}.accountUrl"),
        name=container,
        credentials_secret=secret_ref(blob.get("credentials"), f"{path}.credentials"),
    )


#: A Kubernetes object's name (a KeyBackup's): a DNS subdomain of at most 63 characters,
#: as the CRD's pattern says. It becomes part of Secret names, label selectors and blob
#: folders, so nothing else may pass.
OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
#: A namespace's name: a DNS label.
NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: A snapshot's id as ``new_snapshot_id`` makes it (the CRD's pattern, without ``latest``).
SNAPSHOT_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")


def object_name(value: Any, path: str, *, pattern: re.Pattern[str] = OBJECT_NAME) -> str:
    """A KeyBackup's (or, with ``NAMESPACE_NAME``, a namespace's) name."""
    if value is None or value == "":
        raise InvalidSpecError(f"{path} is required")
    if not isinstance(value, str) or len(value) > 63 or not pattern.fullmatch(value):
        raise InvalidSpecError(
            f"{path} must be a Kubernetes name (at most 63 lowercase letters, digits, "
            f"dashes{' or dots' if pattern is OBJECT_NAME else ''}), not {value!r}"
        )
    return value


def snapshot_choice(value: Any, path: str, *, latest: str) -> str:
    """``latest`` or a snapshot id; absent: ``latest``."""
    if value is None or value == latest:
        return latest
    if not isinstance(value, str) or not SNAPSHOT_ID.fullmatch(value):
        raise InvalidSpecError(
            f"{path} must be {latest} or a snapshot id such as 20261128-004512-3fa2, not {value!r}"
        )
    return value


def item_name(value: Any, path: str, kind: ItemKind = ItemKind.KEY) -> str:
    """A Key Vault name of ``kind``: keys, secrets and certificates share one grammar."""
    if not isinstance(value, str) or not KEY_NAME.fullmatch(value):
        raise InvalidSpecError(
            f"{path} must be a Key Vault {kind} name (1-127 letters, digits or dashes), "
            f"not {value!r}"
        )
    return value


def item_names(value: Any, path: str, kind: ItemKind = ItemKind.KEY) -> tuple[str, ...]:
    """A non-empty list of distinct names of ``kind``; Key Vault names are
    case-insensitive."""
    if not isinstance(value, list) or not value:
        raise InvalidSpecError(f"{path} must list at least one {kind} name")
    names = tuple(item_name(name, f"{path}[{i}]", kind) for i, name in enumerate(value))
    lowered = [name.lower() for name in names]
    if len(set(lowered)) != len(lowered):
        raise InvalidSpecError(f"{path} lists a {kind} twice (names are case-insensitive)")
    return names


def secret_ref(value: Any, path: str) -> str | None:
    """The name of a Secret in the object's own namespace, or None when absent."""
    if value is None:
        return None
    ref = mapping(value, path)
    if "namespace" in ref:
        raise InvalidSpecError(f"{path} may only name a Secret in the object's own namespace")
    name = required_str(ref, "name", path)
    if len(name) > 253 or not OBJECT_NAME.fullmatch(name):
        raise InvalidSpecError(
            f"{path}.name must be a Secret's name (at most 253 lowercase letters, digits, "
            f"dashes or dots), not {name!r}"
        )
    return name


def enum(kind: type[_E], value: Any, default: _E, path: str) -> _E:
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidSpecError(f"{path} must be one of {allowed}, not {value!r}") from None
