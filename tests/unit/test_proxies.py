"""Which proxy a vault's client goes through: read once from the environment."""

from __future__ import annotations

from kvbackup.adapters.proxies import proxies_for

VAULT = "https://payments.vault.azure.net"


def test_without_a_proxy_in_the_environment_a_vault_is_reached_directly() -> None:
    assert proxies_for(VAULT, {}) == {}


def test_https_proxy_is_used_for_a_vault() -> None:
    assert proxies_for(VAULT, {"https": "http://proxy:3128"}) == {"https": "http://proxy:3128"}


def test_no_proxy_sends_a_listed_domain_direct_as_a_private_endpoint_needs() -> None:
    proxies = {"https": "http://proxy:3128", "no": ".vault.azure.net,localhost"}

    assert proxies_for(VAULT, proxies) == {}
    assert proxies_for("https://other.example.com", proxies) == {"https": "http://proxy:3128"}


def test_an_http_proxy_alone_is_not_used_for_https_endpoints() -> None:
    assert proxies_for(VAULT, {"http": "http://proxy:3128"}) == {}
