"""Every way a spec names an endpoint is checked before a client for it exists."""

from __future__ import annotations

from typing import Any

import pytest
from azure.identity.aio import ClientSecretCredential

from kvbackup.adapters.blob_store import container_client
from kvbackup.adapters.keyvault import KeyVaultClients
from kvbackup.api.hosts import HostAllowList
from kvbackup.config import DEFAULT_BLOB_HOSTS, Settings
from kvbackup.errors import HostNotAllowedError, InvalidSpecError

#: Azurite's well-known development key: a connection string needs one to parse.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def unused_credential() -> ClientSecretCredential:
    """A real credential; nothing here asks it for a token, so it never sends a request."""
    return ClientSecretCredential("tenant", "client", "never-used")


async def test_a_vault_outside_the_list_gets_no_client() -> None:
    vaults, credential = KeyVaultClients(Settings()), unused_credential()
    try:
        with pytest.raises(HostNotAllowedError, match="KVBACKUP_VAULT_HOSTS"):
            vaults.vault("https://kubernetes.default.svc", credential)
        vaults.vault("https://payments.vault.azure.net", credential)  # allowed: a client, no call
    finally:
        await vaults.close()
        await credential.close()


@pytest.mark.parametrize(
    ("account_url", "means"),
    [
        pytest.param(
            "https://10.96.0.1", {"credential": unused_credential()}, id="account url, identity"
        ),
        pytest.param("https://10.96.0.1", {"sas_token": "sv=x&sig=y"}, id="account url, sas"),
        pytest.param(
            "https://backups.blob.core.windows.net",
            {"connection_string": "BlobEndpoint=https://10.96.0.1/a;SharedAccessSignature=sig=y"},
            id="blob endpoint in a connection string",
        ),
        pytest.param(
            "https://backups.blob.core.windows.net",
            {
                "connection_string": "DefaultEndpointsProtocol=https;AccountName=backups;"
                f"AccountKey={ACCOUNT_KEY};EndpointSuffix=svc.cluster.local"
            },
            id="endpoint suffix in a connection string",
        ),
    ],
)
def test_a_storage_endpoint_outside_the_list_is_refused_however_it_is_given(
    account_url: str, means: dict[str, Any]
) -> None:
    with pytest.raises(HostNotAllowedError, match="KVBACKUP_BLOB_HOSTS"):
        container_client(account_url, "backups", hosts=DEFAULT_BLOB_HOSTS, **means)


def test_a_connection_string_naming_an_azure_account_gets_a_client() -> None:
    connection_string = (
        f"DefaultEndpointsProtocol=https;AccountName=backups;AccountKey={ACCOUNT_KEY};"
        "EndpointSuffix=core.chinacloudapi.cn"
    )

    client = container_client(
        "https://BACKUPS.blob.core.chinacloudapi.cn:443",
        "backups",
        hosts=DEFAULT_BLOB_HOSTS,
        connection_string=connection_string,
    )

    assert client.primary_endpoint == "https://backups.blob.core.chinacloudapi.cn/backups"


@pytest.mark.parametrize(
    "means",
    [
        pytest.param(
            {
                "connection_string": "DefaultEndpointsProtocol=http;AccountName=backups;"
                f"AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
            },
            id="protocol of a connection string",
        ),
        pytest.param(
            {
                "connection_string": "BlobEndpoint=http://backups.blob.core.windows.net;"
                "SharedAccessSignature=sv=2024-01-01&sig=secret"
            },
            id="blob endpoint of a connection string",
        ),
        pytest.param({"sas_token": "sv=2024-01-01&sig=secret"}, id="account url, sas"),
    ],
)
def test_a_plain_http_storage_endpoint_off_loopback_is_refused_however_it_is_given(
    means: dict[str, Any],
) -> None:
    account_url = (
        "http://backups.blob.core.windows.net"
        if "sas_token" in means
        else "https://backups.blob.core.windows.net"
    )

    with pytest.raises(InvalidSpecError, match="must be an https URL") as refused:
        container_client(account_url, "backups", hosts=DEFAULT_BLOB_HOSTS, **means)

    assert "secret" not in refused.value.message


def test_a_connection_string_for_another_account_than_the_account_url_is_refused() -> None:
    connection_string = (
        "BlobEndpoint=https://other.blob.core.windows.net;"
        "SharedAccessSignature=sv=2024-01-01&sig=secret"
    )

    with pytest.raises(InvalidSpecError, match="must name the same account") as refused:
        container_client(
            "https://team-a.blob.core.windows.net",
            "backups",
            hosts=DEFAULT_BLOB_HOSTS,
            connection_string=connection_string,
        )

    assert refused.value.reason == "InvalidCredentials"
    assert "other.blob.core.windows.net" in refused.value.message
    assert "secret" not in refused.value.message


def test_an_emulator_on_loopback_is_reached_over_http_when_its_hosts_allow_it() -> None:
    emulator = "http://127.0.0.1:10000/devstoreaccount1"
    connection_string = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={ACCOUNT_KEY};BlobEndpoint={emulator};"
    )

    client = container_client(
        emulator,
        "backups",
        hosts=HostAllowList.of("KVBACKUP_BLOB_HOSTS", ["127.0.0.1:*"]),
        connection_string=connection_string,
    )

    assert client.primary_endpoint == f"{emulator}/backups"
