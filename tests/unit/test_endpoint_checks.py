"""Every way a spec names an endpoint is checked before a client for it exists."""

from __future__ import annotations

from typing import Any

import pytest
from azure.identity.aio import ClientSecretCredential

from kvbackup.adapters.blob_store import container_client
from kvbackup.adapters.keyvault import KeyVaultClients
from kvbackup.config import DEFAULT_BLOB_HOSTS, Settings
from kvbackup.errors import HostNotAllowedError

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
            vaults.keys("https://kubernetes.default.svc", credential)
        vaults.keys("https://payments.vault.azure.net", credential)  # allowed: a client, no call
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
        "https://ignored.example",
        "backups",
        hosts=DEFAULT_BLOB_HOSTS,
        connection_string=connection_string,
    )

    assert client.primary_endpoint == "https://backups.blob.core.chinacloudapi.cn/backups"
