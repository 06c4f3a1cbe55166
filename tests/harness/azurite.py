"""Azurite, Microsoft's Azure Storage emulator, serving blobs on loopback.

Installed from the npm registry on first use into a cache outside the repository, keyed
by version (``${KVBACKUP_CACHE:-~/.cache/kvbackup}/azurite-<version>``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kvbackup.api.hosts import HostAllowList
from tests.harness.controlplane import free_port

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

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    @property
    def blob_hosts(self) -> HostAllowList:
        """The allow-list a client of the store needs here: the operator's defaults name
        Azure's domains only."""
        return HostAllowList.of("KVBACKUP_BLOB_HOSTS", [f"127.0.0.1:{self.port}"])

    def connection_string(self, account_key: str = ACCOUNT_KEY) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
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


def start(workdir: Path, *, quiet: bool = False) -> Azurite:
    """``quiet``: no access or debug log, for runs where the emulator's own logging would
    take CPU from what is being measured."""
    executable = install()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "azurite.log"
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
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    azurite = Azurite(port, log, process)
    try:
        _wait_listening(azurite)
    except Exception:
        azurite.stop()
        raise
    return azurite
