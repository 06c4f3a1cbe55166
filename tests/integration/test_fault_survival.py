"""Runs survive the faults of a real cluster: an API server outage, a failing Key Vault, a
stopped storage account, and an operator killed again and again. Nothing is lost, no key
is counted twice, and there is never more than one complete snapshot of a run.

The API server outage stops the cluster for every test, so it runs alone; the other
scenarios are independent (a namespace, a vault and an operator each) and run at once.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.blob_store import BlobSnapshotStore
from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.services.ports import SnapshotStore
from kvbackup.services.snapshot import sha256_hex
from kvbackup.services.workers import DEFAULT_CONCURRENCY
from tests.harness import azurite as azurite_harness
from tests.harness.controlplane import ControlPlane
from tests.harness.fault_proxy import FaultProxy, Faults
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess, start_operator
from tests.harness.vault import Vault, create_keys, purge_keys
from tests.integration.conftest import Cluster, proxied_vault
from tests.integration.objects import blob_destination, keybackup, keyrestore

pytestmark = pytest.mark.integration

BACKUP_CALLS = "POST /keys/*/backup"
RESTORE_CALLS = "POST /keys/restore"


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{index:03d}" for index in range(count)]


class Scenario:
    """A namespace, vaults behind fault proxies, and operators, all stopped at the end."""

    def __init__(self, plane: ControlPlane, lowkey: Lowkey, workdir: Path, name: str) -> None:
        self.plane, self.lowkey, self.workdir = plane, lowkey, workdir
        self.namespace = f"{name}-{uuid.uuid4().hex[:8]}"
        plane.kubectl("create", "namespace", self.namespace)
        self.cluster = Cluster(plane, self.namespace)
        self._cleanup = ExitStack()
        self._operators: list[OperatorProcess] = []

    def vault(self) -> tuple[FaultProxy, Vault]:
        workdir = self.workdir / f"proxy-{uuid.uuid4().hex[:6]}"
        proxy = self._cleanup.enter_context(proxied_vault(self.lowkey, workdir))
        return proxy, Vault(proxy.url, self.lowkey.certificate)

    def operator(self, **settings: str) -> OperatorProcess:
        env = {"KVBACKUP_WATCH_NAMESPACES": self.namespace, **self.lowkey.operator_env()}
        log = self.workdir / f"{self.namespace}-{len(self._operators)}.log"
        process = start_operator(self.plane.kubeconfig, log, env | settings)
        self._operators.append(process)
        return process

    def close(self) -> None:
        for process in self._operators:
            process.stop()
        self._cleanup.close()


@pytest.fixture(scope="module")
def scenarios(
    control_plane: ControlPlane, lowkey: Lowkey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Scenario]]:
    opened: list[Scenario] = []

    def open_scenario(name: str) -> Scenario:
        scenario = Scenario(control_plane, lowkey, tmp_path_factory.mktemp(name), name)
        opened.append(scenario)
        return scenario

    yield open_scenario
    for scenario in opened:
        scenario.close()


@dataclass(frozen=True)
class Outcome:
    """A KeyBackup's final status, and its stored snapshots (see ``verified_snapshots``)."""

    status: dict[str, Any]
    snapshots: dict[str, set[str]]

    def assert_one_complete_snapshot_of(self, keys: list[str]) -> None:
        assert self.status["lastRun"]["keysSucceeded"] == len(keys)
        assert self.snapshots == {self.status["lastSnapshot"]["id"]: set(keys)}


async def verified_snapshots(
    store: SnapshotStore, namespace: str, name: str
) -> dict[str, set[str]]:
    """Every stored snapshot of a KeyBackup with the key names of its manifest (none for an
    incomplete one), once each artifact of the complete ones matches its manifest's sha256."""
    found: dict[str, set[str]] = {}
    for stored in await store.list_stored(namespace, name):
        if not stored.complete:
            found[f"incomplete {stored.snapshot_id}"] = set()
            continue
        manifest = await store.read_manifest(namespace, name, stored.snapshot_id)
        for artifact in manifest.artifacts:
            data = await store.read_artifact(namespace, name, manifest.snapshot_id, artifact)
            assert sha256_hex(data) == artifact.sha256, artifact.name
        found[stored.snapshot_id] = {artifact.name for artifact in manifest.artifacts}
        assert len(found[stored.snapshot_id]) == len(manifest.artifacts), "a key stored twice"
    return found


def secret_outcome(cluster: Cluster, name: str, status: dict[str, Any]) -> Outcome:
    async def read() -> dict[str, set[str]]:
        client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.plane.kubeconfig)
        )
        api = KubernetesApi(client)
        try:
            return await verified_snapshots(SecretSnapshotStore(api), cluster.namespace, name)
        finally:
            api.close()

    return Outcome(status, asyncio.run(read()))


# --- the API server stopped for 30 s --------------------------------------------------

OUTAGE_SECONDS = 30


def test_a_30_s_api_server_outage_mid_backup_and_mid_restore_ends_in_complete_runs(
    scenarios: Callable[[str], Scenario],
) -> None:
    scenario = scenarios("outage")
    cluster = scenario.cluster
    backed, backed_vault = scenario.vault()
    restored, restored_vault = scenario.vault()
    backup_keys, restore_keys = names("big", 500), names("back", 100)
    create_keys(backed_vault, backup_keys)
    create_keys(restored_vault, restore_keys)
    # As the chart runs it: electing itself leader, so it stops its runs when it cannot
    # renew its lease, and takes them up again when the API server is back.
    scenario.operator(
        KVBACKUP_LEADER_ELECTION_NAMESPACE=cluster.namespace,
        KVBACKUP_LEADER_ELECTION_LEASE_SECONDS="15",
    )
    cluster.apply(keybackup("source", restored.url))
    cluster.wait_for_phase("keybackup", "source", "Succeeded")
    purge_keys(restored_vault, restore_keys)

    # Vaults far away: both runs are still under way when the API server stops.
    backed.set_faults(Faults(latency_seconds=0.5))
    restored.set_faults(Faults(latency_seconds=1.0))
    cluster.apply(keybackup("big", backed.url))
    cluster.apply(keyrestore("back", restored.url, keybackup="source"))
    cluster.wait_until(
        "the restore is under way",
        lambda: restored.counts().by_operation.get(RESTORE_CALLS, 0) >= 10,
        interval=0.2,
    )
    # Neither run can end while the API server is down: its end is a status write.
    assert cluster.status("keybackup", "big")["phase"] == "Running"
    assert cluster.status("keyrestore", "back")["phase"] == "Running"
    scenario.plane.stop_api_server()
    try:
        time.sleep(OUTAGE_SECONDS)
    finally:
        scenario.plane.start_api_server()
    for proxy in (backed, restored):
        proxy.set_faults(Faults())

    backup = cluster.wait_for_phase("keybackup", "big", "Succeeded", timeout=180)
    restore = cluster.wait_for_phase(
        "keyrestore", "back", "Succeeded", "PartiallyFailed", timeout=180
    )
    secret_outcome(cluster, "big", backup).assert_one_complete_snapshot_of(backup_keys)
    assert restore["phase"] == "Succeeded", restore
    assert restore["counts"]["failed"] == 0, restore["counts"]
    assert restored_vault.key_names() == set(restore_keys)
    # Each key was restored by one call. A call the vault answered after the run was
    # stopped (its leader stepped down) was not recorded, so it is sent again and refused
    # as taken: 400 from Lowkey, 409 from Azure.
    answers = restore_answers(restored)
    assert answers.pop("200", 0) == len(restore_keys), answers
    assert set(answers) <= {"400", "409"}, answers
    assert sum(answers.values()) <= DEFAULT_CONCURRENCY, answers


def restore_answers(proxy: FaultProxy) -> dict[str, int]:
    """The restore calls the vault answered, by status."""
    prefix = f"{RESTORE_CALLS} "
    return {
        name.removeprefix(prefix): count
        for name, count in proxy.counts().answered.items()
        if name.startswith(prefix)
    }


# --- independent scenarios, run at once -----------------------------------------------


def vault_fails_for_20_s(scenario: Scenario) -> Outcome:
    cluster = scenario.cluster
    proxy, vault = scenario.vault()
    keys = names("flaky", 100)
    create_keys(vault, keys)
    scenario.operator()
    proxy.set_faults(Faults(latency_seconds=0.5))  # for the faults to start mid-run
    cluster.apply(keybackup("flaky", proxy.url))
    cluster.wait_until(
        "some keys are backed up",
        lambda: proxy.counts().by_operation.get(BACKUP_CALLS, 0) >= 20,
        interval=0.2,
    )
    proxy.set_faults(Faults(unavailable_share=0.5, reset_share=0.5))
    time.sleep(20)
    proxy.set_faults(Faults())
    counts = proxy.counts()
    assert counts.unavailable > 0, counts
    assert counts.reset > 0, counts
    status = cluster.wait_for_phase("keybackup", "flaky", "Succeeded", timeout=180)
    return secret_outcome(cluster, "flaky", status)


def storage_stops(scenario: Scenario) -> Outcome:
    cluster = scenario.cluster
    proxy, vault = scenario.vault()
    keys = names("stored", 100)
    create_keys(vault, keys)
    workdir = scenario.workdir / "azurite"
    azurite = azurite_harness.start(workdir)
    try:
        container = f"c{uuid.uuid4().hex[:12]}"

        async def create_container() -> None:
            client = ContainerClient.from_connection_string(azurite.connection_string(), container)
            async with client:
                await client.create_container()

        asyncio.run(create_container())
        scenario.operator()
        proxy.set_faults(Faults(latency_seconds=0.5))  # for storage to stop mid-run
        destination = blob_destination(cluster, azurite, container, "backups")
        cluster.apply(keybackup("to-blob", proxy.url, destination=destination))
        cluster.wait_until(
            "some keys are stored",
            lambda: proxy.counts().by_operation.get(BACKUP_CALLS, 0) >= 20,
            interval=0.2,
        )
        azurite.stop()
        time.sleep(5)  # attempts fail meanwhile
        down = cluster.status("keybackup", "to-blob")
        assert down.get("phase") != "Succeeded", down
        assert not down.get("lastSnapshot"), down  # the incomplete snapshot is not offered
        azurite = azurite_harness.start(workdir, port=azurite.port)
        proxy.set_faults(Faults())
        status = cluster.wait_for_phase("keybackup", "to-blob", "Succeeded", timeout=180)

        async def read() -> dict[str, set[str]]:
            client = ContainerClient.from_connection_string(azurite.connection_string(), container)
            async with client:
                store = BlobSnapshotStore(client, "backups")
                return await verified_snapshots(store, cluster.namespace, "to-blob")

        return Outcome(status, asyncio.run(read()))
    finally:
        azurite.stop()


def operator_killed_5_times(scenario: Scenario) -> Outcome:
    cluster = scenario.cluster
    proxy, vault = scenario.vault()
    keys = names("killed", 500)
    create_keys(vault, keys)
    cluster.apply(keybackup("killed", proxy.url))
    chance = random.Random()
    for _ in range(5):
        operator = scenario.operator(KVBACKUP_VAULT_RATE_LIMIT="100")
        time.sleep(chance.uniform(0.5, 3.0))
        operator.kill()
    scenario.operator(KVBACKUP_VAULT_RATE_LIMIT="100")
    status = cluster.wait_for_phase("keybackup", "killed", "Succeeded", timeout=180)
    return secret_outcome(cluster, "killed", status)


SCENARIOS = {
    "vault-faults": vault_fails_for_20_s,
    "storage-stops": storage_stops,
    "killed": operator_killed_5_times,
}


@pytest.fixture(scope="module")
def outcomes(
    scenarios: Callable[[str], Scenario],
) -> Iterator[dict[str, Future[Outcome]]]:
    with ThreadPoolExecutor(len(SCENARIOS)) as pool:
        yield {name: pool.submit(run, scenarios(name)) for name, run in SCENARIOS.items()}


def test_key_vault_answering_503_and_resetting_connections_for_20_s_only_delays_a_backup(
    outcomes: dict[str, Future[Outcome]],
) -> None:
    outcomes["vault-faults"].result().assert_one_complete_snapshot_of(names("flaky", 100))


def test_a_stopped_storage_account_leaves_its_snapshot_unoffered_until_an_attempt_completes_it(
    outcomes: dict[str, Future[Outcome]],
) -> None:
    outcomes["storage-stops"].result().assert_one_complete_snapshot_of(names("stored", 100))


def test_an_operator_killed_5_times_mid_backup_leaves_one_complete_snapshot_of_every_key(
    outcomes: dict[str, Future[Outcome]],
) -> None:
    outcomes["killed"].result().assert_one_complete_snapshot_of(names("killed", 500))
