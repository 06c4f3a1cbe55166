"""Checks on every request an Azure SDK client sends, and the bound on every listing.

A client is built only for an endpoint the allow-lists name (``HostAllowList.check``), but
the SDK then goes where the service's answers lead it: an absolute ``nextLink`` of a Key
Vault listing is requested as given, and a redirect would be too were it followed. So a
vault inside the allow-list could send the operator, and the token it attaches, anywhere.
``AllowedHostsPolicy`` runs the allow-list and the https rule again on each request the
transport is about to send, and no listing takes more than ``MAX_LISTING_PAGES`` pages.
"""

from __future__ import annotations

from typing import Any

from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from kvbackup.api.hosts import HostAllowList, endpoint, origin
from kvbackup.errors import HostNotAllowedError

#: Pages one Key Vault listing may take. Key Vault answers 25 items or versions a page, so
#: this is 250,000 of them, far beyond the largest vaults. A service that pages on past it
#: is broken or hostile, and the run fails instead of paging for ever.
MAX_LISTING_PAGES = 10_000


class AllowedHostsPolicy(SansIOHTTPPolicy[Any, Any]):
    """Refuses, before it is sent, any request to a host outside ``hosts`` or in plain http
    to anything but loopback (an emulator): whatever URL the SDK built it from.

    Installed per retry (Key Vault: ``per_retry_policies``; Blob Storage, which takes no
    such option: ``raw_request_hook=policy.on_request``), so it runs once for each request
    the transport sends: first tries, retries, each page of a listing, and a redirect
    should one ever be followed. It runs before the authentication policy, so a refused
    request never carries a token. ``service`` names the service in refusals.
    """

    def __init__(self, hosts: HostAllowList, service: str) -> None:
        super().__init__()
        self._hosts = hosts
        self._service = service
        #: The origin of the last request allowed. A client's requests nearly all go to
        #: one, and checking it anew costs more than the rest of the policy.
        self._allowed_origin = ""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        url = request.http_request.url
        url_origin = origin(url)
        if url_origin and url_origin == self._allowed_origin:
            return
        refused = f"a {self._service} request was refused before it was sent"
        try:
            where = endpoint(url)
        except ValueError as error:
            # The URL itself is not repeated: it may carry a SAS token.
            raise HostNotAllowedError(f"{refused}: its URL is not plain: {error}") from None
        if not self._hosts.allows(where):
            raise HostNotAllowedError(
                f"{refused}: host {where} is not in {self._hosts.setting} (a page link or "
                "redirect in an answer may name another host than the endpoint's)"
            )
        if where.scheme != "https" and not where.on_loopback:
            raise HostNotAllowedError(
                f"{refused}: plain http to {where}; only https is used (http only on loopback, "
                "for an emulator)"
            )
        self._allowed_origin = url_origin
