"""Operator settings read from the environment."""

from __future__ import annotations

import pytest

from kvbackup.api.hosts import HostAllowList
from kvbackup.config import DEFAULT_BLOB_HOSTS, DEFAULT_VAULT_HOSTS, Settings
from kvbackup.errors import InvalidSpecError


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({})

    assert settings.ca_bundle is None
    assert settings.verify_challenge_resource is True
    assert settings.keyvault_api_version is None
    assert (settings.max_vault_calls, settings.keys_per_run) == (32, 32)
    assert settings.vault_rate_limit == 200.0
    assert (settings.retry_base_seconds, settings.retry_max_seconds) == (10.0, 600.0)
    assert settings.status_keys_limit == 100
    assert settings.watch_namespaces == ()
    assert settings.log_format == "text"
    assert settings.health_port == 8080
    assert settings.metrics_port == 8081
    assert settings.metrics_address == "0.0.0.0"
    assert settings.vault_hosts == DEFAULT_VAULT_HOSTS
    assert settings.blob_hosts == DEFAULT_BLOB_HOSTS


def test_every_variable_is_parsed_into_its_setting() -> None:
    settings = Settings.from_env(
        {
            "KVBACKUP_CA_BUNDLE": "/etc/ssl/private-ca.pem",
            "KVBACKUP_VERIFY_CHALLENGE_RESOURCE": " Off ",
            "KVBACKUP_KEYVAULT_API_VERSION": "7.5",
            "KVBACKUP_MAX_VAULT_CALLS": "4",
            "KVBACKUP_KEYS_PER_RUN": "8",
            "KVBACKUP_VAULT_RATE_LIMIT": "12.5",
            "KVBACKUP_RETRY_BASE_SECONDS": "0.5",
            "KVBACKUP_RETRY_MAX_SECONDS": "30",
            "KVBACKUP_STATUS_KEYS_LIMIT": "20",
            "KVBACKUP_WATCH_NAMESPACES": " team-a, ,team-b ",
            "KVBACKUP_LOG_FORMAT": " JSON ",
            "KVBACKUP_HEALTH_PORT": "0",
            "KVBACKUP_METRICS_PORT": "9464",
            "KVBACKUP_METRICS_ADDRESS": " 127.0.0.1 ",
            "KVBACKUP_VAULT_HOSTS": "*.vault.azure.net, localhost:8443",
            "KVBACKUP_BLOB_HOSTS": "127.0.0.1:*",
        }
    )

    assert settings == Settings(
        ca_bundle="/etc/ssl/private-ca.pem",
        verify_challenge_resource=False,
        keyvault_api_version="7.5",
        max_vault_calls=4,
        keys_per_run=8,
        vault_rate_limit=12.5,
        retry_base_seconds=0.5,
        retry_max_seconds=30.0,
        status_keys_limit=20,
        watch_namespaces=("team-a", "team-b"),
        log_format="json",
        health_port=0,
        metrics_port=9464,
        metrics_address="127.0.0.1",
        vault_hosts=HostAllowList.of(
            "KVBACKUP_VAULT_HOSTS", ["*.vault.azure.net", "localhost:8443"]
        ),
        blob_hosts=HostAllowList.of("KVBACKUP_BLOB_HOSTS", ["127.0.0.1:*"]),
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("KVBACKUP_VERIFY_CHALLENGE_RESOURCE", "maybe", id="not-a-flag"),
        pytest.param("KVBACKUP_MAX_CONCURRENCY", "many", id="not-a-number"),
        pytest.param("KVBACKUP_MAX_CONCURRENCY", "0", id="below-minimum"),
        pytest.param("KVBACKUP_MAX_VAULT_CALLS", "0", id="no-vault-call"),
        pytest.param("KVBACKUP_KEYS_PER_RUN", "2.5e", id="keys-not-a-number"),
        pytest.param("KVBACKUP_LOG_FORMAT", "logfmt", id="unknown-log-format"),
        pytest.param("KVBACKUP_VAULT_HOSTS", "*.net", id="too-wide-a-host-pattern"),
        pytest.param("KVBACKUP_BLOB_HOSTS", "https://a.blob.core.windows.net", id="url-not-host"),
        pytest.param("KVBACKUP_BLOB_HOSTS", ",", id="no-host-pattern"),
        pytest.param("KVBACKUP_METRICS_PORT", "8080", id="metrics-on-the-health-port"),
        pytest.param("KVBACKUP_METRICS_ADDRESS", "localhost", id="address-by-host-name"),
        pytest.param("KVBACKUP_METRICS_ADDRESS", "127.0.0.1:8081", id="address-with-a-port"),
        pytest.param("KVBACKUP_METRICS_ADDRESS", "0.0.0.0/0", id="address-as-a-network"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(InvalidSpecError, match=variable):
        Settings.from_env({variable: value})


def test_the_metrics_address_may_be_an_ipv6_one() -> None:
    assert Settings.from_env({"KVBACKUP_METRICS_ADDRESS": "::"}).metrics_address == "::"


def test_empty_host_lists_mean_the_defaults_like_every_other_empty_setting() -> None:
    settings = Settings.from_env({"KVBACKUP_VAULT_HOSTS": " ", "KVBACKUP_BLOB_HOSTS": ""})

    assert (settings.vault_hosts, settings.blob_hosts) == (DEFAULT_VAULT_HOSTS, DEFAULT_BLOB_HOSTS)


def test_the_former_concurrency_variable_sets_both_counts_not_set_by_name() -> None:
    former = {"KVBACKUP_MAX_CONCURRENCY": "6"}

    both = Settings.from_env(former)
    one = Settings.from_env({**former, "KVBACKUP_KEYS_PER_RUN": "2"})

    assert (both.max_vault_calls, both.keys_per_run) == (6, 6)
    assert (one.max_vault_calls, one.keys_per_run) == (6, 2)


def test_an_infinite_count_is_refused_naming_the_variable() -> None:
    with pytest.raises(InvalidSpecError, match="KVBACKUP_MAX_CONCURRENCY"):
        Settings.from_env({"KVBACKUP_MAX_CONCURRENCY": "inf"})
