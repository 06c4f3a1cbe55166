"""The operator as a real process (``python -m kvbackup``) against the harness's API server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.harness.controlplane import free_port
from tests.harness.metrics import Samples, scrape


def loopback_only_azure_env() -> dict[str, str]:
    """Keeps azure-identity's managed-identity probe on loopback.

    Without this, DefaultAzureCredential would probe the cloud metadata address; here
    every token request goes to a closed loopback port instead.
    """
    return {
        "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{free_port()}/token",
        "IDENTITY_HEADER": "kvbackup-tests",
    }


def emulator_hosts() -> dict[str, str]:
    """Allows the emulators' loopback addresses, which the operator's defaults (Azure's
    domains only) refuse: Lowkey, its per-vault forwarders, the fault proxy and Azurite
    all listen on 127.0.0.1, on ports chosen when they start."""
    return {"KVBACKUP_VAULT_HOSTS": "127.0.0.1:*", "KVBACKUP_BLOB_HOSTS": "127.0.0.1:*"}


def single_tenant_identity() -> dict[str, str]:
    """Lets every namespace use the operator's own identity for every vault and container,
    as a single-tenant cluster's admin would (the operator's default allows none): the
    tests' namespaces are made per test. Tests of the rules set their own."""
    rule = {"namespaces": ["*"], "vaultUrls": ["*"], "blobUrls": ["*"]}
    return {"KVBACKUP_DEFAULT_IDENTITY_RULES": json.dumps([rule])}


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    health_port: int
    #: 0 when the operator serves no metrics.
    metrics_port: int = 0

    def metrics(self) -> Samples:
        return scrape(self.metrics_port)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited early:\n{self.log()[-4000:]}")
            try:
                url = f"http://127.0.0.1:{self.health_port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"operator not healthy in {timeout}s:\n{self.log()[-4000:]}")

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, as a crashed or evicted pod would get."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_operator(
    kubeconfig: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> OperatorProcess:
    health_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KVBACKUP_HEALTH_PORT": str(health_port),
        "KVBACKUP_METRICS_PORT": str(metrics_port),
        "KVBACKUP_RETRY_BASE_SECONDS": "1",
        "KVBACKUP_RETRY_MAX_SECONDS": "4",
        # Tests run schedules of every few seconds, far below the default minimum.
        "KVBACKUP_MIN_SCHEDULE_INTERVAL": "1s",
        **loopback_only_azure_env(),
        **emulator_hosts(),
        **single_tenant_identity(),
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "kvbackup"],
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    operator = OperatorProcess(process, log_path, health_port, metrics_port)
    operator.wait_healthy()
    return operator
