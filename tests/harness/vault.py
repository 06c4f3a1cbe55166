"""A vault as a person sees it through the plain Azure SDK: no kvbackup code involved.

The tests arrange and inspect keys, secrets and certificates with it; the demo uses its
command line: ``python -m tests.harness.vault URL CA_BUNDLE COMMAND NAME ...`` (keys:
``create``, ``delete-and-purge``, ``versions``; secrets: ``set-secret``, ``secret-values``,
``delete-and-purge-secret``; certificates: ``create-certificate``,
``certificate-versions``, ``delete-certificate``; see ``main``).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateContentType,
    CertificatePolicy,
    KeyType,
)
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient

from tests.harness.lowkey import AnyToken

#: Lowkey gives keys created without operations none at all; Azure would allow them all.
RSA_OPERATIONS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
EC_OPERATIONS = ["sign", "verify"]


@dataclass
class Vault:
    url: str
    certificate: Path

    @property
    def client(self) -> KeyClient:
        return KeyClient(
            self.url,
            AnyToken(),
            verify_challenge_resource=False,
            connection_verify=str(self.certificate),
        )

    def create_rsa_key(self, name: str, versions: int = 1, **tags: str) -> list[str]:
        """A key with ``versions`` versions; their ids, oldest first."""
        with self.client as client:
            for _ in range(versions):
                client.create_rsa_key(name, size=2048, key_operations=RSA_OPERATIONS, tags=tags)
        return self.version_ids(name)

    def create_ec_keys(self, names: list[str]) -> None:
        """Many one-version keys, quickly (EC P-256 is fast to generate)."""
        with self.client as client:
            for name in names:
                client.create_ec_key(name, curve="P-256", key_operations=EC_OPERATIONS)

    def version_ids(self, name: str) -> list[str]:
        with self.client as client:
            found = [
                (props.created_on, props.version or "")
                for props in client.list_properties_of_key_versions(name)
            ]
        return [version for _, version in sorted(found, key=lambda item: (item[0], item[1]))]

    def key_names(self) -> set[str]:
        with self.client as client:
            return {props.name or "" for props in client.list_properties_of_keys()}

    def state(self) -> dict[str, Any]:
        """All that a restore could change, as the plain SDK reads it: each active key's
        versions with their attributes and tags, and each soft-deleted key."""
        with self.client as client:
            active = {
                key.name: sorted(
                    (
                        v.version,
                        v.enabled,
                        v.created_on,
                        v.updated_on,
                        sorted((v.tags or {}).items()),
                    )
                    for v in client.list_properties_of_key_versions(key.name or "")
                )
                for key in client.list_properties_of_keys()
            }
            deleted = {
                key.name: (key.deleted_date, key.scheduled_purge_date, key.recovery_id)
                for key in client.list_deleted_keys()
            }
        return {"active": active, "deleted": deleted}

    def exists(self, name: str) -> bool:
        with self.client as client:
            try:
                client.get_key(name)
            except ResourceNotFoundError:
                return False
        return True

    def is_soft_deleted(self, name: str) -> bool:
        with self.client as client:
            try:
                client.get_deleted_key(name)
            except ResourceNotFoundError:
                return False
        return True

    def delete(self, name: str) -> None:
        """Soft-delete: the key can still be recovered."""
        with self.client as client:
            client.begin_delete_key(name).wait()

    def delete_and_purge(self, name: str) -> None:
        """Gone for good: only a backup brings it back."""
        with self.client as client:
            client.begin_delete_key(name).wait()
            client.purge_deleted_key(name)

    def _crypto(self, name: str, version: str) -> CryptographyClient:
        return CryptographyClient(
            f"{self.url}/keys/{name}/{version}",
            AnyToken(),
            verify_challenge_resource=False,
            connection_verify=str(self.certificate),
        )

    def encrypt(self, name: str, version: str, plaintext: bytes) -> bytes:
        with self._crypto(name, version) as crypto:
            return crypto.encrypt(EncryptionAlgorithm.rsa_oaep_256, plaintext).ciphertext

    def decrypt(self, name: str, version: str, ciphertext: bytes) -> bytes:
        with self._crypto(name, version) as crypto:
            return crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext).plaintext

    def sign(self, name: str, version: str, message: bytes) -> bytes:
        """An ES256 signature of ``message`` made in the vault by that version of an EC
        P-256 key (``create_ec_keys``), whose keys are quick to make where RSA's are not."""
        with self._crypto(name, version) as crypto:
            return crypto.sign(SignatureAlgorithm.es256, hashlib.sha256(message).digest()).signature

    def verifies(self, name: str, version: str, message: bytes, signature: bytes) -> bool:
        """Whether that version of an EC P-256 key, in the vault, verifies ``signature``."""
        digest = hashlib.sha256(message).digest()
        with self._crypto(name, version) as crypto:
            return crypto.verify(SignatureAlgorithm.es256, digest, signature).is_valid


def create_keys(vault: Vault, names: list[str], threads: int = 8) -> None:
    """Many one-version keys over several connections at once: one at a time takes long."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(vault.create_ec_keys, [names[i::threads] for i in range(threads)]))


def purge_keys(vault: Vault, names: list[str], threads: int = 8) -> None:
    """Deletes and purges the keys, several at once."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(vault.delete_and_purge, names))


#: A TLS certificate as Key Vault's default policy makes one: RSA 2048, self-signed, its
#: private key exportable, so Key Vault keeps a key and a secret beside it.
SELF_SIGNED = CertificatePolicy(
    issuer_name="Self",
    subject="CN=kvbackup.test",
    key_type=KeyType.rsa,
    key_size=2048,
    exportable=True,
    reuse_key=False,
    content_type=CertificateContentType.pkcs12,
    validity_in_months=12,
)


def _sdk_options(vault: Vault) -> dict[str, Any]:
    """The plain SDK's secret and certificate clients speak the keys SDK's API version, as
    the operator's do: Lowkey Vault answers 400 to their own newer default."""
    with vault.client as keys:
        return {
            "api_version": keys.api_version,
            "verify_challenge_resource": False,
            "connection_verify": str(vault.certificate),
        }


def secret_client(vault: Vault) -> SecretClient:
    return SecretClient(vault.url, AnyToken(), **_sdk_options(vault))


def certificate_client(vault: Vault) -> CertificateClient:
    return CertificateClient(vault.url, AnyToken(), **_sdk_options(vault))


def _in_shares(work: Callable[[list[str]], None], names: list[str], threads: int) -> None:
    """``work`` over ``threads`` shares of ``names`` at once, each share on its own client."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, [names[i::threads] for i in range(threads)]))


def create_secrets(vault: Vault, names: list[str], threads: int = 8) -> None:
    """Many one-version secrets (a random token each), several at once."""

    def some(share: list[str]) -> None:
        with secret_client(vault) as client:
            for name in share:
                client.set_secret(name, token_urlsafe(32))

    _in_shares(some, names, threads)


def create_certificates(vault: Vault, names: list[str], threads: int = 8) -> None:
    """Many self-signed certificates (``SELF_SIGNED``), several at once: the emulator makes
    each one's RSA key, about half a second of a core."""

    def some(share: list[str]) -> None:
        with certificate_client(vault) as client:
            for name in share:
                client.begin_create_certificate(name, SELF_SIGNED).wait()

    _in_shares(some, names, threads)


def _purge(
    vault: Vault,
    names: list[str],
    threads: int,
    open_client: Callable[[Vault], SecretClient | CertificateClient],
    kind: str,
) -> None:
    """Deletes and purges ``names`` with the client's ``begin_delete_<kind>`` and
    ``purge_deleted_<kind>``, several at once."""

    def some(share: list[str]) -> None:
        with open_client(vault) as client:
            for name in share:
                getattr(client, f"begin_delete_{kind}")(name).wait()
                getattr(client, f"purge_deleted_{kind}")(name)

    _in_shares(some, names, threads)


def purge_secrets(vault: Vault, names: list[str], threads: int = 8) -> None:
    _purge(vault, names, threads, secret_client, "secret")


def purge_certificates(vault: Vault, names: list[str], threads: int = 8) -> None:
    """The certificates go, and with each the key and the secret that back it."""
    _purge(vault, names, threads, certificate_client, "certificate")


def set_secret_values(vault: Vault, name: str, values: list[str]) -> list[str]:
    """A secret with one version per value, set in that order; the versions' ids in it."""
    with secret_client(vault) as client:
        return [client.set_secret(name, value).properties.version or "" for value in values]


def secret_values(vault: Vault, name: str) -> dict[str, str]:
    """Each version's id and the value read back from that very version."""
    with secret_client(vault) as client:
        return {
            props.version or "": client.get_secret(name, props.version).value or ""
            for props in client.list_properties_of_secret_versions(name)
        }


def create_certificate(vault: Vault, name: str, versions: int = 1) -> dict[str, bytes]:
    """A self-signed certificate (``SELF_SIGNED``) made ``versions`` times by Key Vault;
    ``certificate_versions`` of it."""
    with certificate_client(vault) as client:
        for _ in range(versions):
            client.begin_create_certificate(name, SELF_SIGNED).wait()
    return certificate_versions(vault, name)


def certificate_versions(vault: Vault, name: str) -> dict[str, bytes]:
    """Each version's id and its X.509 certificate (DER), which holds its public key."""
    with certificate_client(vault) as client:
        versions = [p.version or "" for p in client.list_properties_of_certificate_versions(name)]
        return {v: bytes(client.get_certificate_version(name, v).cer or b"") for v in versions}


def sign_with_certificate(vault: Vault, name: str, version: str, message: bytes) -> bytes:
    """An RS256 signature of ``message`` made in the vault by the key of that version of
    the certificate (the key Key Vault keeps for it, found through the certificate)."""
    with certificate_client(vault) as client:
        key_id = client.get_certificate_version(name, version).key_id or ""
    with CryptographyClient(
        key_id,
        AnyToken(),
        verify_challenge_resource=False,
        connection_verify=str(vault.certificate),
    ) as crypto:
        return crypto.sign(SignatureAlgorithm.rs256, hashlib.sha256(message).digest()).signature


def delete_secret(vault: Vault, name: str) -> None:
    """Soft-delete: the secret can still be recovered."""
    with secret_client(vault) as client:
        client.begin_delete_secret(name).wait()


def active_items(vault: Vault) -> dict[str, set[str]]:
    """The names of the vault's active keys, secrets and certificates, leaving out the keys
    and secrets that back a certificate (Key Vault marks them managed)."""
    with (
        vault.client as keys,
        secret_client(vault) as secrets,
        certificate_client(vault) as certificates,
    ):
        return {
            "keys": {p.name or "" for p in keys.list_properties_of_keys() if not p.managed},
            "secrets": {
                p.name or "" for p in secrets.list_properties_of_secrets() if not p.managed
            },
            "certificates": {p.name or "" for p in certificates.list_properties_of_certificates()},
        }


def deleted_items(vault: Vault) -> dict[str, set[str]]:
    """The names of the vault's soft-deleted keys, secrets and certificates, leaving out
    those that back a certificate."""
    with (
        vault.client as keys,
        secret_client(vault) as secrets,
        certificate_client(vault) as certificates,
    ):
        return {
            "keys": {d.name or "" for d in keys.list_deleted_keys() if not d.properties.managed},
            "secrets": {
                d.name or "" for d in secrets.list_deleted_secrets() if not d.properties.managed
            },
            "certificates": {d.name or "" for d in certificates.list_deleted_certificates()},
        }


def delete_certificate(vault: Vault, name: str) -> None:
    """Soft-delete: the certificate, with its key and secret, can still be recovered."""
    with certificate_client(vault) as client:
        client.begin_delete_certificate(name).wait()


def main(argv: list[str]) -> None:
    url, certificate, command, name, *rest = argv[1:]
    vault = Vault(url, Path(certificate))
    if command == "create":
        print(" ".join(vault.create_rsa_key(name, int(rest[0]) if rest else 1)))
    elif command == "delete-and-purge":
        vault.delete_and_purge(name)
    elif command == "versions":
        print(" ".join(vault.version_ids(name)))
    elif command == "set-secret":
        print(" ".join(set_secret_values(vault, name, rest)))
    elif command == "secret-values":
        # Sorted by version id, so that two readings of the same versions print alike.
        print(" ".join(f"{v}={value}" for v, value in sorted(secret_values(vault, name).items())))
    elif command == "delete-and-purge-secret":
        purge_secrets(vault, [name], threads=1)
    elif command == "create-certificate":
        print(" ".join(create_certificate(vault, name)))
    elif command == "certificate-versions":
        print(" ".join(sorted(certificate_versions(vault, name))))
    elif command == "delete-certificate":
        delete_certificate(vault, name)
    else:
        raise SystemExit(
            f"usage: {argv[0]} URL CA_BUNDLE create NAME [VERSIONS] | delete-and-purge NAME"
            " | versions NAME | set-secret NAME VALUE... | secret-values NAME"
            " | delete-and-purge-secret NAME | create-certificate NAME"
            " | certificate-versions NAME | delete-certificate NAME"
        )


if __name__ == "__main__":
    main(sys.argv)
