"""KeyBackup and KeyRestore manifests as users write them, for the tests to apply."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final, Literal

from kvbackup.adapters.credentials import CREDENTIALS_LABEL

if TYPE_CHECKING:
    from tests.harness.azurite import Azurite
    from tests.integration.conftest import Cluster

API_VERSION = "kvbackup.io/v1alpha1"


#: A kind's choice in ``vault_backup``: every item of that kind (a selector of {}).
EVERY: Final = "every"
#: Named items, EVERY item, or (None) none of that kind.
Choice = list[str] | Literal["every"] | None


def keybackup(name: str, vault_url: str, *, keys: list[str] | None = None, **spec: Any) -> str:
    """A KeyBackup of the named ``keys``, or of every key when none are named."""
    return vault_backup(name, vault_url, keys=EVERY if keys is None else keys, **spec)


def vault_backup(
    name: str,
    vault_url: str,
    *,
    keys: Choice = None,
    secrets: Choice = None,
    certificates: Choice = None,
    **spec: Any,
) -> str:
    """A KeyBackup of the kinds given, each of its named items or of EVERY item of it; a
    kind left None is not chosen."""
    chosen: dict[str, dict[str, Any]] = {
        plural: {"names": choice} if isinstance(choice, list) else {"selector": {}}
        for plural, choice in (("keys", keys), ("secrets", secrets), ("certificates", certificates))
        if choice is not None
    }
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "KeyBackup",
            "metadata": {"name": name},
            "spec": {"vaultUrl": vault_url, **chosen, **spec},
        }
    )


def keyrestore(name: str, vault_url: str, *, keybackup: str | None = None, **spec: Any) -> str:
    """A KeyRestore from the latest snapshot of ``keybackup`` unless ``source`` is given."""
    source = spec.pop("source", None) or {"keyBackupRef": {"name": keybackup}}
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "KeyRestore",
            "metadata": {"name": name},
            "spec": {"vaultUrl": vault_url, "source": source, **spec},
        }
    )


def credentials_secret(name: str, **data: str) -> str:
    """A Secret the operator may use as credentials: labelled so, in the one request that
    creates it, so the operator never sees it unlabelled."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": {CREDENTIALS_LABEL: "true"}},
            "stringData": data,
        }
    )


def key_results(status: dict[str, Any]) -> dict[str, str]:
    """Each key's result in a status, by name."""
    return item_results(status, "keys")


def keys_counted(**counts: int) -> dict[str, Any]:
    """A KeyRestore's ``status.counts`` when every item it handled is a key: the totals,
    and the same counts for keys alone."""
    return {**counts, "keys": counts}


def item_results(status: dict[str, Any], plural: str) -> dict[str, str]:
    """Each item's result in a status's list of one kind (keys, secrets, certificates), by
    name."""
    return {entry["name"]: entry["result"] for entry in status.get(plural) or []}


def blob_destination(
    cluster: Cluster, azurite: Azurite, container: str, prefix: str
) -> dict[str, Any]:
    """A KeyBackup destination in an Azurite container, with the Secret "storage" holding
    its connection string applied to the cluster."""
    cluster.apply(credentials_secret("storage", connectionString=azurite.connection_string()))
    return {
        "blob": {
            "accountUrl": azurite.blob_endpoint,
            "container": container,
            "prefix": prefix,
            "credentials": {"name": "storage"},
        }
    }
