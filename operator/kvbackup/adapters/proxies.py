"""The HTTP proxy the environment names for an endpoint, looked up once per client.

With ``trust_env`` an aiohttp session reads HTTPS_PROXY, NO_PROXY and ~/.netrc again for
every request, each time in a thread of the default executor; at hundreds of Key Vault
calls a second that was a sixth of the operator's event loop. The environment does not
change while the operator runs, so it is read when a client is built instead, and netrc
credentials are never sent to a vault.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit


def proxies_for(url: str, environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """azure-core's ``proxies`` option for clients of ``url``: empty for no proxy.

    ``environment`` is what ``urllib.request.getproxies_environment`` returns (scheme to
    proxy, and ``no`` for NO_PROXY); by default, the process's own.
    """
    proxies = dict(urllib.request.getproxies_environment() if environment is None else environment)
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(parts.hostname or "", proxies):
        return {}
    return {parts.scheme: proxy}
