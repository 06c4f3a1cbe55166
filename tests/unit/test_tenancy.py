"""Which namespaces may use the operator's own identity, for which vaults and containers."""

from __future__ import annotations

import pytest

from kvbackup.api.tenancy import ALLOW_ALL, parse_rules
from kvbackup.errors import InvalidSpecError, NotPermittedError
from kvbackup.services.tenancy import (
    blob_allowed,
    require_blob_allowed,
    require_vault_allowed,
    vault_allowed,
)

RULES = parse_rules(
    '[{"namespaces": ["team-a"], "vaultUrls": ["https://team-a-*.vault.azure.net"],'
    '  "blobUrls": ["https://backups.blob.core.windows.net/team-a"]},'
    ' {"namespaces": ["platform-*"], "vaultUrls": ["*"]}]',
    "KVBACKUP_DEFAULT_IDENTITY_RULES",
)


@pytest.mark.parametrize(
    ("namespace", "vault", "allowed"),
    [
        pytest.param("team-a", "https://team-a-prod.vault.azure.net", True, id="own vault"),
        pytest.param("team-a", "https://TEAM-A-prod.vault.azure.net/", True, id="any case"),
        pytest.param("team-a", "https://team-b-prod.vault.azure.net", False, id="other vault"),
        pytest.param("team-b", "https://team-a-prod.vault.azure.net", False, id="other team"),
        pytest.param("platform-ops", "https://anything.vault.azure.net", True, id="glob ns"),
    ],
)
def test_vault_rules_match_namespace_and_vault_globs(
    namespace: str, vault: str, allowed: bool
) -> None:
    assert vault_allowed(RULES, namespace, vault) is allowed


def test_a_rule_without_blob_urls_allows_no_container() -> None:
    assert blob_allowed(RULES, "team-a", "https://backups.blob.core.windows.net", "team-a")
    assert not blob_allowed(RULES, "team-a", "https://backups.blob.core.windows.net", "team-b")
    assert not blob_allowed(RULES, "platform-ops", "https://backups.blob.core.windows.net", "x")


def test_without_rules_every_namespace_may_use_the_identity() -> None:
    assert vault_allowed(ALLOW_ALL, "anyone", "https://any.vault.azure.net")
    assert blob_allowed(ALLOW_ALL, "anyone", "https://acct.blob.core.windows.net", "c")


@pytest.mark.parametrize("text", ['{"namespaces": []}', "[{}]", "not json", '[{"namespaces": 3}]'])
def test_malformed_rules_are_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(InvalidSpecError, match="KVBACKUP_DEFAULT_IDENTITY_RULES"):
        parse_rules(text, "KVBACKUP_DEFAULT_IDENTITY_RULES")


def test_a_refusal_names_the_namespace_the_target_and_the_way_out() -> None:
    with pytest.raises(NotPermittedError, match="namespace team-b may not use") as refused:
        require_vault_allowed(RULES, "team-b", "https://team-a-prod.vault.azure.net")
    assert refused.value.reason == "IdentityNotAllowed"
    assert "credentials Secret" in refused.value.message
    with pytest.raises(
        NotPermittedError, match=r"https://backups\.blob\.core\.windows\.net/team-b"
    ):
        require_blob_allowed(RULES, "team-a", "https://backups.blob.core.windows.net", "team-b")
    require_vault_allowed(RULES, "team-a", "https://team-a-prod.vault.azure.net")
