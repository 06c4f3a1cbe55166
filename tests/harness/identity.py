"""A managed identity's token endpoint for the operator as a process, so it reaches an
Azurite that accepts bearer tokens (``azurite.start(..., oauth=True)``) with its own
identity, as it reaches Blob Storage with workload or managed identity.

It speaks the protocol azure-identity's ManagedIdentityCredential follows when
``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set, and answers every resource with the
token Azurite accepts; the Key Vault emulator accepts any token, that one included.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.harness.azurite import Azurite, storage_token
from tests.harness.lowkey import Lowkey

HEADER = "kvbackup-tests"


class _TokenHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("X-IDENTITY-HEADER") != HEADER:
            self.send_error(401)
            return
        resource = parse_qs(urlsplit(self.path).query).get("resource", [""])[0]
        token = storage_token()
        body = json.dumps(
            {
                "access_token": token.token,
                "expires_on": str(token.expires_on),
                "resource": resource,
                "token_type": "Bearer",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def token_endpoint() -> Iterator[str]:
    """The endpoint's URL while it serves, on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()


def operator_env(endpoint: str, azurite: Azurite, lowkey: Lowkey, workdir: Path) -> dict[str, str]:
    """What an operator needs to use its own identity against ``azurite`` and ``lowkey``:
    the token endpoint, and one CA bundle trusting both, as every Azure call trusts the one
    bundle KVBACKUP_CA_BUNDLE names."""
    assert azurite.certificate is not None, "Azurite takes bearer tokens only with oauth"
    bundle = workdir / "ca-bundle.pem"
    bundle.write_bytes(lowkey.certificate.read_bytes() + azurite.certificate.read_bytes())
    return {
        "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
        "IDENTITY_ENDPOINT": endpoint,
        "IDENTITY_HEADER": HEADER,
        "KVBACKUP_CA_BUNDLE": str(bundle),
    }
