"""One HTTP session per kind of Azure service, shared by all its clients.

azure-core would give every client a session of its own with ``trust_env``, which makes
aiohttp reread HTTPS_PROXY, NO_PROXY and ~/.netrc, in a thread, for every request. The
shared session leaves that off; each client is given its proxy once (``proxies_for``).
"""

from __future__ import annotations

import ssl
import uuid

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.settings import settings


class SharedSession:
    """Opened on first use, closed by its owner; ``tls`` is the one context for every
    connection (True: the system's CAs)."""

    def __init__(self, tls: ssl.SSLContext | bool = True) -> None:
        self._tls = tls
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
                trust_env=False,
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
