"""mitmproxy, a real TLS-intercepting HTTP proxy, on loopback.

A test runs the operator with ``HTTPS_PROXY`` and ``HTTP_PROXY`` naming this proxy
(``Mitmproxy.proxy_env``) and trusting only the proxy's own CA (``ca_certificate``, e.g.
as ``KVBACKUP_CA_BUNDLE``), then reads from the proxy's own record (``requests``) which
requests passed through it. HTTPS is intercepted: the proxy answers each CONNECT with a
certificate for the target signed by its CA, and opens a TLS connection of its own to the
target, verified against the PEM bundles the caller passes (``upstream_cas``, e.g.
``Lowkey.certificate``): verification is never turned off. Plain http requests (Azurite
on ``http://127.0.0.1:port``) pass through it as well, and are recorded the same way.

With ``reverse_to``, the same process also serves a reverse proxy on a port of its own
(``reverse_port``): a client connects there with TLS, is answered with a certificate of the
same CA, and its requests go on to the plain-http upstream. The tests put Lowkey's
managed-identity token endpoint behind it, so that token requests, too, are made over TLS
that only the one CA setting trusts.

``mitmdump`` is mitmproxy's non-interactive program, from PyPI (``mitmproxy==11.0.2``,
the newest release for Python 3.11), installed on first use into a venv of its own in the
cache outside the repository, keyed by version (``${KVBACKUP_CACHE:-~/.cache/kvbackup}/
mitmproxy-<version>``): its pins (an older ``cryptography``) stay out of the test venv.
Each instance has a working directory of its own: ``confdir/`` (the CA that mitmproxy
generates on first start, and nothing read from ``~/.mitmproxy``), the recording addon,
its record (``flows.jsonl``), the upstream bundle and ``mitmdump.log``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.harness.azurite import cache_dir
from tests.harness.controlplane import free_port
from tests.harness.processes import stop

#: The header of the harness's readiness probe, which the addon answers and does not record.
_PROBE = {"X-Kvbackup-Probe": "1"}
#: The release the harness is written against: mitmproxy 12 needs Python 3.12.
MITMPROXY_VERSION = "11.0.2"

#: The addon mitmdump loads with ``-s``: it appends one JSON line per finished flow to the
#: file named by its option ``kvbackup_record``. It runs inside mitmdump, so it imports
#: nothing of this repository.
ADDON = '''\
"""Records each flow mitmproxy finishes, one JSON line each (written by tests/harness/mitm.py).

{"kind": "http", "scheme", "host", "port", "method", "path" (no query), "status", "error",
"client_tls", "mode"}: "scheme", "host" and "port" are the upstream's (in reverse mode, the
plain http endpoint behind it), "client_tls" whether the client spoke TLS to the proxy,
"mode" how the client came ("regular": as to a proxy it was told of; "reverse": straight
to the reverse port, as to the service itself). A request that got an answer from
upstream has "status" its status and "error" null; one that failed without one (e.g. the
upstream's certificate did not verify) has "status" null and "error" mitmproxy's message
(the client got mitmproxy's own 502).

{"kind": "tls-client", "host", "port", "error"}: a client that refused the proxy's
certificate (it does not trust the CA) or broke off its TLS handshake with the proxy; no
request follows on that connection.

A request with the header X-Kvbackup-Probe is the harness asking whether the proxy is up:
it is answered here (204, with that header), never forwarded and not recorded.
"""

import json
from urllib.parse import urlsplit

from mitmproxy import ctx, http


class Record:
    def load(self, loader):
        loader.add_option("kvbackup_record", str, "", "The file to append flows to.")

    def _append(self, entry):
        # Line-buffered appends from mitmproxy's single event loop: a reader sees whole
        # lines, except perhaps a last one still being written.
        with open(ctx.options.kvbackup_record, "a", encoding="utf-8") as record:
            record.write(json.dumps(entry) + "\\n")

    def _http(self, flow):
        if flow.metadata.get("kvbackup_recorded"):
            return
        flow.metadata["kvbackup_recorded"] = True
        request = flow.request
        self._append(
            {
                "kind": "http",
                "scheme": request.scheme,
                "host": request.host,
                "port": request.port,
                "method": request.method,
                "path": urlsplit(request.path).path,
                "status": flow.response.status_code if flow.response else None,
                "error": flow.error.msg if flow.error else None,
                "client_tls": flow.client_conn.tls_established,
                "mode": flow.client_conn.proxy_mode.type_name,
            }
        )

    def request(self, flow):
        if "x-kvbackup-probe" in flow.request.headers:
            flow.metadata["kvbackup_recorded"] = True
            flow.response = http.Response.make(204, b"", {"X-Kvbackup-Probe": "ok"})

    def response(self, flow):
        self._http(flow)

    def error(self, flow):
        self._http(flow)

    def tls_failed_client(self, data):
        host, port = data.context.server.address or ("", 0)
        self._append(
            {"kind": "tls-client", "host": host, "port": port, "error": str(data.conn.error)}
        )


addons = [Record()]
'''


@dataclass(frozen=True)
class ProxiedRequest:
    """One request the proxy passed on, as its record has it."""

    scheme: str
    host: str
    port: int
    method: str
    #: Without the query.
    path: str
    #: None when no answer came from upstream, e.g. when the proxy refused its certificate
    #: (the client then gets mitmproxy's own 502, which is not recorded as a status).
    status: int | None
    #: mitmproxy's message when the flow failed, e.g. "Certificate verify failed:
    #: self-signed certificate" for an upstream not in ``upstream_cas``.
    error: str | None = None
    #: Whether the client spoke TLS to the proxy (trusting the proxy's CA), whatever the
    #: upstream's scheme.
    client_tls: bool = False
    #: "regular": the client sent the request to the proxy its settings name; "reverse":
    #: it connected to the reverse port as to the service itself, not as to a proxy.
    mode: str = "regular"


@dataclass(frozen=True)
class RefusedHandshake:
    """A client that broke off its TLS handshake with the proxy: most often, one that does
    not trust the proxy's CA (what a client that verifies sees as a man in the middle)."""

    host: str
    port: int
    error: str


def install(version: str = MITMPROXY_VERSION) -> Path:
    """The ``mitmdump`` executable, installed from PyPI into a venv of its own when missing;
    a venv whose install did not finish (no ``.installed``) is made again."""
    venv = cache_dir() / f"mitmproxy-{version}"
    if not (venv / ".installed").exists():
        print(
            f"installing mitmproxy {version} from PyPI into {venv} (first time only, about "
            "a minute)",
            file=sys.stderr,
            flush=True,
        )
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", f"mitmproxy=={version}"],
            check=True,
            capture_output=True,
        )
        (venv / ".installed").touch()
    return venv / "bin" / "mitmdump"


class Mitmproxy:
    """``mitmdump`` on ``127.0.0.1:<free port>``; ``start`` (or ``with``) runs it.

    ``upstream_cas``: PEM files of the CAs (or self-signed certificates) that the HTTPS
    servers behind the proxy present; the proxy trusts these and nothing else. With none,
    it trusts mitmproxy's default bundle (certifi), which no loopback server matches.
    """

    def __init__(
        self,
        workdir: Path,
        upstream_cas: Sequence[Path] = (),
        *,
        reverse_to: str | None = None,
        startup_timeout: float = 60,
        executable: Path | None = None,
    ) -> None:
        self.workdir = workdir
        #: ``mitmdump`` to run; by default the cached install's (``install``).
        self.executable = executable
        #: The plain-http upstream of the reverse proxy on ``reverse_port``; None: none.
        self.reverse_to = reverse_to
        self.reverse_port = 0
        self.upstream_cas = tuple(upstream_cas)
        self.startup_timeout = startup_timeout
        self.port = 0
        self.confdir = workdir / "confdir"
        #: The proxy's CA certificate (PEM), generated by mitmproxy when it starts: what a
        #: client trusts to accept the certificates the proxy makes for each host.
        self.ca_certificate = self.confdir / "mitmproxy-ca-cert.pem"
        self.record = workdir / "flows.jsonl"
        self.log = workdir / "mitmdump.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def proxy_env(self, no_proxy: Sequence[str] = ()) -> dict[str, str]:
        """The variables that send a client's http and https requests through the proxy.

        Both spellings are set, as Python's ``urllib`` lets a lower-case one win, and
        NO_PROXY is replaced (by ``no_proxy``, none by default) so that a machine's own
        setting does not exempt loopback. The client still has to trust ``ca_certificate``.

        The kubernetes client (33 and later) reads HTTPS_PROXY too: for the operator, pass
        the API server's ``"127.0.0.1:<port>"``. That entry, with its port, exempts the API
        server only: the operator's Azure clients match NO_PROXY on the host alone.
        """
        bypass = ",".join(no_proxy)
        env: dict[str, str] = {}
        for name, value in (("http_proxy", self.url), ("https_proxy", self.url)):
            env[name] = env[name.upper()] = value
        env["no_proxy"] = env["NO_PROXY"] = bypass
        return env

    def start(self) -> Mitmproxy:
        if self._process is not None:
            raise RuntimeError("mitmdump is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.confdir.mkdir(exist_ok=True)
        addon = self.workdir / "record_flows.py"
        addon.write_text(ADDON)
        self.record.touch()
        # A restart keeps the port (and the CA, in confdir), so clients configured for the
        # first start reach the proxy again; the record goes on across restarts.
        self.port = self.port or free_port()
        modes = [f"regular@127.0.0.1:{self.port}"]
        if self.reverse_to is not None:
            self.reverse_port = self.reverse_port or free_port()
            modes.append(f"reverse:{self.reverse_to}@127.0.0.1:{self.reverse_port}")
        options = {
            "confdir": str(self.confdir),
            "kvbackup_record": str(self.record),
            # Warnings and errors only in the log; the record is what tests read.
            "termlog_verbosity": "warn",
            "flow_detail": "0",
        }
        if self.upstream_cas:
            bundle = self.workdir / "upstream-cas.pem"
            bundle.write_bytes(b"".join(_pem(path) for path in self.upstream_cas))
            options["ssl_verify_upstream_trusted_ca"] = str(bundle)
        command = [str(self.executable or install()), "-s", str(addon)]
        for mode in modes:
            command += ["--mode", mode]
        for name, value in options.items():
            command += ["--set", f"{name}={value}"]
        # mitmdump reads no proxy variables in its regular mode; they are dropped all the
        # same, so that a test's own settings cannot loop the proxy into itself.
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Until the CA exists and the proxy, with the addon loaded, answers a probe: a
        port that merely accepts connections could be another process's."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"mitmdump exited early ({self._process.returncode}):\n{self._log_tail()}"
                )
            if self.ca_certificate.exists() and self._answers_probe():
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"mitmdump not answering on {self.url} in {self.startup_timeout}s:\n{self._log_tail()}"
        )

    def _answers_probe(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            # Absolute form, as a client of a proxy asks; the addon answers it itself.
            connection.request("GET", "http://kvbackup-probe.invalid/", headers=_PROBE)
            reply = connection.getresponse()
            reply.read()
            return reply.status == 204 and reply.getheader("X-Kvbackup-Probe") == "ok"
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def _entries(self, kind: str) -> list[dict[str, Any]]:
        try:
            text = self.record.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # A last line without its newline is still being written.
        lines = text.split("\n")[:-1]
        return [entry for entry in map(json.loads, lines) if entry.pop("kind") == kind]

    def requests(self) -> list[ProxiedRequest]:
        """Every request the proxy finished, in the order it finished them."""
        return [ProxiedRequest(**entry) for entry in self._entries("http")]

    def refused_handshakes(self) -> list[RefusedHandshake]:
        """Clients that broke off their TLS handshake with the proxy, in order."""
        return [RefusedHandshake(**entry) for entry in self._entries("tls-client")]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            stop(process.pid, timeout=10)
        process.wait()

    def __enter__(self) -> Mitmproxy:
        return self.start() if self._process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _pem(path: Path) -> bytes:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError(f"{path} holds no PEM certificate")
    return data if data.endswith(b"\n") else data + b"\n"


if __name__ == "__main__":
    # make emulators: installed before pytest starts, so its workers never install it at once.
    print(install())
