"""Which namespaces may use the operator's own Azure identity, and for which vaults.

The operator's identity can reach vaults that a namespace's tenants cannot; without this
rule, any namespace allowed to create a KeyBackup could read or write any such vault.
Objects that bring their own credentials are not subject to it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from kvbackup.errors import InvalidSpecError


@dataclass(frozen=True)
class IdentityRule:
    """Namespaces matching any of ``namespaces`` may use vaults matching any of ``vault_urls``."""

    namespaces: tuple[str, ...]
    vault_urls: tuple[str, ...]

    def allows(self, namespace: str, vault_url: str) -> bool:
        return any(fnmatchcase(namespace, pattern) for pattern in self.namespaces) and any(
            fnmatchcase(vault_url.lower(), pattern.lower().rstrip("/"))
            for pattern in self.vault_urls
        )


ALLOW_ALL = (IdentityRule(("*",), ("*",)),)


def parse_rules(text: str, source: str) -> tuple[IdentityRule, ...]:
    """Rules as JSON: ``[{"namespaces": ["team-a"], "vaultUrls": ["https://a.vault..."]}]``."""
    try:
        document = json.loads(text)
        if not isinstance(document, list):
            raise ValueError("expected a list of rules")
        return tuple(
            IdentityRule(
                namespaces=tuple(str(n) for n in rule["namespaces"]),
                vault_urls=tuple(str(u) for u in rule["vaultUrls"]),
            )
            for rule in document
        )
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidSpecError(
            f"{source} must be a JSON list of {{namespaces: [...], vaultUrls: [...]}}: {error}"
        ) from None


def identity_allowed(rules: Sequence[IdentityRule], namespace: str, vault_url: str) -> bool:
    return any(rule.allows(namespace, vault_url) for rule in rules)
