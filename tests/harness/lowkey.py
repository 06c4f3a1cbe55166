"""Lowkey Vault, an independent Azure Key Vault emulator, on loopback.

``hack/lowkey-vault.sh`` finds or builds its jar. One instance serves a whole test
session; each test gets a vault of its own (purgeable, made through the emulator's
management API) at a forwarder port of its own, so no test sees another's keys.

Run ``python -m tests.harness.lowkey up DIR`` to start one with a single purgeable vault
and leave it running (the demo does), ``down DIR`` to stop it; ``up`` writes
``DIR/lowkey.env``, the settings an operator needs to use it.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from tests.harness.controlplane import REPO, free_port
from tests.harness.processes import stop, stop_recorded

#: The JVM flags Lowkey's README measured at about 220 MiB resident.
#: Lowkey's README flags: quick to start, light on memory; what the tests and the demo need.
JVM_FLAGS = ("-XX:+UseSerialGC", "-Xmx256m", "-XX:TieredStopAtLevel=1")
#: For the benchmark: the emulator holds tens of thousands of keys and must keep up with
#: the operator, so it gets a full JIT and room in its heap.
THROUGHPUT_JVM_FLAGS = ("-XX:+UseParallelGC", "-Xmx2g")
PURGEABLE = {"recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}


def _script(*args: str) -> str:
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "lowkey-vault.sh"), *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


class AnyToken:
    """Lowkey accepts any bearer token; the tests' own clients send this one."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("kvbackup-tests", int(time.time()) + 3600)


@dataclass
class Lowkey:
    api_port: int
    token_port: int
    certificate: Path
    log: Path
    pid: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def token_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.token_port}/metadata/identity/oauth2/token"

    def operator_env(self) -> dict[str, str]:
        """What an operator needs to reach this emulator as it would reach Azure."""
        return {
            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
            "IDENTITY_ENDPOINT": self.token_endpoint,
            "IDENTITY_HEADER": "kvbackup",
            "KVBACKUP_CA_BUNDLE": str(self.certificate),
            # The emulator's challenge names its own host, not a Key Vault domain.
            "KVBACKUP_VERIFY_CHALLENGE_RESOURCE": "false",
        }

    def _management(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}/management/vault{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        context = ssl.create_default_context(cafile=str(self.certificate))
        with urllib.request.urlopen(request, context=context, timeout=30) as reply:
            raw = reply.read()
        return json.loads(raw) if raw else None

    def create_vault(self, base_uri: str) -> None:
        """A purgeable vault answering at ``base_uri`` (its host:port must reach Lowkey)."""
        self._management("POST", "", {"baseUri": base_uri, **PURGEABLE})

    def delete_vault(self, base_uri: str) -> None:
        query = urllib.parse.urlencode({"baseUri": base_uri})
        self._management("DELETE", f"?{query}")
        self._management("DELETE", f"/purge?{query}")

    def stop(self) -> None:
        stop(self.pid)


def _fetch(url: str, timeout: float = 2) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return bytes(reply.read())


def _write_pem(token_port: int, certificate: Path) -> None:
    base = f"http://127.0.0.1:{token_port}/metadata/default-cert"
    password = _fetch(f"{base}/password").strip()
    _, cert, chain = pkcs12.load_key_and_certificates(_fetch(f"{base}/lowkey-vault.p12"), password)
    assert cert is not None, "Lowkey's keystore holds no certificate"
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in (cert, *(chain or [])))
    certificate.write_bytes(pem)


def _wait_ready(lowkey: Lowkey, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Lowkey Vault exited early; see {lowkey.log}")
        try:
            _write_pem(lowkey.token_port, lowkey.certificate)
            context = ssl.create_default_context(cafile=str(lowkey.certificate))
            with urllib.request.urlopen(f"{lowkey.url}/ping", context=context, timeout=2):
                return
        except (OSError, urllib.error.URLError) as error:
            last = error
            time.sleep(0.3)
    raise RuntimeError(f"Lowkey Vault not ready in {deadline_s}s ({last}); see {lowkey.log}")


def start(
    workdir: Path, *, detached: bool = False, jvm_flags: tuple[str, ...] = JVM_FLAGS
) -> Lowkey:
    java, jar = _script("java"), _script("jar")
    workdir.mkdir(parents=True, exist_ok=True)
    api_port, token_port = free_port(), free_port()
    log = workdir / "lowkey-vault.log"
    process = subprocess.Popen(
        [
            java,
            *jvm_flags,
            "-jar",
            jar,
            f"--server.port={api_port}",
            f"--app.token.port={token_port}",
            "--server.address=127.0.0.1",
            "--LOWKEY_VAULT_NAMES=-",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=detached,
    )
    lowkey = Lowkey(api_port, token_port, workdir / "lowkey-vault.pem", log, process.pid)
    try:
        _wait_ready(lowkey, process, deadline_s=120)
    except Exception:
        lowkey.stop()
        raise
    return lowkey


def main(argv: list[str]) -> None:
    command, workdir = argv[1], Path(argv[2]).resolve()
    pids = workdir / "lowkey.pid"
    if command == "up":
        lowkey = start(workdir, detached=True)
        pids.write_text(str(lowkey.pid))
        lowkey.create_vault(lowkey.url)
        settings = {"LOWKEY_VAULT_URL": lowkey.url, **lowkey.operator_env()}
        (workdir / "lowkey.env").write_text(
            "".join(f"{name}={value}\n" for name, value in settings.items())
        )
        print(lowkey.url)
    elif command == "down":
        stop_recorded(pids)
    else:
        raise SystemExit(f"usage: {argv[0]} up|down DIR")


if __name__ == "__main__":
    main(sys.argv)
