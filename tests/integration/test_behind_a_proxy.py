"""The operator behind a real TLS-inspecting proxy, mitmproxy, as platform teams run it:
HTTPS_PROXY and HTTP_PROXY name the proxy, and the one CA setting, KVBACKUP_CA_BUNDLE, holds
the proxy's CA and nothing else. Every Azure call then goes through the proxy over TLS
that only that CA lets the operator trust: Key Vault (Lowkey Vault), Blob Storage (Azurite
on HTTPS, with the operator's own identity) and the token requests of that identity (a
managed-identity endpoint behind the proxy's reverse mode). NO_PROXY keeps the API server
direct. The proxy's own record says what passed through it."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.storage.blob.aio import ContainerClient

from tests.harness import identity
from tests.harness.azurite import Azurite
from tests.harness.controlplane import ControlPlane
from tests.harness.lowkey import Lowkey
from tests.harness.mitm import Mitmproxy, ProxiedRequest
from tests.integration.conftest import Cluster, Operators, VaultUnderTest, new_namespaces
from tests.integration.objects import key_results, keybackup, keyrestore

pytestmark = pytest.mark.integration


@pytest.fixture
def mitm(
    lowkey: Lowkey, oauth_azurite: Azurite, token_endpoint: str, tmp_path: Path
) -> Iterator[Mitmproxy]:
    """The proxy, trusting the emulators' certificates upstream, and serving the token
    endpoint over TLS on its reverse port."""
    assert oauth_azurite.certificate is not None
    upstream = token_endpoint.rsplit("/", 1)[0]
    with Mitmproxy(
        tmp_path / "mitm", [lowkey.certificate, oauth_azurite.certificate], reverse_to=upstream
    ) as proxy:
        yield proxy


def behind(
    mitm: Mitmproxy,
    plane: ControlPlane,
    token_endpoint: str,
    *,
    trusting: bool = True,
    tokens_over_tls: bool = True,
) -> dict[str, str]:
    """An operator's settings behind the proxy: its CA as the one trust setting (none
    when not ``trusting``: the system's CAs), the API server and ``localhost`` (the token
    endpoint's name) in NO_PROXY. With ``tokens_over_tls``, tokens come over TLS from the
    proxy's reverse port; without, over plain http straight from the endpoint."""
    api_port = urlsplit(plane.server).port
    token_port = urlsplit(token_endpoint).port
    endpoint = (
        f"https://localhost:{mitm.reverse_port}/token"
        if tokens_over_tls
        else f"http://localhost:{token_port}/token"
    )
    return {
        **mitm.proxy_env(no_proxy=[f"127.0.0.1:{api_port}", "localhost"]),
        "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
        "IDENTITY_ENDPOINT": endpoint,
        "IDENTITY_HEADER": identity.HEADER,
        "KVBACKUP_CA_BUNDLE": str(mitm.ca_certificate) if trusting else "",
    }


def untrusted(cluster: Cluster, name: str) -> bool:
    return cluster.ready_condition("keybackup", name).get("reason") == "CertificateNotTrusted"


def at(requests: list[ProxiedRequest], port: int | None) -> list[ProxiedRequest]:
    return [request for request in requests if request.port == port]


def blob_destination(storage: Azurite, container: ContainerClient) -> dict[str, Any]:
    return {
        "blob": {
            "accountUrl": storage.blob_endpoint,
            "container": container.container_name,
        }
    }


def test_backups_into_secrets_and_blob_and_a_restore_all_run_through_the_proxy(
    control_plane: ControlPlane,
    operators: Operators,
    vault: VaultUnderTest,
    oauth_azurite: Azurite,
    token_endpoint: str,
    mitm: Mitmproxy,
    oauth_container: ContainerClient,
) -> None:
    [cluster] = new_namespaces(control_plane, "proxied")
    settings = behind(mitm, control_plane, token_endpoint)
    cluster.operator = operators.start(cluster.namespace, settings=settings)
    versions = vault.create_rsa_key("signing", versions=2)

    cluster.apply(keybackup("in-secrets", vault.url, keys=["signing"]))
    cluster.apply(
        keybackup(
            "in-blob",
            vault.url,
            keys=["signing"],
            destination=blob_destination(oauth_azurite, oauth_container),
        )
    )
    cluster.wait_for_phase("keybackup", "in-secrets", "Succeeded")
    cluster.wait_for_phase("keybackup", "in-blob", "Succeeded")
    vault.delete_and_purge("signing")
    cluster.apply(keyrestore("back", vault.url, keybackup="in-blob"))
    restored = cluster.wait_for_phase("keyrestore", "back", "Succeeded")

    assert key_results(restored) == {"signing": "Restored"}
    assert vault.version_ids("signing") == versions
    seen = mitm.requests()
    vault_calls = at(seen, urlsplit(vault.url).port)
    storage_calls = at(seen, oauth_azurite.port)
    token_calls = at(seen, urlsplit(token_endpoint).port)
    assert {(r.scheme, r.method, r.path) for r in vault_calls} >= {
        ("https", "POST", "/keys/signing/backup"),
        ("https", "POST", "/keys/restore"),
    }
    assert {(r.scheme, r.method) for r in storage_calls} >= {("https", "PUT"), ("https", "GET")}
    assert any(
        r.path.startswith(f"/devstoreaccount1/{oauth_container.container_name}/")
        for r in storage_calls
    )
    assert token_calls
    # Straight to the endpoint (NO_PROXY), not through HTTPS_PROXY, over TLS that the one
    # CA setting lets the identity trust: the endpoint sits behind the proxy's reverse port.
    assert {(r.mode, r.client_tls, r.method, r.path) for r in token_calls} == {
        ("reverse", True, "GET", "/token")
    }
    assert {(r.mode, r.client_tls) for r in [*vault_calls, *storage_calls]} == {("regular", True)}
    assert all(r.status is not None and r.status < 500 for r in seen), seen
    assert at(seen, urlsplit(control_plane.server).port) == []  # NO_PROXY: direct
    assert mitm.refused_handshakes() == []


def test_without_the_proxys_ca_each_kind_of_call_fails_naming_the_setting(
    control_plane: ControlPlane,
    operators: Operators,
    vault: VaultUnderTest,
    oauth_azurite: Azurite,
    token_endpoint: str,
    mitm: Mitmproxy,
    oauth_container: ContainerClient,
) -> None:
    vault.create_rsa_key("signing")
    direct_tokens, proxied_tokens = new_namespaces(control_plane, "no-ca", "no-ca-tokens")
    direct_tokens.operator = operators.start(
        direct_tokens.namespace,
        settings=behind(mitm, control_plane, token_endpoint, trusting=False, tokens_over_tls=False),
    )
    proxied_tokens.operator = operators.start(
        proxied_tokens.namespace,
        settings=behind(mitm, control_plane, token_endpoint, trusting=False),
    )

    direct_tokens.apply(keybackup("to-vault", vault.url, keys=["signing"]))
    direct_tokens.apply(
        keybackup(
            "to-storage",
            vault.url,
            keys=["signing"],
            destination=blob_destination(oauth_azurite, oauth_container),
        )
    )
    # Blob Storage asks for a token before its first request (Key Vault's first request
    # goes without one, for the challenge), so this run's first call is a token request.
    proxied_tokens.apply(
        keybackup(
            "for-a-token",
            vault.url,
            keys=["signing"],
            destination=blob_destination(oauth_azurite, oauth_container),
        )
    )

    for cluster, name, call in (
        (direct_tokens, "to-vault", "key signing"),
        (direct_tokens, "to-storage", oauth_container.container_name),
        (proxied_tokens, "for-a-token", "get an Azure token"),
    ):
        cluster.wait_until(
            f"{name} fails as its TLS certificate is not trusted",
            partial(untrusted, cluster, name),
        )
        message = cluster.ready_condition("keybackup", name)["message"]
        assert "KVBACKUP_CA_BUNDLE" in message, message
        assert call in message, message
    # The operator broke off its handshakes with the proxy: it trusts the system's CAs.
    refused_at = {handshake.port for handshake in mitm.refused_handshakes()}
    assert {urlsplit(vault.url).port, oauth_azurite.port} <= refused_at
