"""Reading typed values out of a custom resource body, with errors that name the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from kvbackup.errors import InvalidSpecError

#: Key Vault object names: 1-127 letters, digits and dashes.
KEY_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


def mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpecError(f"{path} must be an object")
    return value


def required_str(body: Mapping[str, Any], key: str, path: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidSpecError(f"{path}.{key} is required")
    return value


def vault_url(value: Any, path: str) -> str:
    """The vault's base URL, normalised to ``https://host[:port]`` without a trailing slash."""
    if not isinstance(value, str) or not value:
        raise InvalidSpecError(f"{path} is required")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidSpecError(
            f"{path} must be a vault URL such as https://myvault.vault.azure.net, not {value!r}"
        )
    if parts.query or parts.fragment or parts.username:
        raise InvalidSpecError(f"{path} must not carry a query, fragment or user: {value!r}")
    host = parts.hostname.lower()
    return f"https://{host}:{parts.port}" if parts.port else f"https://{host}"


def key_name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not KEY_NAME.match(value):
        raise InvalidSpecError(
            f"{path} must be a Key Vault key name (1-127 letters, digits or dashes), not {value!r}"
        )
    return value


def secret_ref(value: Any, path: str) -> str | None:
    """The name of a Secret in the object's own namespace, or None when absent."""
    if value is None:
        return None
    ref = mapping(value, path)
    if "namespace" in ref:
        raise InvalidSpecError(f"{path} may only name a Secret in the object's own namespace")
    return required_str(ref, "name", path)
