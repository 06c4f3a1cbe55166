"""Where Azure serves Key Vault and Blob Storage, in each cloud: the default allow-lists
(KVBACKUP_VAULT_HOSTS, KVBACKUP_BLOB_HOSTS; grammar in ``kvbackup.api.hosts``).

Taken from Azure's documentation, not guessed:

- Key Vault, "DNS suffixes for object identifiers" in
  https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates:
  vaults under ``.vault.azure.net`` (Azure), ``.vault.azure.cn`` (Azure operated by
  21Vianet) and ``.vault.usgovcloudapi.net`` (Azure US Government); Managed HSM pools
  under ``.managedhsm.azure.net``. That table marks Managed HSM as not offered in the two
  sovereign clouds; the Azure CLI's cloud definitions (azure-cli-core,
  ``azure/cli/core/cloud.py``, ``mhsm_dns``) name its suffixes there,
  ``.managedhsm.azure.cn`` and ``.managedhsm.usgovcloudapi.net``, so those are allowed
  too. Azure Germany (``.vault.microsoftazure.de``) is left out: that cloud closed on
  29 October 2021 (https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud).
- Blob Storage: an account's endpoint is ``<account>.blob.<storage endpoint suffix>``,
  the suffixes being ``core.windows.net``, ``core.chinacloudapi.cn`` and
  ``core.usgovcloudapi.net`` ("Endpoint suffix" in
  https://learn.microsoft.com/azure/storage/common/storage-powershell-independent-clouds);
  accounts with an Azure DNS zone endpoint are reached at
  ``<account>.z[00-99].blob.storage.azure.net``
  (https://learn.microsoft.com/azure/storage/blobs/storage-blob-query-endpoint-srp).

A private endpoint keeps these public names (DNS answers them with the private address),
so the defaults cover it.

Each cloud signs in at its own Microsoft Entra authority ("Microsoft Entra authentication
endpoints" in the national clouds page above; azure-identity's ``AzureAuthorityHosts``):
``login.microsoftonline.com``, ``login.chinacloudapi.cn`` and ``login.microsoftonline.us``.
A service principal of Azure China or Azure US Government signing in at the public
authority fails, so every identity's authority follows its cloud.
"""

from __future__ import annotations

from dataclasses import dataclass

KEY_VAULT_HOSTS = (
    "*.vault.azure.net",
    "*.managedhsm.azure.net",
    "*.vault.azure.cn",
    "*.managedhsm.azure.cn",
    "*.vault.usgovcloudapi.net",
    "*.managedhsm.usgovcloudapi.net",
)

BLOB_HOSTS = (
    "*.blob.core.windows.net",
    "*.*.blob.storage.azure.net",
    "*.blob.core.chinacloudapi.cn",
    "*.blob.core.usgovcloudapi.net",
)


@dataclass(frozen=True)
class AzureCloud:
    #: As the Azure CLI names it (``az cloud list``), which a credentials Secret's
    #: ``cloud`` takes.
    name: str
    authority_host: str
    #: The DNS suffixes of its Key Vault, Managed HSM and Blob Storage hosts.
    suffixes: tuple[str, ...]


AZURE_PUBLIC_CLOUD = AzureCloud(
    "AzureCloud",
    "login.microsoftonline.com",
    (
        ".vault.azure.net",
        ".managedhsm.azure.net",
        ".blob.core.windows.net",
        ".blob.storage.azure.net",
    ),
)
CLOUDS = (
    AZURE_PUBLIC_CLOUD,
    AzureCloud(
        "AzureChinaCloud",
        "login.chinacloudapi.cn",
        (".vault.azure.cn", ".managedhsm.azure.cn", ".blob.core.chinacloudapi.cn"),
    ),
    AzureCloud(
        "AzureUSGovernment",
        "login.microsoftonline.us",
        (
            ".vault.usgovcloudapi.net",
            ".managedhsm.usgovcloudapi.net",
            ".blob.core.usgovcloudapi.net",
        ),
    ),
)


def cloud_named(name: str) -> AzureCloud | None:
    """The cloud a Secret's ``cloud`` names, in any case; None for a name of no cloud."""
    return next((cloud for cloud in CLOUDS if cloud.name.lower() == name.strip().lower()), None)


def cloud_of_authority(host: str) -> AzureCloud | None:
    """The cloud whose authority a Secret's ``authorityHost`` names, with or without its
    https:// scheme and a trailing slash; None for any other host."""
    bare = host.strip().lower().removeprefix("https://").rstrip("/")
    return next((cloud for cloud in CLOUDS if cloud.authority_host == bare), None)


def cloud_of_host(host: str) -> AzureCloud | None:
    """The cloud serving a vault's or storage account's host, by its DNS suffix; None for
    a host of none (an emulator, a private name)."""
    lowered = host.lower().rstrip(".")
    return next(
        (cloud for cloud in CLOUDS if any(lowered.endswith(s) for s in cloud.suffixes)), None
    )
