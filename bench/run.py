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

Each loop runs before the operator's run of its kind, so the emulator's JIT compiler has
warmed up on that kind of call before the operator is timed.

Prints a table and writes the figures to ``bench-results.json``. Settings come from the
environment: BENCH_KEYS (default 1000), BENCH_LATENCY_MS (30), BENCH_RATE (400, the
operator's KVBACKUP_VAULT_RATE_LIMIT), BENCH_THROTTLE_SHARE (0) with BENCH_RETRY_AFTER
(seconds; unset sends 429s without it), BENCH_LOOP_KEYS (2000: the sequential loops
run over this many keys, as their pace per key does not change with the vault's size),
BENCH_IDLE_KEYBACKUPS (1000) and BENCH_IDLE_SECONDS (300) for the idle cost, and
BENCH_CONCURRENCY (the operator's KVBACKUP_MAX_CONCURRENCY; unset keeps its default). After the
runs it measures the operator at rest with that many KeyBackups scheduled ``@every 24h``,
and apply -> Ready for 20 one-key KeyBackups.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import kubernetes
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyClient
from azure.storage.blob import BlobServiceClient

from tests.harness import azurite as azurite_harness
from tests.harness import lowkey as lowkey_harness
from tests.harness.azurite import Azurite
from tests.harness.controlplane import ControlPlane, install_crds
from tests.harness.controlplane import start as start_control_plane
from tests.harness.fault_proxy import FaultProxy, Faults, fault_proxy_for
from tests.harness.lowkey import AnyToken
from tests.harness.operator import OperatorProcess, start_operator
from tests.harness.vault import Vault

_T = TypeVar("_T")


@dataclass
class Measurement:
    what: str
    seconds: float
    keys: int
    vault_requests: int = 0
    throttled: int = 0
    peak_rss_mib: float = 0.0
    median_rss_mib: float = 0.0
    secrets_written: int = 0
    #: From the first to the last Key Vault request of the run.
    vault_seconds: float = 0.0
    #: CPU seconds each process used during the run.
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def keys_per_second(self) -> float:
        return self.keys / self.seconds if self.seconds else 0.0

    @property
    def requests_per_second(self) -> float:
        return self.vault_requests / self.seconds if self.seconds else 0.0

    @property
    def vault_bound_rate(self) -> float:
        """Requests per second while the run was talking to the vault."""
        return self.vault_requests / self.vault_seconds if self.vault_seconds else 0.0


class Sampler:
    """Every 100 ms: the operator's resident memory and the proxy's request count."""

    def __init__(self, pid: int | None, proxy: FaultProxy) -> None:
        self.pid, self.proxy = pid, proxy
        self.rss_kib: list[int] = []
        self.requests: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.pid is not None:
                self.rss_kib.append(rss_kib(self.pid))
            self.requests.append((time.monotonic(), self.proxy.counts().requests))
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def vault_seconds(self) -> float:
        """From the first sample after requests started to the one where they stopped."""
        start_count = self.requests[0][1]
        moving = [
            t
            for (t, n), (_, before) in zip(self.requests[1:], self.requests[:-1], strict=True)
            if n > before
        ]
        if not moving or self.requests[-1][1] == start_count:
            return 0.0
        first = next(t for t, n in self.requests if n > start_count)
        return max(moving[-1] - first + 0.1, 0.1)


class CpuWatch:
    """CPU seconds used by named processes between start and ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def stop(self) -> dict[str, float]:
        return {
            name: round(cpu_seconds(pid) - self._start[name], 1) for name, pid in self.pids.items()
        }


def cpu_seconds(pid: int) -> float:
    """User and system time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def timed(
    proxy: FaultProxy,
    what: str,
    keys: int,
    run: Callable[[], None],
    pids: dict[str, int],
    operator_pid: int | None = None,
) -> Measurement:
    before = proxy.counts()
    sampler = Sampler(operator_pid, proxy)
    cpu = CpuWatch(pids)
    started = time.monotonic()
    run()
    seconds = time.monotonic() - started
    sampler.stop()
    after = proxy.counts()
    return Measurement(
        what,
        seconds,
        keys,
        after.requests - before.requests,
        after.throttled - before.throttled,
        peak_rss_mib=max(sampler.rss_kib, default=0) / 1024,
        median_rss_mib=statistics.median(sampler.rss_kib) / 1024 if sampler.rss_kib else 0.0,
        vault_seconds=sampler.vault_seconds(),
        cpu_seconds=cpu.stop(),
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
    pids: dict[str, int],
) -> Measurement:
    name = str(manifest["metadata"]["name"])

    def apply_and_wait() -> None:
        plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
        wait_ready(plane, kind, name, namespace, timeout=3600)

    measured = timed(proxy, what, keys, apply_and_wait, pids, operator.process.pid)
    measured.secrets_written = len(
        plane.kubectl("get", "secrets", "-n", namespace, "-o", "name").stdout.split()
    )
    return measured


def keybackup_of(name: str, vault_url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kvbackup.io/v1alpha1",
        "kind": "KeyBackup",
        "metadata": {"name": name},
        "spec": {"vaultUrl": vault_url, **spec},
    }


def loop_client(vault: Vault) -> KeyClient:
    """What a script would use: the plain SDK."""
    return KeyClient(
        vault.url,
        AnyToken(),
        verify_challenge_resource=False,
        connection_verify=str(vault.certificate),
    )


def patiently(call: Callable[[], _T]) -> _T:
    """One call as a careful script makes it: the SDK does not retry a throttled POST
    (backup, restore), so a 429 waits for its Retry-After, or 1, 2, 4 ... s, and retries."""
    for attempt in range(30):
        try:
            return call()
        except HttpResponseError as error:
            if error.status_code != 429:
                raise
            response: Any = error.response
            retry_after = response.headers.get("Retry-After") if response is not None else None
            time.sleep(float(retry_after or min(2**attempt, 30)))
    raise RuntimeError("still throttled after 30 attempts")


def purge(vault: Vault, names: list[str]) -> None:
    """Delete and purge, eight at a time: setting the stage is not what is measured."""

    def one(name: str) -> None:
        with vault.client as client:
            client.begin_delete_key(name).wait()
            client.purge_deleted_key(name)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


def blob_destination(plane: ControlPlane, azurite: Azurite, namespace: str) -> dict[str, Any]:
    connection = base64.b64encode(azurite.connection_string().encode()).decode()
    plane.kubectl("create", "namespace", namespace)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "storage", "labels": {"kvbackup.io/credentials": "true"}},
        "data": {"connectionString": connection},
    }
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))
    BlobServiceClient.from_connection_string(azurite.connection_string()).create_container("bench")
    return {
        "blob": {
            "accountUrl": azurite.blob_endpoint,
            "container": "bench",
            "credentials": {"name": "storage"},
        }
    }


def idle_cost(
    plane: ControlPlane, operator: OperatorProcess, vault_url: str, count: int, seconds: float
) -> dict[str, float]:
    """``count`` KeyBackups scheduled ``@every 24h``: the operator's CPU and RSS at rest."""
    namespace = "bench-idle"
    plane.kubectl("create", "namespace", namespace)
    objects = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            keybackup_of(
                f"daily-{n:04d}", vault_url, keys={"names": ["key-000000"]}, schedule="@every 24h"
            )
            for n in range(count)
        ],
    }
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(objects))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        listed = json.loads(plane.kubectl("get", "kb", "-n", namespace, "-o", "json").stdout)
        scheduled = [i for i in listed["items"] if (i.get("status") or {}).get("nextScheduleTime")]
        if len(scheduled) == count:
            break
        time.sleep(2)
    else:
        raise RuntimeError(f"only {len(scheduled)} of {count} KeyBackups were scheduled")
    time.sleep(10)  # let the burst of first reconciliations settle
    pid = operator.process.pid
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    samples = []
    while time.monotonic() - started < seconds:
        samples.append(rss_kib(pid))
        time.sleep(1)
    busy = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - started)
    return {
        "keybackups": count,
        "seconds": seconds,
        "cpu_share_of_one_core": busy,
        "peak_rss_mib": max(samples) / 1024,
    }


def apply_to_ready(plane: ControlPlane, vault_url: str, runs: int) -> list[float]:
    """Seconds from apply to Ready for one-key KeyBackups, one after another."""
    api = kubernetes.client.CustomObjectsApi(
        kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
    )
    namespace = "bench-latency"
    plane.kubectl("create", "namespace", namespace)
    took = []
    for n in range(runs):
        body = keybackup_of(f"one-{n:02d}", vault_url, keys={"names": ["key-000000"]})
        started = time.monotonic()
        api.create_namespaced_custom_object(
            "kvbackup.io", "v1alpha1", namespace, "keybackups", body
        )
        while True:
            found = cast(
                dict[str, Any],
                api.get_namespaced_custom_object(
                    "kvbackup.io", "v1alpha1", namespace, "keybackups", body["metadata"]["name"]
                ),
            )
            conditions = (found.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() - started > 60:
                raise RuntimeError(f"KeyBackup one-{n:02d} not Ready after 60 s")
            time.sleep(0.02)
        took.append(time.monotonic() - started)
    return took


def main() -> None:
    keys = int(os.environ.get("BENCH_KEYS", "1000"))
    latency = float(os.environ.get("BENCH_LATENCY_MS", "30")) / 1000
    rate = os.environ.get("BENCH_RATE", "400")
    throttle = float(os.environ.get("BENCH_THROTTLE_SHARE", "0"))
    retry_after = os.environ.get("BENCH_RETRY_AFTER")
    concurrency = os.environ.get("BENCH_CONCURRENCY", "")
    loop_keys = min(keys, int(os.environ.get("BENCH_LOOP_KEYS", "2000")))
    idle_objects = int(os.environ.get("BENCH_IDLE_KEYBACKUPS", "1000"))
    idle_seconds = float(os.environ.get("BENCH_IDLE_SECONDS", "300"))
    work = Path(tempfile.mkdtemp(prefix="kvbackup-bench-"))
    names = [f"key-{index:06d}" for index in range(keys)]
    faults = Faults(
        latency_seconds=latency,
        throttle_share=throttle,
        retry_after_seconds=float(retry_after) if retry_after else None,
    )
    results: list[Measurement] = []
    idle: dict[str, float] = {}
    ready: list[float] = []

    plane = start_control_plane(work / "control-plane")
    lowkey = lowkey_harness.start(work / "lowkey", jvm_flags=lowkey_harness.THROUGHPUT_JVM_FLAGS)
    azurite = azurite_harness.start(work / "azurite", quiet=True)
    proxy = fault_proxy_for(lowkey, work / "proxy")
    operator: OperatorProcess | None = None
    try:
        install_crds(plane)
        lowkey.create_vault(proxy.url)
        vault = Vault(proxy.url, lowkey.certificate)
        print(f"creating {keys} keys ...", flush=True)
        vault.create_ec_keys(names)
        namespace = "bench"
        plane.kubectl("create", "namespace", namespace)
        operator = start_operator(
            plane.kubeconfig,
            work / "operator.log",
            {
                "KVBACKUP_VAULT_RATE_LIMIT": rate,
                **({"KVBACKUP_MAX_CONCURRENCY": concurrency} if concurrency else {}),
                **lowkey.operator_env(),
            },
        )
        idle_rss = rss_kib(operator.process.pid) / 1024
        etcd, apiserver = plane.processes[0].pid, plane.processes[1].pid
        pids = {
            "operator": operator.process.pid,
            "Lowkey Vault": lowkey.pid,
            "Azurite": azurite.process.pid,
            "kube-apiserver": apiserver,
            "etcd": etcd,
            "bench (proxy, loops)": os.getpid(),
        }
        proxy.set_faults(faults)
        files = work / "loop"
        files.mkdir()
        sample = names[:loop_keys]

        # The loops go first: the emulator's JIT warms up on each kind of call in them, so
        # the operator's figures do not carry that cost (Key Vault has none).
        def sequential_backup() -> None:
            with loop_client(vault) as client:
                for name in sample:
                    (files / name).write_bytes(patiently(partial(client.backup_key, name)))

        print(f"sequential backup_key loop over {loop_keys} keys ...", flush=True)
        loops = [timed(proxy, "sequential backup loop", loop_keys, sequential_backup, pids)]

        backup = keybackup_of("all", proxy.url, keys={"selector": {}})
        print("operator: KeyBackup into Secrets ...", flush=True)
        results.append(
            operator_run(
                plane,
                proxy,
                operator,
                "operator backup, Secrets",
                keys,
                "kb",
                backup,
                namespace,
                pids,
            )
        )
        blob_namespace = "bench-blob"
        blob_backup = keybackup_of(
            "all",
            proxy.url,
            keys={"selector": {}},
            destination=blob_destination(plane, azurite, blob_namespace),
        )
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
                pids,
            )
        )
        results.append(loops[0])

        proxy.set_faults(Faults())
        purge(vault, sample)
        proxy.set_faults(faults)

        def sequential_restore() -> None:
            with loop_client(vault) as client:
                for name in sample:
                    backup = (files / name).read_bytes()
                    patiently(partial(client.restore_key_backup, backup))

        print(f"sequential restore_key_backup loop over {loop_keys} keys ...", flush=True)
        loops.append(timed(proxy, "sequential restore loop", loop_keys, sequential_restore, pids))

        proxy.set_faults(Faults())
        print("purging every key ...", flush=True)
        purge(vault, names)
        proxy.set_faults(faults)
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
                pids,
            )
        )
        results.append(loops[1])

        proxy.set_faults(Faults())
        if idle_objects:
            print(
                f"idle: {idle_objects} KeyBackups @every 24h for {idle_seconds:.0f} s ...",
                flush=True,
            )
            idle = idle_cost(plane, operator, proxy.url, idle_objects, idle_seconds)
        print("apply -> Ready of 20 one-key KeyBackups ...", flush=True)
        ready = apply_to_ready(plane, proxy.url, 20)
    finally:
        if operator is not None:
            operator.stop()
        proxy.stop()
        azurite.stop()
        lowkey.stop()
        plane.stop()

    report(keys, latency, float(rate), throttle, retry_after, idle_rss, results, idle, ready)


def report(
    keys: int,
    latency: float,
    rate: float,
    throttle: float,
    retry_after: str | None,
    idle_rss: float,
    results: list[Measurement],
    idle: dict[str, float],
    ready: list[float],
) -> None:
    by_name = {m.what: m for m in results}
    loop_backup = by_name["sequential backup loop"].keys_per_second
    loop_restore = by_name["sequential restore loop"].keys_per_second
    print()
    throttling = f"{throttle:.0%} answered 429" + (
        f" (Retry-After {retry_after} s)" if throttle and retry_after else ""
    )
    print(
        f"{keys} keys, {latency * 1000:.0f} ms per request, KVBACKUP_VAULT_RATE_LIMIT={rate:.0f}, "
        f"{throttling}; {os.cpu_count()} cores; operator RSS at start {idle_rss:.0f} MiB"
    )
    header = (
        "run",
        "keys",
        "seconds",
        "keys/s",
        "vs loop",
        "vault req/s",
        "of rate",
        "429s",
        "peak RSS",
        "median RSS",
        "Secrets",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for m in results:
        loop = loop_restore if "restore" in m.what else loop_backup
        ratio = f"{m.keys_per_second / loop:.1f}x" if loop else "-"
        operator_row = m.what.startswith("operator")
        print(
            f"| {m.what} | {m.keys} | {m.seconds:.1f} | {m.keys_per_second:.0f} | {ratio} | "
            f"{m.vault_bound_rate:.0f} | {m.vault_bound_rate / rate:.0%} | {m.throttled} | "
            f"{f'{m.peak_rss_mib:.0f} MiB' if operator_row else '-'} | "
            f"{f'{m.median_rss_mib:.0f} MiB' if operator_row else '-'} | "
            f"{m.secrets_written if operator_row else '-'} |"
        )
    print("\nCPU seconds during each run (2 cores = 2 CPU seconds per second):")
    processes = list(results[0].cpu_seconds)
    print("| run | seconds | " + " | ".join(processes) + " |")
    print("|" + "---|" * (len(processes) + 2))
    for m in results:
        print(
            f"| {m.what} | {m.seconds:.1f} | "
            + " | ".join(f"{m.cpu_seconds[p]:.1f}" for p in processes)
            + " |"
        )
    if idle:
        print(
            f"\nidle: {idle['keybackups']:.0f} KeyBackups @every 24h over {idle['seconds']:.0f} s: "
            f"{idle['cpu_share_of_one_core']:.1%} of one core, "
            f"peak RSS {idle['peak_rss_mib']:.0f} MiB"
        )
    if ready:
        print(
            f"apply -> Ready, one-key KeyBackup, {len(ready)} runs: "
            f"p50 {statistics.median(ready):.2f} s, max {max(ready):.2f} s"
        )
    Path("bench-results.json").write_text(
        json.dumps(
            {
                "keys": keys,
                "latency_ms": latency * 1000,
                "rate": rate,
                "throttle_share": throttle,
                "retry_after": retry_after,
                "operator_start_rss_mib": idle_rss,
                "runs": [
                    asdict(m)
                    | {"keys_per_second": m.keys_per_second, "vault_bound_rate": m.vault_bound_rate}
                    for m in results
                ],
                "idle": idle,
                "apply_to_ready_seconds": ready,
            },
            indent=2,
        )
    )
    print("\nwritten to bench-results.json")


if __name__ == "__main__":
    main()
