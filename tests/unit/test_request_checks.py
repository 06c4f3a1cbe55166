"""Every request the SDKs send is checked as it leaves, wherever the SDK took its URL from,
and no listing pages for ever. The clients here are the operator's own, with the real
azure-core pipelines, over a transport of the test's that answers as a hostile service."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.core.rest import HttpRequest
from azure.core.rest._http_response_impl_async import AsyncHttpResponseImpl

from kvbackup.adapters import keyvault, request_checks
from kvbackup.adapters.blob_store import container_client
from kvbackup.adapters.keyvault import KeyVaultClients
from kvbackup.adapters.request_checks import AllowedHostsPolicy
from kvbackup.api.hosts import HostAllowList
from kvbackup.api.kinds import ItemKind
from kvbackup.config import Settings
from kvbackup.errors import HostNotAllowedError, TooLargeError
from tests.unit.fakes import StaticToken

VAULT = "https://payments.vault.azure.net"
ELSEWHERE = "https://attacker.example.com"
HOSTS = HostAllowList.of("KVBACKUP_VAULT_HOSTS", ["*.vault.azure.net", "127.0.0.1:*"])
CHALLENGE = {
    "WWW-Authenticate": 'Bearer authorization="https://login.example/tenant", '
    'resource="https://vault.azure.net"'
}


def check(policy: AllowedHostsPolicy, url: str) -> None:
    policy.on_request(PipelineRequest(HttpRequest("GET", url), PipelineContext(None)))


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"{VAULT}/keys?api-version=7.5", id="the vault itself"),
        pytest.param("https://other.vault.azure.net/keys?$skiptoken=x", id="another vault"),
        pytest.param("http://127.0.0.1:10000/devstoreaccount1/c", id="http to an emulator"),
    ],
)
def test_a_request_to_an_allowed_host_goes_on(url: str) -> None:
    check(AllowedHostsPolicy(HOSTS, "Key Vault"), url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param(f"{ELSEWHERE}/keys", "is not in KVBACKUP_VAULT_HOSTS", id="other host"),
        pytest.param("https://kubernetes.default.svc/api", "is not in", id="in-cluster service"),
        pytest.param(f"{VAULT}:8443/keys", "is not in", id="allowed host, other port"),
        pytest.param(
            "https://payments.vault.azure.net@attacker.example.com/x", "not plain", id="userinfo"
        ),
        pytest.param(f"{VAULT}\n/keys", "not plain", id="newline in the authority"),
    ],
)
def test_a_request_to_a_host_outside_the_list_is_refused_before_it_is_sent(
    url: str, reason: str
) -> None:
    with pytest.raises(HostNotAllowedError, match=reason) as refused:
        check(AllowedHostsPolicy(HOSTS, "Key Vault"), url)

    assert "a Key Vault request was refused before it was sent" in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"{VAULT}.attacker.example.com/keys", id="the vault's host as a prefix"),
        pytest.param(f"{VAULT}:8443/keys", id="the vault's host, other port"),
        pytest.param(f"{VAULT}@attacker.example.com/x", id="the vault's host as userinfo"),
        pytest.param(f"{ELSEWHERE}/keys", id="other host"),
    ],
)
def test_a_request_elsewhere_is_refused_right_after_one_to_the_vault_went_on(url: str) -> None:
    policy = AllowedHostsPolicy(HOSTS, "Key Vault")
    check(policy, f"{VAULT}/keys?api-version=7.5")

    with pytest.raises(HostNotAllowedError):
        check(policy, url)


def test_plain_http_is_refused_off_loopback_even_to_an_allowed_host() -> None:
    hosts = HostAllowList.of("KVBACKUP_BLOB_HOSTS", ["backups.example.com:*"])

    with pytest.raises(HostNotAllowedError, match="plain http"):
        check(AllowedHostsPolicy(hosts, "Blob Storage"), "http://backups.example.com:80/c")


def test_a_refusal_does_not_repeat_the_url_which_may_carry_a_sas_token() -> None:
    with pytest.raises(HostNotAllowedError) as refused:
        check(AllowedHostsPolicy(HOSTS, "Blob Storage"), f"{ELSEWHERE}/c/b?sv=1&sig=SECRET")

    assert "SECRET" not in refused.value.message


class _Answer(AsyncHttpResponseImpl):
    """A whole answer, already read."""

    def __init__(self, request: Any, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(
            request=request,
            internal_response=None,
            status_code=status,
            reason="Test",
            content_type=headers.get("Content-Type", ""),
            headers=headers,
            stream_download_generator=None,
        )
        self._content = self._whole = body

    async def read(self) -> bytes:
        return self._whole

    async def close(self) -> None:
        pass


class HostileService(AsyncHttpTransport[Any, Any]):
    """Answers every request with ``respond(method, url)`` (status, JSON body), by default
    ``answer(url)``, after a challenge for any request without a token; records every URL
    it was sent."""

    def __init__(self, answer: Callable[[str], tuple[int, dict[str, Any]]]) -> None:
        self.answer = answer
        self.sent: list[str] = []

    def respond(self, method: str, url: str) -> tuple[int, dict[str, Any]]:
        return self.answer(url)

    async def send(self, request: Any, **_: Any) -> _Answer:
        self.sent.append(request.url)
        if "Authorization" not in request.headers:
            return _Answer(request, 401, b"", CHALLENGE)
        status, document = self.respond(request.method, request.url)
        body = json.dumps(document).encode()
        return _Answer(request, status, body, {"Content-Type": "application/json"})

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> HostileService:
        return self

    async def __aexit__(self, *_: object) -> None:
        pass


class _Session:
    """Stands for the shared HTTP session: every client sends through ``transport``."""

    def __init__(self, transport: HostileService) -> None:
        self._transport = transport

    def transport(self) -> HostileService:
        return self._transport

    async def close(self) -> None:
        pass


def keys_page(*names: str, next_link: str | None) -> dict[str, Any]:
    page: dict[str, Any] = {"value": [{"kid": f"{VAULT}/keys/{name}"} for name in names]}
    if next_link is not None:
        page["nextLink"] = next_link
    return page


@pytest.fixture
def vault_answering(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[Callable[[str], tuple[int, dict[str, Any]]]], HostileService]:
    """Makes the vault clients built next send through a service answering so."""

    def install(answer: Callable[[str], tuple[int, dict[str, Any]]]) -> HostileService:
        service = HostileService(answer)
        monkeypatch.setattr(keyvault, "SharedSession", lambda _tls: _Session(service))
        return service

    return install


async def listed(answer_service: HostileService) -> list[str]:
    settings = Settings(verify_challenge_resource=False, vault_rate_limit=1e6)
    vaults = KeyVaultClients(settings)
    try:
        keys = vaults.vault(VAULT, StaticToken()).list_items(ItemKind.KEY)
        return [key.name async for key in keys]
    finally:
        await vaults.close()


async def test_a_next_page_link_to_another_host_is_refused_before_anything_is_sent_there(
    vault_answering: Callable[..., HostileService],
) -> None:
    service = vault_answering(
        lambda url: (200, keys_page("a", next_link=f"{ELSEWHERE}/keys?$skiptoken=1"))
    )

    with pytest.raises(HostNotAllowedError, match=r"attacker\.example\.com:443 is not in"):
        await listed(service)

    assert service.sent  # the vault itself was asked
    assert not [url for url in service.sent if url.startswith(ELSEWHERE)]


async def test_a_next_page_link_within_the_vault_is_followed(
    vault_answering: Callable[..., HostileService],
) -> None:
    def answer(url: str) -> tuple[int, dict[str, Any]]:
        if "skiptoken" in url:
            return 200, keys_page("b", next_link=None)
        return 200, keys_page("a", next_link=f"{VAULT}/keys?$skiptoken=1&api-version=7.5")

    assert await listed(vault_answering(answer)) == ["a", "b"]


async def test_a_vault_that_pages_for_ever_is_stopped_one_page_past_the_bound(
    vault_answering: Callable[..., HostileService], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(request_checks, "MAX_LISTING_PAGES", 3)
    service = vault_answering(
        lambda url: (200, keys_page("a", next_link=f"{VAULT}/keys?$skiptoken=again"))
    )

    with pytest.raises(TooLargeError, match="list keys: stopped after 3 pages"):
        await listed(service)

    # Pages 2 and 3; the third one's link to a fourth is not followed.
    assert len([url for url in service.sent if "skiptoken" in url]) == 2


async def test_a_blob_request_to_another_host_is_refused_by_the_clients_own_pipeline() -> None:
    service = HostileService(lambda url: (200, {}))
    hosts = HostAllowList.of("KVBACKUP_BLOB_HOSTS", ["backups.blob.core.windows.net"])
    client = container_client(
        "https://backups.blob.core.windows.net", "team-a", hosts=hosts, sas_token="sig=x"
    )
    # What the SDK would do with a URL of its own making (a redirect, another location):
    # the request goes through the same pipeline as every call of the client.
    pipeline: Any = client._pipeline
    pipeline._transport = service

    with pytest.raises(HostNotAllowedError, match="a Blob Storage request was refused"):
        await pipeline.run(HttpRequest("GET", f"{ELSEWHERE}/team-a?restype=container"))

    assert service.sent == []
    await client.close()
