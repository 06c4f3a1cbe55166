"""One HTTP session per kind of Azure service, shared by all its clients, and the one TLS
context every Azure call trusts.

azure-core would give every client a session of its own with ``trust_env``, which makes
aiohttp reread HTTPS_PROXY, NO_PROXY and ~/.netrc, in a thread, for every request. The
Key Vault and Blob sessions leave that off; each client is given its proxy once
(``proxies_for``). Token requests are few (a token lasts about an hour), so the identity's
session reads the environment per request, which honours NO_PROXY host by host: the
managed identity endpoint stays direct while the sign-in authority goes through a proxy.
"""

from __future__ import annotations

import functools
import ssl
import uuid

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.settings import settings

from kvbackup.errors import InvalidSpecError

#: The setting that names the PEM bundle every Azure call trusts.
CA_BUNDLE_SETTING = "KVBACKUP_CA_BUNDLE"


@functools.cache
def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The one TLS context for every Azure call of the process (Key Vault, Blob Storage,
    token requests): the system's CAs, or the configured bundle, read once."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as error:
        raise InvalidSpecError(
            f"{CA_BUNDLE_SETTING}={ca_bundle} is not a readable PEM bundle: {error}"
        ) from None


class SharedSession:
    """Opened on first use, closed by its owner; ``tls`` is the one context for every
    connection (True: the system's CAs). With ``trust_env``, each request follows
    HTTPS_PROXY and NO_PROXY as the environment says them."""

    def __init__(self, tls: ssl.SSLContext | bool = True, *, trust_env: bool = False) -> None:
        self._tls = tls
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        # Every Azure client sends through a shared session. The operator exports no
        # traces, and left unset, azure-core looks its tracing setting up in the
        # environment on every call of every client.
        settings.tracing_enabled = False

    def transport(self) -> AioHttpTransport:
        if self._session is None:
            # As azure-core configures its own sessions: no cookies, bodies left as the
            # service sent them.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._tls),
                trust_env=self._trust_env,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return AioHttpTransport(session=self._session, session_owner=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def request_id() -> str:
    """A request's ``x-ms-client-request-id``, for the service's logs. Given by the caller,
    not left to the SDKs, whose uuid1 (a lock and a clock file per call) costs more of the
    operator's CPU than the rest of a request's headers together."""
    return str(uuid.uuid4())
