"""``make bench``: the operator against a sequential SDK loop, as a user would measure them.

Starts the control plane, Lowkey Vault behind the fault proxy (latency per request, and
optionally a share of 429s), and the operator as a real process; creates N one-version EC
keys; then measures, side by side and through the same proxy:

* the operator's KeyBackup of every key into Secrets, from apply to Ready, and the same
  into Blob Storage (Azurite);
* a sequential loop of ``backup_key``, each written to a local file (what people run
  today);
* the operator's KeyRestore of the whole Secret snapshot after every key is purged, and a
  sequential loop of ``restore_key_backup`` over the files.

Prints a table and writes the figures to ``bench-results.json``. Settings come from the
environment: BENCH_KEYS (default 1000), BENCH_LATENCY_MS (30), BENCH_RATE (400, the
operator's KVBACKUP_VAULT_RATE_LIMIT), BENCH_THROTTLE_SHARE (0).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from tests.harness import azurite as azurite_harness
from tests.harness import lowkey as lowkey_harness
from tests.harness.controlplane import ControlPlane, install_crds
from tests.harness.controlplane import start as start_control_plane
from tests.harness.fault_proxy import FaultProxy, Faults, fault_proxy_for
from tests.harness.operator import OperatorProcess, start_operator
from tests.harness.vault import Vault


@dataclass
class Measurement:
    what: str
    seconds: float
    keys: int
    vault_requests: int = 0
    throttled: int = 0
    peak_rss_mib: float = 0.0
    secrets_written: int = 0

    @property
    def keys_per_second(self) -> float:
        return self.keys / self.seconds if self.seconds else 0.0

    @property
    def requests_per_second(self) -> float:
        return self.vault_requests / self.seconds if self.seconds else 0.0


class RssWatch:
    """Samples a process's resident memory every 100 ms; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kib, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            time.sleep(0.1)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kib / 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_ready(plane: ControlPlane, kind: str, name: str, namespace: str, timeout: float) -> None:
    plane.kubectl(
        "wait",
        "--for=condition=Ready",
        f"--timeout={timeout:.0f}s",
        f"{kind}/{name}",
        "-n",
        namespace,
    )


def timed(proxy: FaultProxy, what: str, keys: int, run: Callable[[], None]) -> Measurement:
    before = proxy.counts()
    started = time.monotonic()
    run()
    seconds = time.monotonic() - started
    after = proxy.counts()
    return Measurement(
        what, seconds, keys, after.requests - before.requests, after.throttled - before.throttled
    )


def operator_run(
    plane: ControlPlane,
    proxy: FaultProxy,
    operator: OperatorProcess,
    what: str,
    keys: int,
    kind: str,
    manifest: dict[str, Any],
    namespace: str,
) -> Measurement:
    watch = RssWatch(operator.process.pid)
    name = str(manifest["metadata"]["name"])

    def apply_and_wait() -> None:
        plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
        wait_ready(plane, kind, name, namespace, timeout=3600)

    measured = timed(proxy, what, keys, apply_and_wait)
    measured.peak_rss_mib = watch.stop()
    measured.secrets_written = len(
        plane.kubectl("get", "secrets", "-n", namespace, "-o", "name").stdout.split()
    )
    return measured


def main() -> None:
    keys = int(os.environ.get("BENCH_KEYS", "1000"))
    latency = float(os.environ.get("BENCH_LATENCY_MS", "30")) / 1000
    rate = os.environ.get("BENCH_RATE", "400")
    throttle = float(os.environ.get("BENCH_THROTTLE_SHARE", "0"))
    work = Path(tempfile.mkdtemp(prefix="kvbackup-bench-"))
    names = [f"key-{index:06d}" for index in range(keys)]
    results: list[Measurement] = []

    plane = start_control_plane(work / "control-plane")
    lowkey = lowkey_harness.start(work / "lowkey")
    azurite = azurite_harness.start(work / "azurite")
    proxy = fault_proxy_for(lowkey, work / "proxy")
    operator: OperatorProcess | None = None
    try:
        install_crds(plane)
        lowkey.create_vault(proxy.url)
        vault = Vault(proxy.url, lowkey.certificate)
        print(f"creating {keys} keys ...", flush=True)
        vault.create_ec_keys(names)
        proxy.set_faults(Faults(latency_seconds=latency, throttle_share=throttle))
        namespace = "bench"
        plane.kubectl("create", "namespace", namespace)
        operator = start_operator(
            plane.kubeconfig,
            work / "operator.log",
            {"KVBACKUP_VAULT_RATE_LIMIT": rate, **lowkey.operator_env()},
        )
        idle_rss = rss_kib(operator.process.pid) / 1024

        backup: dict[str, Any] = {
            "apiVersion": "kvbackup.io/v1alpha1",
            "kind": "KeyBackup",
            "metadata": {"name": "all"},
            "spec": {"vaultUrl": proxy.url, "keys": {"selector": {}}},
        }
        print("operator: KeyBackup into Secrets ...", flush=True)
        results.append(
            operator_run(
                plane, proxy, operator, "operator backup, Secrets", keys, "kb", backup, namespace
            )
        )
        blob_namespace = "bench-blob"
        plane.kubectl("create", "namespace", blob_namespace)
        connection = base64.b64encode(azurite.connection_string().encode()).decode()
        plane.kubectl(
            "apply",
            "-n",
            blob_namespace,
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "storage"},
                    "data": {"connectionString": connection},
                }
            ),
        )
        container = "bench"
        BlobServiceClient.from_connection_string(azurite.connection_string()).create_container(
            container
        )
        blob_backup = json.loads(json.dumps(backup))
        blob_backup["spec"]["destination"] = {
            "blob": {
                "accountUrl": azurite.blob_endpoint,
                "container": container,
                "credentials": {"name": "storage"},
            }
        }
        print("operator: KeyBackup into Blob ...", flush=True)
        results.append(
            operator_run(
                plane,
                proxy,
                operator,
                "operator backup, Blob",
                keys,
                "kb",
                blob_backup,
                blob_namespace,
            )
        )

        files = work / "loop"
        files.mkdir()

        def sequential_backup() -> None:
            with vault.client as client:
                for name in names:
                    (files / name).write_bytes(client.backup_key(name))

        print("sequential backup_key loop ...", flush=True)
        results.append(timed(proxy, "sequential backup loop", keys, sequential_backup))

        def purge_all() -> None:
            with vault.client as client:
                for name in names:
                    client.begin_delete_key(name).wait()
                    client.purge_deleted_key(name)

        proxy.set_faults(Faults())
        print("purging every key ...", flush=True)
        purge_all()
        proxy.set_faults(Faults(latency_seconds=latency, throttle_share=throttle))
        restore: dict[str, Any] = {
            "apiVersion": "kvbackup.io/v1alpha1",
            "kind": "KeyRestore",
            "metadata": {"name": "all-back"},
            "spec": {"vaultUrl": proxy.url, "source": {"keyBackupRef": {"name": "all"}}},
        }
        print("operator: KeyRestore of the Secret snapshot ...", flush=True)
        results.append(
            operator_run(
                plane,
                proxy,
                operator,
                "operator restore, Secrets",
                keys,
                "kr",
                restore,
                namespace,
            )
        )

        proxy.set_faults(Faults())
        purge_all()
        proxy.set_faults(Faults(latency_seconds=latency, throttle_share=throttle))

        def sequential_restore() -> None:
            with vault.client as client:
                for name in names:
                    client.restore_key_backup((files / name).read_bytes())

        print("sequential restore_key_backup loop ...", flush=True)
        results.append(timed(proxy, "sequential restore loop", keys, sequential_restore))
    finally:
        if operator is not None:
            operator.stop()
        proxy.stop()
        azurite.stop()
        lowkey.stop()
        plane.stop()

    by_name = {m.what: m for m in results}
    loop_backup = by_name["sequential backup loop"].keys_per_second
    loop_restore = by_name["sequential restore loop"].keys_per_second
    print()
    print(
        f"{keys} keys, {latency * 1000:.0f} ms per request, KVBACKUP_VAULT_RATE_LIMIT={rate}, "
        f"{throttle:.0%} answered 429; {os.cpu_count()} cores; operator idle RSS {idle_rss:.0f} MiB"
    )
    header = (
        "run",
        "seconds",
        "keys/s",
        "vs loop",
        "requests/s",
        "of rate",
        "429s",
        "peak RSS",
        "Secrets",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for m in results:
        loop = loop_restore if "restore" in m.what else loop_backup
        ratio = f"{m.keys_per_second / loop:.1f}x" if loop else "-"
        operator_row = m.what.startswith("operator")
        print(
            f"| {m.what} | {m.seconds:.1f} | {m.keys_per_second:.0f} | {ratio} | "
            f"{m.requests_per_second:.0f} | "
            f"{m.requests_per_second / float(rate):.0%} | {m.throttled} | "
            f"{f'{m.peak_rss_mib:.0f} MiB' if operator_row else '-'} | "
            f"{m.secrets_written if operator_row else '-'} |"
        )
    Path("bench-results.json").write_text(
        json.dumps(
            {
                "keys": keys,
                "latency_ms": latency * 1000,
                "rate": float(rate),
                "throttle_share": throttle,
                "operator_idle_rss_mib": idle_rss,
                "runs": [asdict(m) | {"keys_per_second": m.keys_per_second} for m in results],
            },
            indent=2,
        )
    )
    print("\nwritten to bench-results.json")


if __name__ == "__main__":
    main()
