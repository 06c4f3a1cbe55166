"""Whether a namespace may use the operator's own Azure identity for a vault or container.

The operator's identity can reach vaults that a namespace's tenants cannot; without this
rule, any namespace allowed to create a KeyBackup could read or write any such vault.
Objects that bring their own credentials are not subject to it. No rule allows nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvbackup.api.tenancy import IdentityRule, rule_allowing
from kvbackup.errors import NotPermittedError


def vault_allowed(rules: Sequence[IdentityRule], namespace: str, vault_url: str) -> bool:
    return any(rule.allows(namespace, vault_url, rule.vault_urls) for rule in rules)


def _container_url(account_url: str, container: str) -> str:
    return f"{account_url.rstrip('/')}/{container}"


def blob_allowed(
    rules: Sequence[IdentityRule], namespace: str, account_url: str, container: str
) -> bool:
    url = _container_url(account_url, container)
    return any(rule.allows(namespace, url, rule.blob_urls) for rule in rules)


def _refusal(namespace: str, target: str, rule: str) -> NotPermittedError:
    return NotPermittedError(
        f"namespace {namespace} may not use the operator's identity for {target}; give the "
        "object a credentials Secret, or have a cluster admin add the rule "
        f"{rule} to KVBACKUP_DEFAULT_IDENTITY_RULES (chart value defaultIdentity.rules)",
        reason="IdentityNotAllowed",
    )


def require_vault_allowed(rules: Sequence[IdentityRule], namespace: str, vault_url: str) -> None:
    if not vault_allowed(rules, namespace, vault_url):
        raise _refusal(namespace, vault_url, rule_allowing(namespace, vault_url=vault_url))


def require_blob_allowed(
    rules: Sequence[IdentityRule], namespace: str, account_url: str, container: str
) -> None:
    if not blob_allowed(rules, namespace, account_url, container):
        url = _container_url(account_url, container)
        raise _refusal(namespace, f"blob container {url}", rule_allowing(namespace, blob_url=url))
