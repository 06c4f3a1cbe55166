"""The kinds of item a vault holds and kvbackup backs up: keys, secrets and certificates.

Key Vault gives each kind its own names (a key and a secret may share one) and the same
operations (back up, restore from the backup, recover, purge). A certificate's backup
holds its key and its secret, which Key Vault marks as managed by the certificate.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class ItemKind(StrEnum):
    """A kind of vault item; the value is how manifests, status and metrics name it."""

    KEY = "key"
    SECRET = "secret"
    CERTIFICATE = "certificate"

    @property
    def plural(self) -> str:
        """The spec's field, the blob folder and the export folder of this kind."""
        return f"{self.value}s"

    @property
    def camel(self) -> str:
        """The kind in CamelCase, as reasons start (``KeyExists``, ``SecretSoftDeleted``)."""
        return self.value.capitalize()


#: The order kinds are listed, backed up and reported in.
ITEM_KINDS = (ItemKind.KEY, ItemKind.SECRET, ItemKind.CERTIFICATE)


class ItemRef(NamedTuple):
    """One item of a vault: its kind and its name."""

    kind: ItemKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"
