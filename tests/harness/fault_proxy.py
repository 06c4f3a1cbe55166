"""An HTTP fault and latency proxy between a Key Vault client and Lowkey Vault, on loopback.

Real Key Vault throttles: it answers 429 (with or without ``Retry-After``) and now and then
503, and it is a network round trip away. Lowkey Vault simulates none of that, so tests put
this proxy between the operator and the emulator to inject latency, 429s and 503s, and to
count what the client asked for.

The proxy terminates TLS with Lowkey's own certificate and key (both public, from the
emulator's keystore), so a client that trusts ``Lowkey.certificate`` trusts the proxy too.
It forwards each request to Lowkey's API port with the client's Host header unchanged,
because Lowkey finds a vault by that header: register the vault at the proxy's URL
(``lowkey.create_vault(proxy.url)``). It runs in a background thread with its own event
loop, so synchronous tests and a separate operator process can both use it.

Faults are chosen deterministically: with a share ``s``, faultable request number ``n``
(counted from 0 since the last ``set_faults``) is faulted when
``floor((n + 1) * s) > floor(n * s)``, so exactly that share is faulted, spread evenly.

A hostile or broken vault can also be played: a Retry-After of any text (``inf``, ``nan``,
a date), and a vault that hangs, holding requests unanswered (``stall``) until the test
releases them or the proxy stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import ssl
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)
from multidict import CIMultiDict
from yarl import URL

from tests.harness.azurite import Azurite
from tests.harness.lowkey import Lowkey, _fetch

#: Headers that describe one connection, not the message, so they are not passed on.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "upgrade",
        "te",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
    }
)
#: The roots of Key Vault's items (keys, secrets, certificates) and of its deleted items.
_ITEM_ROOTS = frozenset({"keys", "secrets", "certificates"})
_DELETED_ROOTS = frozenset({f"deleted{root}" for root in _ITEM_ROOTS})
#: Only Key Vault's item operations are faulted, not the management API or /ping.
FAULTABLE_ROOTS = _ITEM_ROOTS | _DELETED_ROOTS
#: Words that follow an item's name in a path; any other word there is a version id.
_KEY_SUBRESOURCES = frozenset(
    {"backup", "versions", "create", "import", "rotate", "rotationpolicy", "release"}
    | {"pending", "policy"}  # a certificate's
)
_MAX_BODY = 16 * 1024 * 1024
_UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10)
_CONTROL_TIMEOUT_S = 30

_THROTTLED = {
    "error": {
        "code": "Throttled",
        "message": "Request was not processed because too many requests were received.",
    }
}
_FORBIDDEN = {
    "error": {
        "code": "Forbidden",
        "message": "Caller is not authorized to perform action on resource. "
        "If role assignments were recently changed, please wait several minutes for role "
        "assignments to become effective.",
        "innererror": {"code": "ForbiddenByRbac"},
    }
}
#: Blob Storage's answer to a delete of an immutable blob: 409, its error code in the
#: x-ms-error-code header and in an XML body (the service's documented error).
IMMUTABLE_BLOB_CODE = "BlobImmutableDueToPolicy"
_IMMUTABLE_BLOB = (
    '<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobImmutableDueToPolicy</Code>'
    "<Message>This operation is not permitted as the blob is immutable due to a policy."
    "</Message></Error>"
)
_UNAVAILABLE = {
    "error": {
        "code": "ServiceUnavailable",
        "message": "The service is temporarily unavailable. Please try again later.",
    }
}


@dataclass
class Faults:
    """What the proxy does to requests; replace it as a whole with ``FaultProxy.set_faults``.

    Latency applies to every request, including the 401 challenge and the proxy's own 429s
    and 503s. Throttling and unavailability apply only to faultable requests: those under
    ``/keys``, ``/secrets``, ``/certificates`` or their ``/deleted...`` roots that carry an
    Authorization header (so never the challenge round trip). Both shares are of the
    faultable requests, and together at most 1.
    """

    latency_seconds: float = 0.0
    throttle_share: float = 0.0
    #: The Retry-After header on the 429s, in seconds; None sends none.
    retry_after_seconds: float | None = None
    unavailable_share: float = 0.0
    #: When set, every request is answered 307 to this URL and nothing is forwarded: a
    #: vault that sends its clients elsewhere.
    redirect_to: str | None = None
    #: Keys (lower-case names) whose every faultable request is answered 403 as Key Vault
    #: answers a caller whose role assignments do not reach that key; others go through.
    forbidden_keys: frozenset[str] = frozenset()
    #: Of the faultable requests neither throttled nor answered 503, the share whose
    #: connection is reset before any answer, as a failing load balancer does.
    reset_share: float = 0.0
    #: The Retry-After header's text, sent as it is in place of ``retry_after_seconds``
    #: (e.g. "inf", "nan", "-1", an HTTP-date).
    retry_after_text: str | None = None
    #: When set, only requests of these operations (as ``operation`` names them, e.g.
    #: "GET /keys/*/versions") are faultable; other key operations pass on.
    operations: frozenset[str] | None = None
    #: When set, at most this many requests are throttled; the throttle share's later
    #: picks go on as if not throttled.
    throttle_count: int | None = None
    #: Faultable requests not otherwise faulted are held, unanswered, until
    #: ``FaultProxy.release_stalled`` or the proxy stops: a vault that hangs.
    stall: bool = False
    #: Every DELETE is answered as Blob Storage answers a delete of a blob under a
    #: time-based retention policy (WORM), and not forwarded.
    refuse_deletes: bool = False

    def __post_init__(self) -> None:
        shares = (self.throttle_share, self.unavailable_share, self.reset_share)
        if not all(0.0 <= share <= 1.0 for share in shares):
            raise ValueError("shares must be between 0 and 1")
        if self.throttle_share + self.unavailable_share > 1.0 + 1e-9:
            raise ValueError("throttle_share + unavailable_share must be at most 1")
        if self.latency_seconds < 0 or (
            self.retry_after_seconds is not None and self.retry_after_seconds < 0
        ):
            raise ValueError("latency_seconds and retry_after_seconds must not be negative")


@dataclass(frozen=True)
class ProxyCounts:
    """A snapshot of what the proxy has seen since it started."""

    #: Every request received, faulted or not.
    requests: int
    forwarded: int
    #: 429s and 503s the proxy answered itself (not forwarded), and connections it reset.
    throttled: int
    unavailable: int
    reset: int
    #: Requests without an Authorization header: the SDK's challenge round trips.
    unauthenticated: int
    #: Every request received, by method and path with key names and versions as ``*``,
    #: e.g. ``"POST /keys/*/backup"``.
    by_operation: dict[str, int]
    #: Requests answered, by operation and status, e.g. ``"POST /keys/restore 409"``;
    #: a reset connection is ``"... reset"``.
    answered: dict[str, int]
    #: Most requests received and not yet answered at one time.
    peak_in_flight: int
    #: Requests received and not yet answered now.
    in_flight: int = 0
    #: Requests held unanswered by ``Faults.stall`` (released or not).
    stalled: int = 0


def operation(method: str, path: str) -> str:
    """``"GET /keys/*/versions"`` for ``GET /keys/name/versions?api-version=...``."""
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    if not segments:
        return f"{method} /"
    root, rest = segments[0], segments[1:]
    shape = [root]
    if root in _ITEM_ROOTS and rest:
        if rest[0] == "restore" and len(rest) == 1:
            shape.append("restore")
        else:
            shape.append("*")
            if len(rest) > 1:
                shape.append(rest[1] if rest[1] in _KEY_SUBRESOURCES else "*")
            if len(rest) > 2:
                # After a version comes a crypto operation name (encrypt, sign, ...).
                shape.append(rest[2] if rest[2].isalpha() and len(rest[2]) <= 32 else "*")
            shape.extend("*" for _ in rest[3:])
    elif root in _DELETED_ROOTS and rest:
        shape.append("*")
        if len(rest) > 1:
            shape.append(rest[1] if rest[1] == "recover" else "*")
        shape.extend("*" for _ in rest[2:])
    else:
        shape.extend("*" for _ in rest)
    return f"{method} /{'/'.join(shape)}"


def _is_faultable(request: web.Request) -> bool:
    segments = [s for s in request.path.split("/") if s]
    return bool(segments) and segments[0] in FAULTABLE_ROOTS and "Authorization" in request.headers


def _key_of(request: web.Request) -> str | None:
    """The key a request under /keys or /deletedkeys is about, lower-cased; None for a
    request about anything else."""
    segments = [s for s in request.path.split("/") if s]
    if len(segments) < 2 or segments[0] not in ("keys", "deletedkeys"):
        return None
    return segments[1].lower()


def _spread(n: int, share: float) -> bool:
    """Whether item ``n`` (from 0) is one of an evenly spread ``share`` of all items."""
    return math.floor((n + 1) * share) > math.floor(n * share)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _pass_on(headers: Any) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


def _error(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


@dataclass
class _State:
    """Counters and faults, shared by the proxy's loop thread and the test's thread."""

    faults: Faults = field(default_factory=Faults)
    #: Faultable requests since the last set_faults, those of them not throttled, and
    #: those neither throttled nor answered 503.
    faultable_seen: int = 0
    unthrottled_seen: int = 0
    answered_seen: int = 0
    #: Requests throttled since the last set_faults, for ``Faults.throttle_count``.
    throttled_since_set: int = 0
    stalled: int = 0
    requests: int = 0
    forwarded: int = 0
    throttled: int = 0
    unavailable: int = 0
    reset: int = 0
    unauthenticated: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)


class FaultProxy:
    """One proxy on a loopback port in front of Lowkey's API port ``upstream_port``, in
    TLS with Lowkey's keystore; without one, in plain http in front of a plain-http
    service (Azurite)."""

    def __init__(
        self,
        upstream_port: int,
        certificate: Path | None,
        keystore: bytes | None,
        password: bytes | None,
        workdir: Path,
    ) -> None:
        self.scheme = "https" if keystore is not None else "http"
        self.upstream = f"{self.scheme}://127.0.0.1:{upstream_port}"
        self.certificate = certificate
        self.port = 0
        self._keystore = keystore
        self._password = password
        self._workdir = workdir
        self._lock = threading.Lock()
        self._state = _State()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        #: Set (and replaced) to let stalled requests go; created on the proxy's loop.
        self._released: asyncio.Event | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._state.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.set_faults(faults)

    def set_faults(self, faults: Faults) -> None:
        """From now on, apply ``faults``; the deterministic fault pattern starts afresh."""
        with self._lock:
            self._state.faults = faults
            self._state.faultable_seen = 0
            self._state.unthrottled_seen = 0
            self._state.answered_seen = 0
            self._state.throttled_since_set = 0

    def release_stalled(self) -> None:
        """Stalled requests go on to the vault, and are answered as it answers."""
        self._run(self._release())

    async def _release(self) -> None:
        if self._released is not None:
            self._released.set()
        self._released = asyncio.Event()

    def counts(self) -> ProxyCounts:
        with self._lock:
            s = self._state
            return ProxyCounts(
                requests=s.requests,
                forwarded=s.forwarded,
                throttled=s.throttled,
                unavailable=s.unavailable,
                reset=s.reset,
                unauthenticated=s.unauthenticated,
                by_operation=dict(s.by_operation),
                answered=dict(s.answered),
                peak_in_flight=s.peak_in_flight,
                in_flight=s.in_flight,
                stalled=s.stalled,
            )

    def _server_context(self) -> ssl.SSLContext | None:
        if self._keystore is None:
            return None
        key, cert, chain = pkcs12.load_key_and_certificates(self._keystore, self._password)
        if key is None or cert is None:
            raise RuntimeError("Lowkey's keystore holds no key pair")
        self._workdir.mkdir(parents=True, exist_ok=True)
        cert_pem = self._workdir / "fault-proxy-cert.pem"
        key_pem = self._workdir / "fault-proxy-key.pem"
        cert_pem.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in (cert, *(chain or []))))
        key_pem.touch(mode=0o600)
        key_pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_pem, key_pem)
        return context

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the fault proxy is already running")
        server_context = self._server_context()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        try:
            self._run(self._start(server_context))
        except BaseException:
            self.stop()
            raise

    def _run(self, coroutine: Any) -> Any:
        assert self._loop is not None
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=_CONTROL_TIMEOUT_S)

    async def _start(self, server_context: ssl.SSLContext | None) -> None:
        self._released = asyncio.Event()
        connector = (
            aiohttp.TCPConnector(limit=64)
            if self.certificate is None
            else aiohttp.TCPConnector(
                ssl=ssl.create_default_context(cafile=str(self.certificate)), limit=64
            )
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=_UPSTREAM_TIMEOUT,
            auto_decompress=False,
            # Send what the client sent, not aiohttp's defaults.
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(Exception):
            self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
        self._loop = None
        self._thread = None

    async def _stop(self) -> None:
        # Stalled requests lose their connections instead of holding the shutdown up.
        self._stopping = True
        await self._release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _admit(self, request: web.Request) -> tuple[Faults, str]:
        """Counts ``request`` and decides, in arrival order, what to do with it."""
        name = operation(request.method, request.path)
        with self._lock:
            s = self._state
            faults = s.faults
            faultable = _is_faultable(request) and (
                faults.operations is None or name in faults.operations
            )
            s.requests += 1
            s.in_flight += 1
            s.peak_in_flight = max(s.peak_in_flight, s.in_flight)
            s.by_operation[name] = s.by_operation.get(name, 0) + 1
            if "Authorization" not in request.headers:
                s.unauthenticated += 1
            outcome = "forward" if faults.redirect_to is None else "redirect"
            if faults.refuse_deletes and request.method == "DELETE":
                outcome = "refuse delete"
            elif faultable and _key_of(request) in faults.forbidden_keys:
                outcome = "forbid"
            elif faultable and outcome == "forward":
                n, s.faultable_seen = s.faultable_seen, s.faultable_seen + 1
                if _spread(n, faults.throttle_share) and (
                    faults.throttle_count is None or s.throttled_since_set < faults.throttle_count
                ):
                    outcome = "throttle"
                    s.throttled += 1
                    s.throttled_since_set += 1
                else:
                    # The 503 share is of all faultable requests, so it is spread over
                    # those not throttled at the correspondingly higher rate.
                    rest = 1.0 - faults.throttle_share
                    share = min(1.0, faults.unavailable_share / rest) if rest > 0 else 0.0
                    m, s.unthrottled_seen = s.unthrottled_seen, s.unthrottled_seen + 1
                    if _spread(m, share):
                        outcome = "unavailable"
                        s.unavailable += 1
                    else:
                        k, s.answered_seen = s.answered_seen, s.answered_seen + 1
                        if _spread(k, faults.reset_share):
                            outcome = "reset"
                            s.reset += 1
                        elif faults.stall:
                            outcome = "stall"
                            s.stalled += 1
            if outcome == "forward":
                s.forwarded += 1
            return faults, outcome

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        faults, outcome = self._admit(request)
        answer = "reset"
        try:
            response = await self._respond(request, faults, outcome)
            answer = str(response.status)
            return response
        finally:
            name = f"{operation(request.method, request.path)} {answer}"
            with self._lock:
                self._state.in_flight -= 1
                self._state.answered[name] = self._state.answered.get(name, 0) + 1

    async def _respond(self, request: web.Request, faults: Faults, outcome: str) -> web.Response:
        body = await request.read()
        if faults.latency_seconds > 0:
            await asyncio.sleep(faults.latency_seconds)
        if outcome == "throttle":
            retry = faults.retry_after_seconds
            headers = {} if retry is None else {"Retry-After": _seconds(retry)}
            if faults.retry_after_text is not None:
                headers = {"Retry-After": faults.retry_after_text}
            return _error(429, _THROTTLED, headers)
        if outcome == "stall":
            assert self._released is not None
            await self._released.wait()
            if self._stopping:
                outcome = "reset"
            else:
                return await self._forward(request, body)
        if outcome == "unavailable":
            return _error(503, _UNAVAILABLE)
        if outcome == "forbid":
            return _error(403, _FORBIDDEN)
        if outcome == "refuse delete":
            return web.Response(
                status=409,
                reason="This operation is not permitted as the blob is immutable due to a policy.",
                body=_IMMUTABLE_BLOB.encode(),
                headers={"Content-Type": "application/xml", "x-ms-error-code": IMMUTABLE_BLOB_CODE},
            )
        if outcome == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("fault proxy: connection reset")
        if outcome == "redirect":
            return web.Response(status=307, headers={"Location": str(faults.redirect_to)})
        return await self._forward(request, body)

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        headers = _pass_on(request.headers)
        # Lowkey finds the vault by the Host header, which names the proxy's port.
        headers["Host"] = request.host
        url = URL(f"{self.upstream}{request.raw_path}", encoded=True)
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
                # Content-Encoding stays: the body is passed on still encoded.
                return web.Response(
                    status=upstream.status,
                    reason=upstream.reason,
                    body=payload,
                    headers=_pass_on(upstream.headers),
                )
        except TimeoutError:
            return web.Response(status=504, text="fault proxy: Lowkey Vault did not answer")
        except aiohttp.ClientError as error:
            return web.Response(status=502, text=f"fault proxy: {error}")


def blob_fault_proxy_for(azurite: Azurite, workdir: Path) -> FaultProxy:
    """A started plain-http proxy in front of ``azurite``; the caller stops it."""
    proxy = FaultProxy(azurite.port, None, None, None, workdir)
    proxy.start()
    return proxy


def fault_proxy_for(lowkey: Lowkey, workdir: Path) -> FaultProxy:
    """A started proxy in front of ``lowkey``, with its keystore; the caller stops it."""
    base = f"http://127.0.0.1:{lowkey.token_port}/metadata/default-cert"
    password = _fetch(f"{base}/password").strip()
    keystore = _fetch(f"{base}/lowkey-vault.p12")
    proxy = FaultProxy(lowkey.api_port, lowkey.certificate, keystore, password, workdir)
    proxy.start()
    return proxy
