"""Requests go only where vaults and storage accounts live. An operator with the default
allow-lists (Azure's domains) refuses an object that points it at another host, before
anything is sent: a listening socket of the test's own, at that host, sees no connection.
Nor does a redirect from an allowed host, or a link to a listing's next page, lead the
operator anywhere else."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.identity.aio import ClientSecretCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from kvbackup.adapters.blob_store import BlobSnapshotStore, container_client
from kvbackup.adapters.keyvault import KeyVaultClients
from kvbackup.api.hosts import HostAllowList
from kvbackup.api.kinds import ItemKind
from kvbackup.config import Settings
from kvbackup.errors import KvBackupError
from tests.harness.controlplane import free_port
from tests.harness.fault_proxy import FaultProxy, Faults
from tests.harness.forwarder import Forwarder, Forwarders
from tests.harness.lowkey import Lowkey
from tests.integration.conftest import Cluster
from tests.integration.objects import credentials_secret, keybackup, keyrestore

pytestmark = pytest.mark.integration

#: Empty, each setting means its default: Azure's domains only, not the emulators'
#: loopback addresses that the harness allows in every other test.
DEFAULT_HOSTS = {"KVBACKUP_VAULT_HOSTS": "", "KVBACKUP_BLOB_HOSTS": ""}
#: Allowed by the defaults, and never reached: every object here fails before its vault.
AZURE_VAULT = "https://payments.vault.azure.net"
AZURE_ACCOUNT = "https://backups.blob.core.windows.net"


@pytest.fixture
def listener(forwarders: Forwarders) -> Iterator[Forwarder]:
    """A listening socket on loopback that counts the connections it accepts (it relays
    them to a closed port, so each one ends at once)."""
    trap = forwarders.open(free_port())
    yield trap
    forwarders.close(trap)


def _refusal(cluster: Cluster, kind: str, name: str, setting: str) -> dict[str, Any]:
    """The object's Ready condition once it failed with HostNotAllowed, after the Event
    that names ``setting`` was posted."""
    cluster.wait_for_phase(kind, name, "Failed")
    cluster.wait_until(
        f"{kind}/{name} has a HostNotAllowed Event",
        lambda: any(
            event["reason"] == "HostNotAllowed" and setting in event["message"]
            for event in cluster.events_for(name)
        ),
    )
    return cluster.ready_condition(kind, name)


def test_a_vault_url_outside_the_allow_list_fails_without_a_connection(
    own_operator: Callable[..., Cluster], listener: Forwarder
) -> None:
    cluster = own_operator("hosts-vault", **DEFAULT_HOSTS)

    cluster.apply(keybackup("elsewhere", f"https://127.0.0.1:{listener.port}", keys=["k"]))

    ready = _refusal(cluster, "keybackup", "elsewhere", "KVBACKUP_VAULT_HOSTS")
    assert ready["reason"] == "HostNotAllowed"
    assert (
        f"vault host 127.0.0.1:{listener.port} is not in KVBACKUP_VAULT_HOSTS" in (ready["message"])
    )
    assert "retrying" not in ready["message"]  # permanent: only a change of spec helps
    assert listener.accepted == 0


def _secret(cluster: Cluster, name: str, connection_string: str) -> None:
    cluster.apply(credentials_secret(name, connectionString=connection_string))


def test_a_storage_endpoint_outside_the_allow_list_fails_without_a_connection_however_given(
    own_operator: Callable[..., Cluster], listener: Forwarder
) -> None:
    cluster = own_operator("hosts-blob", **DEFAULT_HOSTS)
    elsewhere = f"https://127.0.0.1:{listener.port}"
    _secret(
        cluster,
        "elsewhere",
        f"BlobEndpoint={elsewhere}/account;SharedAccessSignature=sv=2024-01-01&sig=x",
    )

    by_url = {"accountUrl": elsewhere, "container": "backups"}
    cluster.apply(keybackup("by-url", AZURE_VAULT, destination={"blob": by_url}))
    by_secret = {
        "accountUrl": AZURE_ACCOUNT,
        "container": "backups",
        "credentials": {"name": "elsewhere"},
    }
    cluster.apply(keybackup("by-connection-string", AZURE_VAULT, destination={"blob": by_secret}))
    by_path = {"accountUrl": AZURE_ACCOUNT, "container": "backups", "path": f"{elsewhere}/x/"}
    cluster.apply(keyrestore("by-snapshot-url", AZURE_VAULT, source={"blob": by_path}))

    for kind, name in (
        ("keybackup", "by-url"),
        ("keybackup", "by-connection-string"),
        ("keyrestore", "by-snapshot-url"),
    ):
        ready = _refusal(cluster, kind, name, "KVBACKUP_BLOB_HOSTS")
        assert ready["reason"] == "HostNotAllowed", name
        assert f"host 127.0.0.1:{listener.port} is not in KVBACKUP_BLOB_HOSTS" in (ready["message"])
    assert listener.accepted == 0


def test_a_connection_string_must_name_the_account_url_over_https_or_no_connection_is_made(
    own_operator: Callable[..., Cluster], listener: Forwarder
) -> None:
    cluster = own_operator(
        "hosts-scheme",
        KVBACKUP_VAULT_HOSTS="",
        KVBACKUP_BLOB_HOSTS="*.blob.core.windows.net,127.0.0.1:*",
    )
    sas = "SharedAccessSignature=sv=2024-01-01&sig=secret"
    # Allowed hosts both: only the scheme, or only the account, is wrong.
    _secret(cluster, "plain-http", f"BlobEndpoint=http://backups.blob.core.windows.net;{sas}")
    _secret(cluster, "elsewhere", f"BlobEndpoint=https://127.0.0.1:{listener.port}/acct;{sas}")
    for name in ("plain-http", "elsewhere"):
        blob = {"accountUrl": AZURE_ACCOUNT, "container": "backups", "credentials": {"name": name}}
        cluster.apply(keybackup(name, AZURE_VAULT, destination={"blob": blob}))

    plain_http = cluster.wait_for_phase("keybackup", "plain-http", "Failed")
    elsewhere = cluster.wait_for_phase("keybackup", "elsewhere", "Failed")

    ready = {c["type"]: c for c in plain_http["conditions"]}["Ready"]
    assert ready["reason"] == "InvalidSpec"
    assert "must be an https URL" in ready["message"]
    ready = {c["type"]: c for c in elsewhere["conditions"]}["Ready"]
    assert ready["reason"] == "InvalidCredentials"
    assert f"accountUrl {AZURE_ACCOUNT}" in ready["message"]
    assert "sig=" not in json.dumps([plain_http, elsewhere])
    assert listener.accepted == 0


async def test_a_vault_that_redirects_elsewhere_is_not_followed(
    lowkey: Lowkey, proxy: FaultProxy, listener: Forwarder
) -> None:
    proxy.set_faults(Faults(redirect_to=f"https://127.0.0.1:{listener.port}/keys/k/backup"))
    settings = Settings.from_env(
        {
            "KVBACKUP_VAULT_HOSTS": "127.0.0.1:*",
            "KVBACKUP_CA_BUNDLE": str(lowkey.certificate),
            "KVBACKUP_VERIFY_CHALLENGE_RESOURCE": "false",
        }
    )
    vaults = KeyVaultClients(settings)
    # The redirect answers the first, unauthenticated request: no token is ever asked for.
    credential = ClientSecretCredential("tenant", "client", "never-asked")
    try:
        with pytest.raises(KvBackupError, match="a redirect: not followed") as refused:
            await vaults.vault(proxy.url, credential).backup(ItemKind.KEY, "k")
    finally:
        await vaults.close()
        await credential.close()

    assert refused.value.reason == "RequestRejected"
    assert proxy.counts().requests == 1
    assert listener.accepted == 0


@pytest.fixture
async def redirecting_account(listener: Forwarder) -> AsyncIterator[str]:
    """A storage account URL on loopback whose every answer is a redirect to ``listener``."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{listener.port}{request.path_qs}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/account"
    finally:
        await runner.cleanup()


async def test_a_storage_account_that_redirects_elsewhere_is_not_followed(
    redirecting_account: str, listener: Forwarder
) -> None:
    hosts = HostAllowList.of("KVBACKUP_BLOB_HOSTS", ["127.0.0.1:*"])
    client = container_client(redirecting_account, "backups", hosts=hosts, sas_token="sig=x")
    async with client:
        with pytest.raises(KvBackupError, match="a redirect: not followed"):
            await BlobSnapshotStore(client).list_stored("payments", "payments-keys")

    assert listener.accepted == 0


class _ListingVault(BaseHTTPRequestHandler):
    """A vault whose key listing links its next page to another host (``next_page``): it
    challenges a request without a token, and answers the listing with one key."""

    next_page = ""
    listings = 0

    def do_GET(self) -> None:
        if "Authorization" not in self.headers:
            self._answer(401, b"", {"WWW-Authenticate": CHALLENGE})
            return
        type(self).listings += 1
        key = f"https://{self.headers['Host']}/keys/app-key"
        page = {"value": [{"kid": key}], "nextLink": self.next_page}
        self._answer(200, json.dumps(page).encode(), {"Content-Type": "application/json"})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/tenant", '
    'resource="https://vault.azure.net"'
)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files: the certificate is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "vault.crt", directory / "vault.key"
    cert_path.write_bytes(certificate.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def listing_vault(tmp_path: Path, listener: Forwarder) -> Iterator[tuple[str, Path]]:
    """The URL of a vault over HTTPS on loopback whose listing's next page is at
    ``listener``, and the certificate to trust it by."""
    cert_path, key_path = _self_signed(tmp_path)

    class Vault(_ListingVault):
        next_page = f"https://127.0.0.1:{listener.port}/keys?$skiptoken=1&api-version=7.5"

    server = ThreadingHTTPServer(("127.0.0.1", 0), Vault)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_path
    finally:
        server.shutdown()
        server.server_close()
    assert Vault.listings >= 1, "the vault's own listing was never asked for"


def test_a_vault_whose_listing_links_its_next_page_elsewhere_is_not_followed(
    own_operator: Callable[..., Cluster], listing_vault: tuple[str, Path], listener: Forwarder
) -> None:
    vault_url, certificate = listing_vault
    cluster = own_operator(
        "hosts-next-link",
        KVBACKUP_VAULT_HOSTS=f"127.0.0.1:{vault_url.rsplit(':', 1)[1]}",
        KVBACKUP_CA_BUNDLE=str(certificate),
    )

    cluster.apply(keybackup("paged", vault_url))  # every key: the vault is listed

    ready = _refusal(cluster, "keybackup", "paged", "KVBACKUP_VAULT_HOSTS")
    assert ready["reason"] == "HostNotAllowed"
    assert f"host 127.0.0.1:{listener.port} is not in KVBACKUP_VAULT_HOSTS" in ready["message"]
    assert listener.accepted == 0
