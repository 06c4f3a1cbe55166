"""The cluster admin's rules: which namespaces may use the operator's own Azure identity,
for which vaults and blob containers. Parsed from KVBACKUP_DEFAULT_IDENTITY_RULES."""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase

from kvbackup.errors import InvalidSpecError


@dataclass(frozen=True)
class IdentityRule:
    """Namespaces matching ``namespaces`` may use the operator's identity for vaults
    matching ``vault_urls`` and for blob containers (``<accountUrl>/<container>``) matching
    ``blob_urls``."""

    namespaces: tuple[str, ...]
    vault_urls: tuple[str, ...]
    blob_urls: tuple[str, ...] = ()

    def allows(self, namespace: str, url: str, patterns: tuple[str, ...]) -> bool:
        return any(fnmatchcase(namespace, pattern) for pattern in self.namespaces) and any(
            fnmatchcase(url.lower().rstrip("/"), pattern.lower().rstrip("/"))
            for pattern in patterns
        )


ALLOW_ALL = (IdentityRule(("*",), ("*",), ("*",)),)


def parse_rules(text: str, source: str) -> tuple[IdentityRule, ...]:
    """Rules as JSON: ``[{"namespaces": ["team-a"], "vaultUrls": [...], "blobUrls": [...]}]``."""
    try:
        document = json.loads(text)
        if not isinstance(document, list):
            raise ValueError("expected a list of rules")
        return tuple(
            IdentityRule(
                namespaces=tuple(str(n) for n in rule["namespaces"]),
                vault_urls=tuple(str(u) for u in rule.get("vaultUrls", [])),
                blob_urls=tuple(str(u) for u in rule.get("blobUrls", [])),
            )
            for rule in document
        )
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidSpecError(
            f"{source} must be a JSON list of {{namespaces: [...], vaultUrls: [...]}}: {error}"
        ) from None
