"""Azurite, Microsoft's Azure Storage emulator, serving blobs on loopback.

Installed from the npm registry on first use into a cache outside the repository, keyed
by version (``${KVBACKUP_CACHE:-~/.cache/kvbackup}/azurite-<version>``).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken

from kvbackup.api.hosts import HostAllowList
from tests.harness.controlplane import free_port, make_pki

AZURITE_VERSION = "3.37.0"
ACCOUNT_NAME = "devstoreaccount1"
#: Azurite's well-known development account key, published in Microsoft's documentation.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def cache_dir() -> Path:
    configured = os.environ.get("KVBACKUP_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "kvbackup"


def install(version: str = AZURITE_VERSION) -> Path:
    """The ``azurite-blob`` executable, installed with npm when missing."""
    prefix = cache_dir() / f"azurite-{version}"
    executable = prefix / "node_modules" / ".bin" / "azurite-blob"
    if not executable.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        print(
            f"installing Azurite {version} from npm into {prefix} (first time only, about 30 s)",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(prefix),
                f"azurite@{version}",
            ],
            check=True,
            capture_output=True,
        )
    return executable


@dataclass
class Azurite:
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    #: The CA of the certificate it serves HTTPS with, when it accepts bearer tokens
    #: (``oauth``); None: plain http, with shared keys and SAS tokens only.
    certificate: Path | None = None

    @property
    def blob_endpoint(self) -> str:
        scheme = "https" if self.certificate else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    def tls(self) -> ssl.SSLContext:
        """A client context that trusts this Azurite's CA only."""
        return ssl.create_default_context(cafile=str(self.certificate))

    @property
    def blob_hosts(self) -> HostAllowList:
        """The allow-list a client of the store needs here: the operator's defaults name
        Azure's domains only."""
        return HostAllowList.of("KVBACKUP_BLOB_HOSTS", [f"127.0.0.1:{self.port}"])

    def connection_string(self, account_key: str = ACCOUNT_KEY) -> str:
        scheme = "https" if self.certificate else "http"
        return (
            f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT_NAME};"
            f"AccountKey={account_key};BlobEndpoint={self.blob_endpoint};"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_listening(azurite: Azurite, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if azurite.process.poll() is not None:
            raise RuntimeError(f"azurite exited early; see {azurite.log}")
        try:
            with socket.create_connection(("127.0.0.1", azurite.port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"azurite did not listen on port {azurite.port}; see {azurite.log}")


def storage_token() -> AccessToken:
    """A token that Azurite's ``--oauth basic`` accepts for an hour (see ``BearerToken``)."""
    now = int(time.time())
    claims = {
        "aud": "https://storage.azure.com",
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    parts = ({"alg": "none", "typ": "JWT"}, claims)
    encoded = (base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=") for p in parts)
    return AccessToken(b".".join(encoded).decode() + ".", now + 3600)


class BearerToken:
    """An Entra ID-shaped access token for storage, as the operator's own identity presents
    one. Azurite's ``--oauth basic`` checks its audience, issuer and lifetime, not its
    signature, and answers for every blob of the account, as a role assignment on the
    account would: what a request reaches then depends on its URL alone."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return storage_token()

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> BearerToken:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


def start(
    workdir: Path, *, oauth: bool = False, quiet: bool = False, port: int | None = None
) -> Azurite:
    """Azurite on a free loopback port; with ``oauth``, on HTTPS and accepting bearer tokens
    (see ``BearerToken``) as well as shared keys and SAS tokens. ``quiet``: no access or
    debug log, for runs where the emulator's own logging would take CPU from what is being
    measured. Started again with the ``workdir`` and ``port`` of a stopped one, it serves
    the blobs that one stored, at the same address."""
    executable = install()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = workdir / "azurite.log"
    certificate, tls_options = None, []
    if oauth:
        # The control plane's PKI makes a serving certificate for 127.0.0.1, and its CA.
        pki = workdir / "pki"
        make_pki(pki)
        certificate = pki / "ca.crt"
        tls_options = [
            *("--oauth", "basic"),
            *("--cert", str(pki / "apiserver.crt"), "--key", str(pki / "apiserver.key")),
        ]
    process = subprocess.Popen(
        [
            str(executable),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(workdir / "data"),
            "--disableTelemetry",
            "--skipApiVersionCheck",
            *(["--silent"] if quiet else ["--debug", str(workdir / "azurite-debug.log")]),
            *tls_options,
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    azurite = Azurite(port, log, process, certificate)
    try:
        _wait_listening(azurite)
    except Exception:
        azurite.stop()
        raise
    return azurite


if __name__ == "__main__":
    # `make emulators`: installs Azurite ahead of the tests and prints its executable.
    print(install())
