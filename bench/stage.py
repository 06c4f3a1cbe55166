"""The stage every run is measured on, and the two ways a run is made: the operator's, from
apply to Ready, and a sequential loop of plain SDK calls (what people run today), each
backup written to a local file. Both go through the same fault proxy."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from azure.core.exceptions import HttpResponseError
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient

from bench.measure import Measurement, timed
from kvbackup.api import BACKUP_NOW_ANNOTATION
from kvbackup.api.kinds import ItemKind
from tests.harness.azurite import Azurite
from tests.harness.controlplane import ControlPlane
from tests.harness.fault_proxy import FaultProxy, Faults
from tests.harness.operator import OperatorProcess
from tests.harness.vault import (
    Vault,
    certificate_client,
    purge_certificates,
    purge_keys,
    purge_secrets,
    secret_client,
)

_T = TypeVar("_T")

GROUP, VERSION = "kvbackup.io", "v1alpha1"

#: The plain SDK's backup and restore calls of each kind, as a script names them.
SDK_CALLS: dict[ItemKind, tuple[str, str]] = {
    ItemKind.KEY: ("backup_key", "restore_key_backup"),
    ItemKind.SECRET: ("backup_secret", "restore_secret_backup"),
    ItemKind.CERTIFICATE: ("backup_certificate", "restore_certificate_backup"),
}

#: The plain SDK's client of each kind, as a script opens it.
PLAIN_CLIENTS: dict[ItemKind, Callable[[Vault], KeyClient | SecretClient | CertificateClient]] = {
    ItemKind.KEY: lambda vault: vault.client,
    ItemKind.SECRET: secret_client,
    ItemKind.CERTIFICATE: certificate_client,
}

#: Deletes and purges items of each kind, several at once: setting the stage.
PURGES: dict[ItemKind, Callable[[Vault, list[str]], None]] = {
    ItemKind.KEY: purge_keys,
    ItemKind.SECRET: purge_secrets,
    ItemKind.CERTIFICATE: purge_certificates,
}


@dataclass(frozen=True)
class Settings:
    """What ``make bench`` runs, from the environment."""

    keys: int
    secrets: int
    certificates: int
    latency: float
    rate: float
    throttle: float
    retry_after: str | None
    concurrency: str
    #: The loops run over at most this many items of each kind: their pace per item does
    #: not change with the vault's size.
    loop_items: int
    idle_objects: int
    idle_seconds: float
    #: The keys of the incremental row's own vault; 0 skips the row.
    incremental_keys: int
    #: Whether the incremental row is also measured into Blob, beside Secrets (off by
    #: default: it adds about 90 s at 10,000 keys, and the bench keeps to 15 minutes).
    incremental_blob: bool
    #: "incremental" runs the incremental row alone; empty runs every row.
    only: str

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            keys=int(os.environ.get("BENCH_KEYS", "1000")),
            secrets=int(os.environ.get("BENCH_SECRETS", "1000")),
            certificates=int(os.environ.get("BENCH_CERTIFICATES", "200")),
            latency=float(os.environ.get("BENCH_LATENCY_MS", "30")) / 1000,
            rate=float(os.environ.get("BENCH_RATE", "400")),
            throttle=float(os.environ.get("BENCH_THROTTLE_SHARE", "0")),
            retry_after=os.environ.get("BENCH_RETRY_AFTER"),
            concurrency=os.environ.get("BENCH_CONCURRENCY", ""),
            loop_items=int(os.environ.get("BENCH_LOOP_KEYS", "2000")),
            idle_objects=int(os.environ.get("BENCH_IDLE_KEYBACKUPS", "1000")),
            idle_seconds=float(os.environ.get("BENCH_IDLE_SECONDS", "300")),
            incremental_keys=int(os.environ.get("BENCH_INCREMENTAL_KEYS", "10000")),
            incremental_blob=os.environ.get("BENCH_INCREMENTAL_BLOB", "0") != "0",
            only=_only(os.environ.get("BENCH_ONLY", "")),
        )

    def faults(self) -> Faults:
        return Faults(
            latency_seconds=self.latency,
            throttle_share=self.throttle,
            retry_after_seconds=float(self.retry_after) if self.retry_after else None,
        )


#: What BENCH_ONLY may name: the rows that run alone.
ONLY_CHOICES = ("", "incremental")


def _only(value: str) -> str:
    if value not in ONLY_CHOICES:
        raise SystemExit(
            f"BENCH_ONLY is one of {', '.join(map(repr, ONLY_CHOICES))}, not {value!r}"
        )
    return value


def blob_destination(
    plane: ControlPlane, azurite: Azurite, namespace: str, container: str
) -> dict[str, Any]:
    """A KeyBackup's destination in a new ``container`` of Azurite, its credentials in a
    Secret of the new ``namespace``."""
    connection = base64.b64encode(azurite.connection_string().encode()).decode()
    plane.kubectl("create", "namespace", namespace)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "storage", "labels": {"kvbackup.io/credentials": "true"}},
        "data": {"connectionString": connection},
    }
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))
    BlobServiceClient.from_connection_string(azurite.connection_string()).create_container(
        container
    )
    return {
        "blob": {
            "accountUrl": azurite.blob_endpoint,
            "container": container,
            "credentials": {"name": "storage"},
        }
    }


def keybackup_of(name: str, vault_url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "KeyBackup",
        "metadata": {"name": name},
        "spec": {"vaultUrl": vault_url, **spec},
    }


def keyrestore_of(
    name: str, vault_url: str, keybackup: str, snapshot: str | None = None
) -> dict[str, Any]:
    """A KeyRestore of a whole snapshot of ``keybackup``: ``snapshot``, or the newest."""
    source = {"name": keybackup} | ({"snapshot": snapshot} if snapshot else {})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "KeyRestore",
        "metadata": {"name": name},
        "spec": {"vaultUrl": vault_url, "source": {"keyBackupRef": source}},
    }


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


@dataclass
class Bench:
    """The control plane, the vault behind the fault proxy, Azurite, the operator, and where
    the loops keep their files."""

    plane: ControlPlane
    proxy: FaultProxy
    vault: Vault
    azurite: Azurite
    operator: OperatorProcess
    #: The processes whose CPU each run records, by the name the table gives them.
    pids: dict[str, int]
    faults: Faults
    files: Path
    objects: Any  # kubernetes.client.CustomObjectsApi

    @contextmanager
    def unhurried(self) -> Iterator[None]:
        """No latency nor faults while the stage is set, which is not what is measured."""
        self.proxy.set_faults(Faults())
        try:
            yield
        finally:
            self.proxy.set_faults(self.faults)

    def purge(self, names: Mapping[ItemKind, list[str]]) -> None:
        with self.unhurried():
            for kind, some in names.items():
                PURGES[kind](self.vault, some)

    def operator_run(
        self,
        what: str,
        operation: str,
        items: dict[ItemKind, int],
        manifest: dict[str, Any],
        namespace: str,
        trigger: str | None = None,
    ) -> Measurement:
        """Apply ``manifest`` and wait for it to be Ready; the Secrets of ``namespace`` are
        then counted, which is the snapshot's when it is the only one there. With
        ``trigger``, the KeyBackup ``manifest`` (applied and Ready) runs again instead: its
        backup-now annotation is set to ``trigger``, and the run is over once it is handled."""
        print(f"{what} ...", flush=True)

        def apply_and_wait() -> None:
            if trigger is None:
                self.plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
            else:
                self.plane.kubectl(
                    "annotate",
                    "--overwrite",
                    "keybackup",
                    manifest["metadata"]["name"],
                    "-n",
                    namespace,
                    f"{BACKUP_NOW_ANNOTATION}={trigger}",
                )
            self.wait_ready(manifest, namespace, timeout=3600, trigger=trigger)

        measured = timed(
            self.proxy,
            what,
            operation,
            items,
            apply_and_wait,
            self.pids,
            self.operator.process.pid,
        )
        measured.secrets_written = len(
            self.plane.kubectl("get", "secrets", "-n", namespace, "-o", "name").stdout.split()
        )
        return measured

    def wait_ready(
        self,
        manifest: dict[str, Any],
        namespace: str,
        timeout: float,
        trigger: str | None = None,
    ) -> None:
        """Until the object is Ready (with ``trigger``: once its run of that backup-now value
        is over); one that is Stalled (a run that failed, or failed some items) raises with
        its message, as its figures would not be the whole run's."""
        plural = f"{str(manifest['kind']).lower()}s"
        name = manifest["metadata"]["name"]
        watch: Any = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        for event in watch.stream(
            self.objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            field_selector=f"metadata.name={name}",
            timeout_seconds=int(timeout),
        ):
            status = event["object"].get("status") or {}
            if trigger is not None and status.get("lastHandledTrigger") != trigger:
                continue
            conditions = {c.get("type"): c for c in status.get("conditions") or []}
            if conditions.get("Ready", {}).get("status") == "True":
                watch.stop()
                return
            if conditions.get("Stalled", {}).get("status") == "True":
                watch.stop()
                raise RuntimeError(f"{plural}/{name} stalled: {conditions['Stalled']['message']}")
        raise RuntimeError(f"{plural}/{name} not Ready after {timeout:.0f} s")

    def check_snapshot(self, name: str, namespace: str, items: Mapping[ItemKind, int]) -> None:
        """The KeyBackup's last snapshot holds ``items``: every one was backed up."""
        status = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "keybackups", name
        ).get("status", {})
        held = status.get("lastSnapshot") or {}
        stored = {kind: held.get(kind.plural) or 0 for kind in items}
        if stored != items:
            raise RuntimeError(f"KeyBackup {name} stored {stored}, not {items}")

    def check_vault(self, names: Mapping[ItemKind, list[str]]) -> None:
        """The vault holds exactly ``names`` of each of their kinds (the keys and secrets that
        back a certificate aside): a restore brought every item back."""
        vault = self.vault
        with (
            self.unhurried(),
            vault.client as keys,
            secret_client(vault) as secrets,
            certificate_client(vault) as certificates,
        ):
            held: dict[ItemKind, set[str | None]] = {
                ItemKind.KEY: {k.name for k in keys.list_properties_of_keys() if not k.managed},
                ItemKind.SECRET: {
                    s.name for s in secrets.list_properties_of_secrets() if not s.managed
                },
                ItemKind.CERTIFICATE: {
                    c.name for c in certificates.list_properties_of_certificates()
                },
            }
        differ = {kind: len(held[kind] ^ set(some)) for kind, some in names.items()}
        if any(differ.values()):
            raise RuntimeError(f"names the vault holds and should hold differ by {differ}")

    def backup_loop(self, kind: ItemKind, names: list[str]) -> Measurement:
        """The plain SDK's backup call of ``kind`` over ``names``, one after another, each
        backup written to a file."""
        call = SDK_CALLS[kind][0]
        folder = self.files / kind.plural
        folder.mkdir(parents=True, exist_ok=True)

        def loop() -> None:
            with PLAIN_CLIENTS[kind](self.vault) as client:
                backup = getattr(client, call)
                for name in names:
                    (folder / name).write_bytes(patiently(partial(backup, name)))

        return self._loop(call, "backup", kind, names, loop)

    def restore_loop(self, kind: ItemKind, names: list[str]) -> Measurement:
        """The plain SDK's restore call of ``kind`` over the files ``backup_loop`` wrote."""
        call = SDK_CALLS[kind][1]
        folder = self.files / kind.plural

        def loop() -> None:
            with PLAIN_CLIENTS[kind](self.vault) as client:
                restore = getattr(client, call)
                for name in names:
                    patiently(partial(restore, (folder / name).read_bytes()))

        return self._loop(call, "restore", kind, names, loop)

    def _loop(
        self,
        call: str,
        operation: str,
        kind: ItemKind,
        names: list[str],
        loop: Callable[[], None],
    ) -> Measurement:
        print(f"sequential {call} loop over {len(names)} {kind.plural} ...", flush=True)
        return timed(
            self.proxy, f"sequential {call} loop", operation, {kind: len(names)}, loop, self.pids
        )
