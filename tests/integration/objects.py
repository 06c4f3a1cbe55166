"""KeyBackup and KeyRestore manifests as users write them, for the tests to apply."""

from __future__ import annotations

import json
from typing import Any

API_VERSION = "kvbackup.io/v1alpha1"


def keybackup(name: str, vault_url: str, *, keys: list[str] | None = None, **spec: Any) -> str:
    """A KeyBackup of the named ``keys``, or of every key when none are named."""
    chosen: dict[str, Any] = {"names": keys} if keys is not None else {"selector": {}}
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "KeyBackup",
            "metadata": {"name": name},
            "spec": {"vaultUrl": vault_url, "keys": chosen, **spec},
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


def key_results(status: dict[str, Any]) -> dict[str, str]:
    """Each key's result in a status, by name."""
    return {entry["name"]: entry["result"] for entry in status.get("keys", [])}
