"""Which namespaces may use the operator's own identity, for which vaults and containers."""

from __future__ import annotations

import json

import pytest

from kvbackup.api.fields import BlobContainer
from kvbackup.api.keyrestore import BlobSnapshotSource
from kvbackup.api.tenancy import IdentityRule, parse_rules
from kvbackup.config import Settings
from kvbackup.errors import InvalidSpecError, NotPermittedError
from kvbackup.services.tenancy import (
    blob_allowed,
    folder_namespace,
    require_blob_allowed,
    require_manifest_namespace_allowed,
    require_restore_source_allowed,
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


# --- restoring another namespace's snapshot with the operator's identity ----------------

SHARED = "https://backups.blob.core.windows.net"
SNAPSHOT = "20261128-004512-3fa2"
SHARING = parse_rules(
    json.dumps(
        [
            {"namespaces": ["team-*"], "vaultUrls": [], "blobUrls": [f"{SHARED}/shared"]},
            {
                "namespaces": ["team-a"],
                "vaultUrls": [],
                "blobUrls": [f"{SHARED}/shared"],
                "restoreFromNamespaces": ["team-b", "legacy-*"],
            },
        ]
    ),
    "KVBACKUP_DEFAULT_IDENTITY_RULES",
)


def _source(path: str, container: str = "shared", account: str = SHARED) -> BlobSnapshotSource:
    return BlobSnapshotSource(BlobContainer(account, container), path)


@pytest.mark.parametrize(
    ("path", "namespace"),
    [
        pytest.param(f"team-a/keys/{SNAPSHOT}", "team-a", id="folder"),
        pytest.param(f"team-a/keys/{SNAPSHOT}/", "team-a", id="folder-with-slash"),
        pytest.param(f"backups/v1/team-a/keys/{SNAPSHOT}", "team-a", id="under-a-prefix"),
        pytest.param(f"{SHARED}/shared/team-b/keys/{SNAPSHOT}/", "team-b", id="url"),
        pytest.param(f"{SHARED}/shared/p/team-b/k.v/{SNAPSHOT}", "team-b", id="url-with-prefix"),
        pytest.param(f"keys/{SNAPSHOT}", None, id="too-short"),
        pytest.param(f"{SHARED}/shared/keys/{SNAPSHOT}", None, id="url-too-short"),
        pytest.param(f"{SHARED}/other/team-b/keys/{SNAPSHOT}", None, id="url-of-another-container"),
        pytest.param(f"Team-A/keys/{SNAPSHOT}", None, id="not-a-namespace-name"),
        pytest.param(f"{'a' * 64}/keys/{SNAPSHOT}", None, id="namespace-too-long"),
        pytest.param(f"team-a/Keys/{SNAPSHOT}", None, id="not-a-keybackup-name"),
        pytest.param("team-a/keys/latest", None, id="not-a-snapshot-id"),
        pytest.param(f"team-a/keys/{SNAPSHOT}/keys", None, id="below-a-snapshot"),
    ],
)
def test_the_namespace_of_a_snapshot_folder_is_its_third_segment_from_the_end(
    path: str, namespace: str | None
) -> None:
    assert folder_namespace(_source(path)) == namespace


def test_an_emulators_account_path_is_not_taken_for_part_of_the_folder() -> None:
    account = "http://127.0.0.1:10000/devstoreaccount1"
    url = f"{account}/shared/team-b/keys/{SNAPSHOT}/"

    assert folder_namespace(_source(url, account=account)) == "team-b"
    assert folder_namespace(_source(f"{account}/shared/keys/{SNAPSHOT}", account=account)) is None


@pytest.mark.parametrize(
    ("namespace", "path"),
    [
        pytest.param("team-a", f"team-a/keys/{SNAPSHOT}", id="own-folder"),
        pytest.param("team-c", f"prefix/team-c/keys/{SNAPSHOT}", id="own-folder-under-a-prefix"),
        pytest.param("team-a", f"team-b/keys/{SNAPSHOT}", id="granted-namespace"),
        pytest.param("team-a", f"legacy-payments/keys/{SNAPSHOT}", id="granted-glob"),
    ],
)
def test_a_namespace_restores_its_own_snapshots_and_those_a_rule_grants(
    namespace: str, path: str
) -> None:
    require_restore_source_allowed(SHARING, namespace, _source(path))


def test_another_namespaces_snapshot_is_refused_quoting_the_rule_that_would_grant_it() -> None:
    path = f"{SHARED}/shared/team-a/keys/{SNAPSHOT}/"

    with pytest.raises(NotPermittedError) as refused:
        require_restore_source_allowed(SHARING, "team-b", _source(path))

    assert refused.value.reason == "SourceNotPermitted"
    assert "namespace team-b may not use the operator's identity for namespace team-a's " in (
        refused.value.message
    )
    rule = json.loads(_quoted_rule(refused.value.message))
    assert rule == {
        "namespaces": ["team-b"],
        "vaultUrls": [],
        "blobUrls": [f"{SHARED}/shared"],
        "restoreFromNamespaces": ["team-a"],
    }
    granted = SHARING + parse_rules(json.dumps([rule]), "R")
    require_restore_source_allowed(granted, "team-b", _source(path))


def test_a_grant_holds_only_in_the_containers_of_its_rule() -> None:
    rules = parse_rules(
        json.dumps(
            [
                {"namespaces": ["team-a"], "vaultUrls": [], "blobUrls": [f"{SHARED}/other"]},
                {
                    "namespaces": ["team-a"],
                    "vaultUrls": [],
                    "blobUrls": [f"{SHARED}/shared"],
                    "restoreFromNamespaces": ["team-b"],
                },
            ]
        ),
        "R",
    )

    with pytest.raises(NotPermittedError) as refused:
        require_restore_source_allowed(rules, "team-a", _source(f"team-b/k/{SNAPSHOT}", "other"))

    assert refused.value.reason == "SourceNotPermitted"


def test_a_container_the_namespace_may_not_use_is_refused_as_such_first() -> None:
    with pytest.raises(NotPermittedError) as refused:
        require_restore_source_allowed(SHARING, "ops", _source(f"ops/keys/{SNAPSHOT}"))

    assert refused.value.reason == "IdentityNotAllowed"


def test_a_path_that_is_no_snapshot_folder_is_refused_with_the_layout_it_must_have() -> None:
    with pytest.raises(NotPermittedError) as refused:
        require_restore_source_allowed(SHARING, "team-a", _source("exports/2026/keys"))

    assert refused.value.reason == "SourceNotPermitted"
    assert "[<prefix>/]<namespace>/<keybackup>/<snapshot-id>" in refused.value.message
    assert "credentials Secret" in refused.value.message


@pytest.mark.parametrize(
    ("recorded", "allowed"),
    [
        pytest.param("team-a", True, id="own"),
        pytest.param("team-b", True, id="granted"),
        pytest.param("team-c", False, id="another"),
        pytest.param("team-a\n", False, id="trailing-newline"),
        pytest.param("../team-a", False, id="not-a-name"),
    ],
)
def test_the_namespace_a_manifest_records_must_be_one_the_namespace_may_restore(
    recorded: str, allowed: bool
) -> None:
    container = BlobContainer(SHARED, "shared")
    if allowed:
        require_manifest_namespace_allowed(SHARING, "team-a", container, recorded)
        return
    with pytest.raises(NotPermittedError) as refused:
        require_manifest_namespace_allowed(SHARING, "team-a", container, recorded)
    assert refused.value.reason == "SourceNotPermitted"
    assert "\n" not in refused.value.message
    assert "add the rule" not in refused.value.message


@pytest.mark.parametrize(
    "rule",
    [
        {"namespaces": ["a"], "vaultUrls": [], "restoreFromNamespaces": "team-b"},
        {"namespaces": ["a"], "vaultUrls": [], "restoreFromNamespaces": [3]},
        {"namespaces": ["a"], "vaultUrls": [], "restoreFromNamespaces": [""]},
        {"namespaces": ["a"], "vaultUrls": [], "restoreFromNamespace": ["team-b"]},
        {"namespaces": [None], "vaultUrls": []},
    ],
)
def test_a_malformed_or_misspelt_grant_is_refused_not_ignored(rule: dict[str, object]) -> None:
    with pytest.raises(InvalidSpecError, match="KVBACKUP_DEFAULT_IDENTITY_RULES"):
        parse_rules(json.dumps([rule]), "KVBACKUP_DEFAULT_IDENTITY_RULES")


def test_a_rule_without_a_grant_lets_no_namespace_restore_another() -> None:
    (rule,) = parse_rules('[{"namespaces": ["*"], "vaultUrls": ["*"], "blobUrls": ["*"]}]', "R")

    assert rule.restore_from_namespaces == ()
    assert not rule.allows_restore_from("team-a", f"{SHARED}/shared", "team-b")
