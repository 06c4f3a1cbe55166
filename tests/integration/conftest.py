"""Fixtures for tests against the real API server and the operator as a real process."""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.blob_store import BlobSnapshotStore, container_client
from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api import KEYBACKUP_LABEL, ROLE_LABEL, SNAPSHOT_LABEL
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.api.kinds import ITEM_KINDS, ItemKind, ItemRef
from kvbackup.services.ports import SnapshotStore
from kvbackup.services.snapshot import Artifact, Manifest, sha256_hex
from tests.harness import azurite as azurite_harness
from tests.harness import identity
from tests.harness import lowkey as lowkey_harness
from tests.harness.azurite import Azurite
from tests.harness.controlplane import ControlPlane, install_crds, start
from tests.harness.fault_proxy import FaultProxy, fault_proxy_for
from tests.harness.forwarder import Forwarder, Forwarders
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess, start_operator
from tests.harness.vault import Vault
from tests.integration.objects import credentials_secret
from tests.unit.fakes import manifest_of


@contextmanager
def on_the_terminal(config: pytest.Config) -> Iterator[None]:
    """What a first-time build says (what it builds, how long it takes, that it is still
    at it) reaches the terminal instead of pytest's capture, which would hold it back."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        yield
        return
    with capture.global_and_fixture_disabled():
        yield


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[ControlPlane]:
    with on_the_terminal(pytestconfig):
        plane = start(tmp_path_factory.mktemp("control-plane"))
    try:
        install_crds(plane)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def lowkey(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Lowkey]:
    """One Key Vault emulator for the session; each test gets a vault of its own."""
    with on_the_terminal(pytestconfig):
        server = lowkey_harness.start(tmp_path_factory.mktemp("lowkey"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def forwarders() -> Iterator[Forwarders]:
    served = Forwarders()
    try:
        yield served
    finally:
        served.shutdown()


class VaultUnderTest(Vault):
    """A fresh purgeable vault, and the forwarder that counts connections to it."""

    def __init__(self, url: str, certificate: Path, forwarder: Forwarder) -> None:
        super().__init__(url, certificate)
        self.forwarder = forwarder


@pytest.fixture
def vault(lowkey: Lowkey, forwarders: Forwarders) -> Iterator[VaultUnderTest]:
    forwarder = forwarders.open(lowkey.api_port)
    url = f"https://127.0.0.1:{forwarder.port}"
    lowkey.create_vault(url)
    try:
        yield VaultUnderTest(url, lowkey.certificate, forwarder)
    finally:
        lowkey.delete_vault(url)
        forwarders.close(forwarder)


@contextmanager
def proxied_vault(lowkey: Lowkey, workdir: Path) -> Iterator[FaultProxy]:
    """A fresh vault that answers through a fault proxy of its own, which counts every
    request; both go at the end."""
    proxy = fault_proxy_for(lowkey, workdir)
    lowkey.create_vault(proxy.url)
    try:
        yield proxy
    finally:
        lowkey.delete_vault(proxy.url)
        proxy.stop()


@pytest.fixture
def proxy(lowkey: Lowkey, tmp_path: Path) -> Iterator[FaultProxy]:
    """A fresh vault that answers through the fault proxy, which counts every request."""
    with proxied_vault(lowkey, tmp_path / "fault-proxy") as proxy:
        yield proxy


class Operators:
    """Starts the operator as a real process against the session's API server and Lowkey,
    one per call; leaving the ``with`` block stops every one it started."""

    def __init__(self, plane: ControlPlane, lowkey: Lowkey, workdir: Path) -> None:
        self.plane, self.lowkey, self.workdir = plane, lowkey, workdir
        self.started: list[OperatorProcess] = []

    def __enter__(self) -> Operators:
        return self

    def __exit__(self, *_: object) -> None:
        for process in self.started:
            process.stop()

    def start(
        self,
        *namespaces: str,
        identity_rules: list[dict[str, Any]] | None = None,
        settings: Mapping[str, str] | None = None,
        kubeconfig: Path | None = None,
    ) -> OperatorProcess:
        """An operator watching ``namespaces`` (names or patterns such as "t-*");
        ``identity_rules``, when given, replace the harness's rule that lets every namespace
        use the operator's identity; ``settings`` are more environment variables."""
        env = {"KVBACKUP_WATCH_NAMESPACES": ",".join(namespaces), **self.lowkey.operator_env()}
        if identity_rules is not None:
            env["KVBACKUP_DEFAULT_IDENTITY_RULES"] = json.dumps(identity_rules)
        log = self.workdir / f"operator-{len(self.started)}.log"
        process = start_operator(
            kubeconfig or self.plane.kubeconfig, log, {**env, **(settings or {})}
        )
        self.started.append(process)
        return process


def new_namespaces(plane: ControlPlane, *prefixes: str) -> list[Cluster]:
    """A new namespace per prefix, named ``<prefix>-<suffix>`` with one random suffix for
    all: outside "t-*", for tests that run an operator of their own."""
    suffix = uuid.uuid4().hex[:8]
    clusters = [Cluster(plane, f"{prefix}-{suffix}") for prefix in prefixes]
    for cluster in clusters:
        plane.kubectl("create", "namespace", cluster.namespace)
    return clusters


@pytest.fixture
def operators(
    control_plane: ControlPlane, lowkey: Lowkey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operators]:
    """Operators of the test's own; stopped after the test."""
    with Operators(control_plane, lowkey, tmp_path_factory.mktemp("operators")) as started:
        yield started


@pytest.fixture
def own_operator(control_plane: ControlPlane, operators: Operators) -> Callable[..., Cluster]:
    """Starts an operator of the test's own with the given settings, watching a new
    namespace of its own (not "t-*", which the shared operator watches); stopped after
    the test."""

    def start(prefix: str, **settings: str) -> Cluster:
        [cluster] = new_namespaces(control_plane, prefix)
        cluster.operator = operators.start(cluster.namespace, settings=settings)
        return cluster

    return start


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, lowkey: Lowkey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    # Namespaces of the tests that share this operator start with "t-"; tests that run
    # an operator of their own use other namespaces, so no object has two operators.
    with Operators(control_plane, lowkey, tmp_path_factory.mktemp("operator")) as operators:
        yield operators.start("t-*")


@dataclass(frozen=True)
class OperatorBehindForwarder:
    """An operator that reaches the API server through a loopback forwarder, which the
    test can hold (``Forwarders.hold``) or cut (``Forwarders.close``)."""

    process: OperatorProcess
    api: Forwarder
    forwarders: Forwarders

    def hold_writes(self) -> None:
        self.forwarders.hold(self.api)

    def release_writes(self) -> None:
        self.forwarders.release(self.api)

    def cut_off(self) -> None:
        """Every connection to the API server drops, and none is accepted."""
        self.forwarders.close(self.api)

    def reconnect(self) -> None:
        self.forwarders.reopen(self.api)


@pytest.fixture
def operator_behind_forwarder(
    control_plane: ControlPlane, forwarders: Forwarders, operators: Operators, tmp_path: Path
) -> Iterator[Callable[[str], OperatorBehindForwarder]]:
    """Starts such an operator watching the namespaces given; stops it at the end."""
    started: list[OperatorBehindForwarder] = []

    def start(namespaces: str) -> OperatorBehindForwarder:
        api = forwarders.open(control_plane.api_server_port)
        kubeconfig = tmp_path / f"kubeconfig-behind-forwarder-{len(started)}"
        process = operators.start(
            namespaces, kubeconfig=control_plane.kubeconfig_via(api.port, kubeconfig)
        )
        started.append(OperatorBehindForwarder(process, api, forwarders))
        return started[-1]

    yield start
    for operator in started:
        operator.release_writes()
        # Stopped while it still reaches the API server, then cut off.
        operator.process.stop()
        operator.cut_off()


@pytest.fixture(scope="session")
def azurite(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Azurite]:
    with on_the_terminal(pytestconfig):
        server = azurite_harness.start(tmp_path_factory.mktemp("azurite"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def container(azurite: Azurite) -> AsyncIterator[ContainerClient]:
    """A new, empty container, through the plain SDK: what the tests inspect and tamper with."""
    client = ContainerClient.from_connection_string(
        azurite.connection_string(), f"c{uuid.uuid4().hex[:12]}"
    )
    async with client:
        await client.create_container()
        yield client


@pytest.fixture
async def blob_client(
    azurite: Azurite, container: ContainerClient
) -> AsyncIterator[ContainerClient]:
    """The store's own client, made by the operator's factory, apart from the inspecting one."""
    client = container_client(
        azurite.blob_endpoint,
        container.container_name,
        hosts=azurite.blob_hosts,
        connection_string=azurite.connection_string(),
    )
    async with client:
        yield client


@pytest.fixture
def blob_store(blob_client: ContainerClient) -> BlobSnapshotStore:
    """The store as the operator builds it, under prefix "backups"."""
    return BlobSnapshotStore(blob_client, "backups")


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite on HTTPS taking bearer tokens, as Blob Storage takes the operator's own
    identity (``identity.operator_env`` with ``token_endpoint``)."""
    server = azurite_harness.start(tmp_path_factory.mktemp("azurite-oauth"), oauth=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[str]:
    """A managed identity's token endpoint whose tokens ``oauth_azurite`` accepts."""
    with identity.token_endpoint() as url:
        yield url


@pytest.fixture
async def oauth_container(oauth_azurite: Azurite) -> AsyncIterator[ContainerClient]:
    """A new container of ``oauth_azurite``, through the plain SDK with its key."""
    client = ContainerClient.from_connection_string(
        oauth_azurite.connection_string(),
        f"c{uuid.uuid4().hex[:12]}",
        connection_verify=str(oauth_azurite.certificate),
    )
    async with client:
        await client.create_container()
        yield client


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    return name


#: `kubectl get` separates columns by two spaces or more; a header may hold one space.
HEADER_CELL = re.compile(r"\S+(?: \S+)*")


class Cluster:
    """What a user does with kubectl, for the tests to read like user actions."""

    def __init__(
        self, plane: ControlPlane, namespace: str, operator: OperatorProcess | None = None
    ) -> None:
        self.plane = plane
        self.namespace = namespace
        #: The operator of this namespace alone, when the test started one (own_operator).
        self.operator = operator

    def apply(self, manifest: str) -> None:
        self.plane.kubectl("apply", "-n", self.namespace, "-f", "-", input=manifest)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        out = self.plane.kubectl("get", "-n", self.namespace, kind, name, "-o", "json")
        document: dict[str, Any] = json.loads(out.stdout)
        return document

    def status(self, kind: str, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.get(kind, name).get("status") or {}
        return status

    def columns(self, kind: str, name: str) -> dict[str, str]:
        """The cells `kubectl get` prints for one object, by column header."""
        header, row = self.plane.kubectl("get", kind, name, "-n", self.namespace).stdout.split(
            "\n"
        )[:2]
        starts = [(match.group(), match.start()) for match in HEADER_CELL.finditer(header)]
        ends = [start for _, start in starts[1:]] + [len(row)]
        return {h: row[start:end].strip() for (h, start), end in zip(starts, ends, strict=True)}

    def secrets(self, selector: str) -> list[dict[str, Any]]:
        """The Secrets in this namespace that a label selector finds, as kubectl lists them."""
        out = self.plane.kubectl(
            "get", "secrets", "-n", self.namespace, "-l", selector, "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items

    def events_for(self, name: str) -> list[dict[str, Any]]:
        out = self.plane.kubectl(
            "get",
            "events",
            "-n",
            self.namespace,
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "json",
        )
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items

    def wait_until(
        self, what: str, check: Callable[[], bool], timeout: float = 90, interval: float = 0.5
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting until {what}")

    def wait_for_phase(
        self, kind: str, name: str, *phases: str, timeout: float = 120
    ) -> dict[str, Any]:
        """The status once the object's current generation reaches one of ``phases``."""

        def reached() -> bool:
            document = self.get(kind, name)
            status = document.get("status") or {}
            return status.get("phase") in phases and status.get("observedGeneration") == document[
                "metadata"
            ].get("generation")

        try:
            self.wait_until(f"{kind}/{name} is {' or '.join(phases)}", reached, timeout=timeout)
        except AssertionError as error:
            status = self.status(kind, name)
            summary = {key: status.get(key) for key in ("phase", "conditions", "lastRun", "counts")}
            raise AssertionError(f"{error}; its status: {summary}") from None
        return self.status(kind, name)

    def event_count(self, name: str, reason: str) -> int:
        """Occurrences of Events with ``reason`` (repeats are counted, not listed twice)."""
        return sum(
            event.get("count", 1) for event in self.events_for(name) if event["reason"] == reason
        )

    def broken_credentials_secret(self, name: str = "broken") -> None:
        """A service-principal Secret lacking keys: each run using it fails permanently at
        once, which gives runs without a vault."""
        self.apply(credentials_secret(name, tenantId="t"))

    def patch_secret_data(self, secret: str, entry: str, data: bytes) -> None:
        """Replaces one data entry of a Secret, as anyone who may edit Secrets can."""
        encoded = base64.b64encode(data).decode()
        self.plane.kubectl(
            "patch",
            "secret",
            "-n",
            self.namespace,
            secret,
            "--type",
            "merge",
            "-p",
            json.dumps({"data": {entry: encoded}}),
        )

    def create_secret(
        self,
        name: str,
        labels: Mapping[str, str],
        data: Mapping[str, bytes],
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """A Secret as a tenant may create one in its own namespace, named and labelled as
        it likes (created, not applied: kubectl apply would keep a copy of a large one in
        an annotation, which cannot hold it)."""
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        }
        self.plane.kubectl("create", "-n", self.namespace, "-f", "-", input=json.dumps(secret))

    def ready_condition(self, kind: str, name: str) -> dict[str, Any]:
        for condition in self.status(kind, name).get("conditions", []):
            if condition.get("type") == "Ready":
                return dict(condition)
        return {}


@pytest.fixture
def cluster(control_plane: ControlPlane, namespace: str) -> Cluster:
    return Cluster(control_plane, namespace)


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[KubernetesApi]:
    client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig)
    )
    api = KubernetesApi(client)
    yield api
    api.close()


@pytest.fixture
def secret_store(api: KubernetesApi) -> SecretSnapshotStore:
    return SecretSnapshotStore(api)


def backup_labels(keybackup: str, snapshot_id: str, role: str) -> dict[str, str]:
    """The labels the operator gives each Secret of a snapshot it keeps in Secrets."""
    return {KEYBACKUP_LABEL: keybackup, SNAPSHOT_LABEL: snapshot_id, ROLE_LABEL: role}


#: The snapshot id a storage test writes under when one snapshot is all it needs.
SNAPSHOT = "20261128-010203-abcd"


async def store_snapshot(
    store: SnapshotStore, ref: KeyBackupRef, snapshot_id: str, artifacts: Mapping[str, bytes]
) -> Manifest:
    """A complete snapshot of the keys ``artifacts`` (backup bytes by name)."""
    keys = {ItemRef(ItemKind.KEY, name): data for name, data in artifacts.items()}
    return await store_items(store, ref, snapshot_id, keys)


async def store_items(
    store: SnapshotStore, ref: KeyBackupRef, snapshot_id: str, items: Mapping[ItemRef, bytes]
) -> Manifest:
    """A complete snapshot as a backup run leaves it: each item's backup bytes (versions
    v1 and v2), then the manifest."""
    stored = []
    for item, data in items.items():
        location = await store.write_artifact(
            ref, snapshot_id, item.kind, item.name, data, ("v1", "v2")
        )
        stored.append(
            Artifact(item.name, ("v1", "v2"), sha256_hex(data), len(data), location, item.kind)
        )
    manifest = manifest_of(*stored, ref=ref, snapshot_id=snapshot_id)
    await store.write_manifest(manifest, manifest.summary)
    return manifest


async def store_changes(
    store: SnapshotStore,
    ref: KeyBackupRef,
    earlier: Manifest,
    snapshot_id: str,
    renewed: Mapping[ItemRef, bytes],
    gone: Collection[ItemRef] = (),
) -> Manifest:
    """What an incremental run after ``earlier`` (a whole manifest) stores: the ``renewed``
    items backed up anew (version v3), each other item of ``earlier`` but those ``gone``
    carried from the snapshot holding it. Returns the whole manifest, not yet written: a
    test writes it, or its differences from a base."""
    fresh = []
    for item, data in renewed.items():
        location = await store.write_artifact(ref, snapshot_id, item.kind, item.name, data, ("v3",))
        fresh.append(Artifact(item.name, ("v3",), sha256_hex(data), len(data), location, item.kind))
    replaced = {(a.kind, a.name.lower()) for a in fresh} | {(i.kind, i.name.lower()) for i in gone}
    carried = [
        artifact.carried_from(earlier.snapshot_id)
        for artifact in earlier.artifacts
        if (artifact.kind, artifact.name.lower()) not in replaced
    ]
    listed = sorted([*carried, *fresh], key=lambda a: ITEM_KINDS.index(a.kind))  # as a run lists
    return manifest_of(*listed, ref=ref, snapshot_id=snapshot_id)


async def leave_leftover(store: SnapshotStore, ref: KeyBackupRef, snapshot_id: str) -> None:
    """What a run killed before its manifest leaves behind: stored bytes, no manifest.

    A key larger than a Secret is stored at once by either store, not gathered first.
    """
    await store.write_artifact(
        ref, snapshot_id, ItemKind.KEY, "app-key", os.urandom(1_200_000), ("v1",)
    )
