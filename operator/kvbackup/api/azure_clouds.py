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
"""

from __future__ import annotations

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
