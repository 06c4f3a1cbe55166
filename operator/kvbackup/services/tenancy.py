"""Whether a namespace may use the operator's own Azure identity for a vault or container.

The operator's identity can reach vaults that a namespace's tenants cannot; without this
rule, any namespace allowed to create a KeyBackup could read or write any such vault.
Objects that bring their own credentials are not subject to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvbackup.api.tenancy import IdentityRule
from kvbackup.errors import NotPermittedError


def vault_allowed(rules: Sequence[IdentityRule], namespace: str, vault_url: str) -> bool:
    return any(rule.allows(namespace, vault_url, rule.vault_urls) for rule in rules)


def blob_allowed(
    rules: Sequence[IdentityRule], namespace: str, account_url: str, container: str
) -> bool:
    url = f"{account_url.rstrip('/')}/{container}"
    return any(rule.allows(namespace, url, rule.blob_urls) for rule in rules)


def require_vault_allowed(rules: Sequence[IdentityRule], namespace: str, vault_url: str) -> None:
    if not vault_allowed(rules, namespace, vault_url):
        raise NotPermittedError(
            f"namespace {namespace} may not use the operator's identity for {vault_url}; "
            "reference a credentials Secret, or ask a cluster admin to allow it",
            reason="IdentityNotAllowed",
        )


def require_blob_allowed(
    rules: Sequence[IdentityRule], namespace: str, account_url: str, container: str
) -> None:
    if not blob_allowed(rules, namespace, account_url, container):
        raise NotPermittedError(
            f"namespace {namespace} may not use the operator's identity for blob "
            f"container {account_url}/{container}; reference a credentials Secret, or ask "
            "a cluster admin to allow it",
            reason="IdentityNotAllowed",
        )
