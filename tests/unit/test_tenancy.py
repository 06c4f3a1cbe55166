"""Which namespaces may use the operator's own identity, for which vaults and containers."""

from __future__ import annotations

import json

import pytest

from kvbackup.api.tenancy import IdentityRule, parse_rules
from kvbackup.config import Settings
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


def test_without_rules_no_namespace_may_use_the_identity() -> None:
    rules = Settings.from_env({}).default_identity_rules

    assert not vault_allowed(rules, "anyone", "https://any.vault.azure.net")
    assert not blob_allowed(rules, "anyone", "https://acct.blob.core.windows.net", "c")


def test_the_single_tenant_rule_lets_every_namespace_use_the_identity() -> None:
    rules = parse_rules('[{"namespaces": ["*"], "vaultUrls": ["*"], "blobUrls": ["*"]}]', "R")

    assert vault_allowed(rules, "anyone", "https://any.vault.azure.net")
    assert blob_allowed(rules, "anyone", "http://127.0.0.1:10000/devstoreaccount1", "c")


@pytest.mark.parametrize(
    ("pattern", "url", "allowed"),
    [
        pytest.param(
            "https://team-a-*.vault.azure.net",
            "https://team-a-x.vault.azure.net.evil.com",
            False,
            id="star-cannot-leave-the-host-suffix",
        ),
        pytest.param(
            "https://team-a-*.vault.azure.net",
            "https://team-a-x.evil.com.vault.azure.net",
            False,
            id="star-is-one-label",
        ),
        pytest.param(
            "https://team-a-*.vault.azure.net",
            "https://team-a-x.vault.azure.net:8443",
            False,
            id="star-adds-no-port",
        ),
        pytest.param(
            "https://team-a-*", "https://team-a-x.vault.azure.net", False, id="star-is-no-dot"
        ),
        pytest.param(
            "https://backups.blob.core.windows.net/team-a-*",
            "https://backups.blob.core.windows.net/team-a-x/other",
            False,
            id="star-is-one-path-segment",
        ),
        pytest.param(
            "https://*.blob.core.windows.net/team-a",
            "https://evil.com/x.blob.core.windows.net/team-a",
            False,
            id="star-is-no-slash",
        ),
        pytest.param(
            "https://*.blob.core.windows.net/team-a",
            "https://x@evil.com:1.blob.core.windows.net/team-a",
            False,
            id="star-is-no-user-or-port",
        ),
        pytest.param(
            "https://team-a-*.vault.azure.net",
            "https://team-a-prod.vault.azure.net",
            True,
            id="star-within-a-label",
        ),
        pytest.param(
            "http://127.0.0.1:*/devstoreaccount1/*",
            "http://127.0.0.1:10000/devstoreaccount1/team-a",
            True,
            id="star-as-port-and-container",
        ),
    ],
)
def test_a_star_in_a_url_pattern_stays_within_one_label_port_or_segment(
    pattern: str, url: str, allowed: bool
) -> None:
    rules = parse_rules(json.dumps([{"namespaces": ["ns"], "vaultUrls": [pattern]}]), "R")

    assert vault_allowed(rules, "ns", url) is allowed


@pytest.mark.parametrize(
    "text",
    [
        '{"namespaces": []}',
        "[{}]",
        "not json",
        '[{"namespaces": 3}]',
        '[{"namespaces": ["a"], "vaultUrls": "*"}]',
        '[{"namespaces": ["a"], "vaultUrls": ["team-a-*.vault.azure.net"]}]',
    ],
)
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


def _quoted_rule(message: str) -> str:
    return message.split("add the rule ", 1)[1].split(" to KVBACKUP_DEFAULT_IDENTITY_RULES")[0]


def _check(rules: tuple[IdentityRule, ...], target: str) -> None:
    if target == "vault":
        require_vault_allowed(rules, "team-b", "https://team-b-prod.vault.azure.net")
    else:
        require_blob_allowed(rules, "team-b", "https://backups.blob.core.windows.net", "team-b")


@pytest.mark.parametrize("target", ["vault", "blob"])
def test_the_rule_a_refusal_quotes_is_the_one_that_allows_the_object(target: str) -> None:
    with pytest.raises(NotPermittedError) as refused:
        _check(RULES, target)

    _check(RULES + parse_rules(f"[{_quoted_rule(refused.value.message)}]", "R"), target)
