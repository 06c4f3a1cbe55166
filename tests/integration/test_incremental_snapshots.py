"""Incremental snapshots: a run backs up what changed since the latest snapshot and refers
to the rest where an earlier snapshot stored it; every kept snapshot stays whole.

Against Lowkey Vault, the operator as a real process and the real API server (and Azurite
for Blob). The vault is arranged with the plain Azure SDK (tests/harness/vault.py), through
the fault proxy where the operator's Key Vault calls are counted; the snapshots are read
back with the operator's own stores and checked with ``kvbackup snapshots verify``.

What Lowkey's listings give, as the runs rely on it: a new version changes an item's
created and updated times, a changed tag its tags and updated time, a disabled current
version its enabled flag, a recreated name its created time. A change to an older
version does not show in the listing of keys, secrets or certificates; only the
full-backup rule (``spec.fullBackupEvery``) catches it. Lowkey's key and secret backups
are the same bytes while the item is the same, so a digest tells whether a stored
backup is of the item as it is now; its certificate backups differ each time.

Key Vault keeps times to the second, and a run keeps an item's record only when the
item last changed in a second before the run started; snapshot ids are to the second
too. So each run here starts in a later second than anything before it (``next_second``).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import kubernetes
import pytest
from kubernetes import watch

from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api import KEYBACKUP_LABEL
from kvbackup.api.kinds import ITEM_KINDS, ItemKind, ItemRef
from kvbackup.services.ports import SnapshotStore, read_whole_manifest
from kvbackup.services.snapshot import Artifact, Manifest, sha256_hex, snapshot_time
from tests.harness.controlplane import ControlPlane
from tests.harness.fault_proxy import FaultProxy
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import (
    Vault,
    certificate_client,
    create_certificates,
    create_secrets,
    purge_certificates,
    purge_keys,
    purge_secrets,
    secret_client,
)
from tests.integration.conftest import (
    Cluster,
    Operators,
    VaultUnderTest,
    new_namespaces,
    proxied_vault,
)
from tests.integration.objects import (
    EVERY,
    blob_destination,
    key_results,
    keybackup,
    keyrestore,
    vault_backup,
)
from tests.integration.runs import (
    applied,
    ask_backup_now,
    handled,
    kvbackup,
    next_second,
    run_now,
)

pytestmark = pytest.mark.integration

KEY, SECRET, CERTIFICATE = ITEM_KINDS
#: The KeyBackup of each scenario.
CHAIN = "chain"
#: How each changed item of each kind is changed between the first and the second run.
CHANGES = ("rotated", "tagged", "disabled", "recreated")
#: Items the listing shows unchanged at the second run: one is, the other was changed in
#: an older version alone.
UNTOUCHED, OLDER_CHANGED = "untouched", "older-changed"
#: ``spec.fullBackupEvery`` for the run that shows the full-backup rule.
FULL_BACKUP_EVERY = datetime.timedelta(seconds=5)
MESSAGE = b"settlement batch 2026-12-07"


def wait_past(moment: datetime.datetime) -> None:
    time.sleep(max(0.0, moment.timestamp() - time.time()))


def kept(status: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The snapshots a KeyBackup's status lists, newest first, each with those it is held by."""
    return [(entry["id"], entry.get("heldBy", [])) for entry in status["snapshots"]]


async def verified(store: SnapshotStore, namespace: str, name: str) -> dict[str, Manifest]:
    """Each complete snapshot's whole manifest, by id, once every artifact it lists matches
    its sha256 and size where it is stored, and every snapshot it needs is complete."""
    complete = {s.snapshot_id for s in await store.list_snapshots(namespace, name)}
    found = {}
    for snapshot_id in complete:
        as_stored = await store.read_manifest(namespace, name, snapshot_id)
        whole = await read_whole_manifest(store, namespace, name, snapshot_id)
        homes = {artifact.home(snapshot_id) for artifact in whole.artifacts}
        assert as_stored.references | homes <= complete, (snapshot_id, homes, complete)
        for artifact in whole.artifacts:
            artifact.verify(await store.read_artifact(namespace, name, snapshot_id, artifact))
        found[snapshot_id] = whole
    return found


class Items:
    """The vault's items of one kind, made and changed as a person would with the plain SDK
    (whose method names differ per kind by the kind's name alone)."""

    def __init__(self, vault: Vault, kind: ItemKind) -> None:
        self.vault, self.kind = vault, kind

    def _client(self) -> Any:
        if self.kind is KEY:
            return self.vault.client
        return (secret_client if self.kind is SECRET else certificate_client)(self.vault)

    def _call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        with self._client() as client:
            return getattr(client, operation.format(kind=self.kind))(*args, **kwargs)

    def create(self, names: list[str]) -> None:
        """One more version of each (the first of a name not in the vault), several at once."""
        if self.kind is KEY:
            self.vault.create_ec_keys(names)
        else:
            (create_secrets if self.kind is SECRET else create_certificates)(self.vault, names)

    def purge(self, name: str) -> None:
        purge = {KEY: purge_keys, SECRET: purge_secrets, CERTIFICATE: purge_certificates}
        purge[self.kind](self.vault, [name])

    def versions(self, name: str) -> list[str]:
        with self._client() as client:
            listed = getattr(client, f"list_properties_of_{self.kind}_versions")(name)
            return sorted(props.version or "" for props in listed)

    def current(self, name: str) -> str:
        return str(self._call("get_{kind}", name).properties.version)

    def update(self, name: str, version: str, **attributes: Any) -> None:
        self._call("update_{kind}_properties", name, version, **attributes)

    def backup_digest(self, name: str) -> str:
        """The sha256 of the plain SDK's backup of the item as it is now."""
        return sha256_hex(self._call("backup_{kind}", name))


def named(kind: ItemKind, what: str) -> ItemRef:
    """One item of the change scenario: kinds apart, as a certificate's key and secret
    take the certificate's name."""
    return ItemRef(kind, f"{kind}-{what}")


@dataclass(frozen=True)
class Run:
    """One finished run: its KeyBackup's status, the whole manifest of its snapshot, and
    the Key Vault calls it made, by operation (``POST /keys/*/backup``)."""

    status: dict[str, Any]
    manifest: Manifest
    calls: dict[str, int]

    @property
    def snapshot_id(self) -> str:
        return self.manifest.snapshot_id

    @property
    def last_run(self) -> dict[str, Any]:
        last: dict[str, Any] = self.status["lastRun"]
        return last

    def freshness(self) -> tuple[int, int, int]:
        """How many items the run backed up, refreshed, and carried forward unchanged."""
        last = self.last_run
        return last.get("backedUp", 0), last.get("refreshed", 0), last.get("unchanged", 0)

    def artifact(self, item: ItemRef) -> Artifact:
        return self.manifest.artifact(item.kind, item.name)

    def home(self, item: ItemRef) -> str:
        """The snapshot holding the bytes of the item's backup in this run's snapshot."""
        return self.artifact(item).home(self.snapshot_id)

    def backups(self, kind: ItemKind) -> int:
        return self.calls.get(f"POST /{kind.plural}/*/backup", 0)

    def version_listings(self, kind: ItemKind) -> int:
        return self.calls.get(f"GET /{kind.plural}/*/versions", 0)


@dataclass(frozen=True)
class Changed:
    """A KeyBackup of every key, secret and certificate of a vault, and its runs: the first;
    one after a change to each of CHANGES of every kind and to an older version of each
    OLDER_CHANGED; one under a short fullBackupEvery; one under the default again; one
    that backup-now asked to be full. With each item's versions after the changes, and
    the digest of a backup of each key and secret then."""

    first: Run
    incremental: Run
    by_the_rule: Run
    after_the_rule: Run
    full: Run
    versions: dict[ItemRef, list[str]]
    digests: dict[ItemRef, str]


#: Every item of the change scenario; per kind, CHANGES and two more.
ITEMS = [named(kind, what) for kind in ITEM_KINDS for what in (*CHANGES, UNTOUCHED, OLDER_CHANGED)]


@pytest.fixture(scope="module")
def changed(
    operator: OperatorProcess,
    control_plane: ControlPlane,
    lowkey: Lowkey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Changed]:
    """The runs are shared by the tests below: each looks at what one of them proves."""
    cluster = Cluster(control_plane, f"t-{uuid.uuid4().hex[:10]}")
    control_plane.kubectl("create", "namespace", cluster.namespace)
    client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig)
    )
    api = KubernetesApi(client)
    try:
        with proxied_vault(lowkey, tmp_path_factory.mktemp("incremental")) as proxy:
            vault = Vault(proxy.url, lowkey.certificate)
            yield changed_vault(cluster, proxy, vault, SecretSnapshotStore(api))
    finally:
        api.close()


def changed_vault(
    cluster: Cluster, proxy: FaultProxy, vault: Vault, store: SnapshotStore
) -> Changed:
    kinds = {kind: Items(vault, kind) for kind in ITEM_KINDS}
    for kind, items in kinds.items():
        items.create([item.name for item in ITEMS if item.kind is kind])
        items.create([named(kind, OLDER_CHANGED).name])

    def observed(run: Callable[[], dict[str, Any]]) -> Run:
        before = proxy.counts().by_operation
        status = run()
        after = proxy.counts().by_operation
        calls = {op: n - before.get(op, 0) for op, n in after.items() if n != before.get(op, 0)}
        whole = read_whole_manifest(store, cluster.namespace, CHAIN, status["lastSnapshot"]["id"])
        return Run(status, asyncio.run(whole), calls)

    spec = partial(vault_backup, CHAIN, vault.url, keys=EVERY, secrets=EVERY, certificates=EVERY)
    first = observed(partial(applied, cluster, CHAIN, spec()))
    for kind, items in kinds.items():
        tagged, disabled, older, recreated = (
            named(kind, what).name for what in ("tagged", "disabled", OLDER_CHANGED, "recreated")
        )
        items.update(tagged, items.current(tagged), tags={"owner": "payments"})
        items.update(disabled, items.current(disabled), enabled=False)
        [earlier] = [v for v in items.versions(older) if v != items.current(older)]
        items.update(older, earlier, tags={"retired": "2026-12-07"})
        items.purge(recreated)
        items.create([named(kind, "rotated").name, recreated])
    versions = {item: kinds[item.kind].versions(item.name) for item in ITEMS}
    digests = {
        item: kinds[item.kind].backup_digest(item.name)
        for item in ITEMS
        if item.kind is not CERTIFICATE
    }
    incremental = observed(partial(run_now, cluster, CHAIN, "incremental"))
    # Every backup the next run finds is older than FULL_BACKUP_EVERY by then.
    taken = snapshot_time(incremental.snapshot_id)
    assert taken is not None
    wait_past(taken + FULL_BACKUP_EVERY)
    every = f"{FULL_BACKUP_EVERY.seconds}s"
    by_the_rule = observed(partial(applied, cluster, CHAIN, spec(fullBackupEvery=every)))
    after_the_rule = observed(partial(applied, cluster, CHAIN, spec()))
    full = observed(partial(run_now, cluster, CHAIN, "full-1"))
    return Changed(first, incremental, by_the_rule, after_the_rule, full, versions, digests)


def test_the_first_run_backs_up_every_item_in_a_full_run(changed: Changed) -> None:
    first = changed.first
    assert first.freshness() == (len(ITEMS), 0, 0)
    assert first.last_run["fullRun"]
    assert first.last_run.get("comparedWith") is None
    assert first.last_run["newBytes"] == first.last_run["bytes"]
    assert {first.home(item) for item in ITEMS} == {first.snapshot_id}


@pytest.mark.parametrize("kind", ITEM_KINDS, ids=str)
def test_a_new_version_a_new_tag_a_disabled_version_and_a_recreated_name_are_backed_up_next_run(
    changed: Changed, kind: ItemKind
) -> None:
    incremental = changed.incremental
    for item in (named(kind, what) for what in CHANGES):
        artifact = incremental.artifact(item)
        assert incremental.home(item) == incremental.snapshot_id, item
        assert sorted(artifact.versions) == changed.versions[item], item
        if item in changed.digests:  # the backup of the item as it is now
            assert artifact.sha256 == changed.digests[item], item
    recreated = named(kind, "recreated")
    assert not set(changed.versions[recreated]) & set(changed.first.artifact(recreated).versions)
    assert incremental.backups(kind) == len(CHANGES)
    assert incremental.version_listings(kind) == len(CHANGES)


def test_an_incremental_run_carries_unchanged_items_forward_without_a_key_vault_call(
    changed: Changed,
) -> None:
    first, incremental = changed.first, changed.incremental
    unchanged = [named(kind, what) for kind in ITEM_KINDS for what in (UNTOUCHED, OLDER_CHANGED)]
    assert incremental.freshness() == (len(CHANGES) * len(ITEM_KINDS), 0, len(unchanged))
    assert incremental.last_run.get("fullRun") is None
    assert incremental.last_run["comparedWith"] == first.snapshot_id
    for item in unchanged:
        assert incremental.artifact(item) == first.artifact(item).carried_from(first.snapshot_id)
    assert changed.digests[named(KEY, UNTOUCHED)] == first.artifact(named(KEY, UNTOUCHED)).sha256
    own = [a for a in incremental.manifest.artifacts if not a.stored_in]
    assert incremental.last_run["newBytes"] == sum(a.size for a in own)
    assert incremental.last_run["bytes"] == sum(a.size for a in incremental.manifest.artifacts)
    assert incremental.status["lastSnapshot"]["oldestArtifactTime"] == (
        f"{snapshot_time(first.snapshot_id):%Y-%m-%dT%H:%M:%SZ}"
    )
    assert sum(map(incremental.backups, ITEM_KINDS)) == len(ITEMS) - len(unchanged)


def test_an_older_versions_change_is_missed_incrementally_and_caught_by_the_full_backup_rule(
    changed: Changed,
) -> None:
    older = [named(kind, OLDER_CHANGED) for kind in ITEM_KINDS]
    #: Lowkey's backups of these tell by their digest whether they are of the item now.
    compared = [item for item in older if item.kind is not CERTIFICATE]
    incremental, by_the_rule = changed.incremental, changed.by_the_rule
    for item in older:
        assert incremental.home(item) == changed.first.snapshot_id, item
    for item in compared:  # carried forward, so of the item before its change
        assert incremental.artifact(item).sha256 != changed.digests[item], item

    # Every backup is older than fullBackupEvery: each item is backed up afresh, though
    # none changed in the listing, and the run is still an incremental one.
    assert by_the_rule.freshness() == (0, len(ITEMS), 0)
    assert by_the_rule.last_run.get("fullRun") is None
    assert {by_the_rule.home(item) for item in ITEMS} == {by_the_rule.snapshot_id}
    for item in compared:
        assert by_the_rule.artifact(item).sha256 == changed.digests[item], item

    # Back to the default of 24h: nothing is due, nothing changed, nothing is called for.
    after = changed.after_the_rule
    assert after.freshness() == (0, 0, len(ITEMS))
    assert {after.home(item) for item in ITEMS} == {by_the_rule.snapshot_id}
    assert sum(map(after.backups, ITEM_KINDS)) == 0
    assert sum(map(after.version_listings, ITEM_KINDS)) == 0


def test_a_backup_now_value_starting_with_full_backs_up_every_item_afresh(
    changed: Changed,
) -> None:
    full = changed.full
    assert full.freshness() == (0, len(ITEMS), 0)
    assert "backup-now" in full.last_run["fullRun"]
    assert full.last_run.get("comparedWith") is None
    assert {full.home(item) for item in ITEMS} == {full.snapshot_id}
    assert full.last_run["newBytes"] == full.last_run["bytes"]
    assert [full.backups(kind) for kind in ITEM_KINDS] == [len(ITEMS) // 3] * 3


# --- stores: Secrets and Blob -------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    """Where CHAIN keeps its snapshots: its destination, the store that reads them back,
    and the arguments and environment with which ``kvbackup`` finds them."""

    destination: dict[str, Any]
    store: SnapshotStore
    arguments: list[str]
    env: dict[str, str]

    def verify_with_the_command_line(self, namespace: str, snapshot_id: str) -> int:
        """``kvbackup snapshots verify`` of one snapshot, as a process; how many items it
        verified, once it says none failed."""
        where = ["-n", namespace, "-b", CHAIN, *self.arguments]
        done = kvbackup("-o", "json", "snapshots", "verify", snapshot_id, *where, env=self.env)
        assert done.returncode == 0, (snapshot_id, done.stdout, done.stderr)
        document = json.loads(done.stdout)
        assert document["failed"] == 0, document
        verified_items: int = document["verified"]
        return verified_items


@pytest.fixture(params=["secrets", "blob"])
def storage(
    request: pytest.FixtureRequest, cluster: Cluster, control_plane: ControlPlane
) -> Storage:
    if request.param == "secrets":
        store: SnapshotStore = request.getfixturevalue("secret_store")
        return Storage({"secret": {}}, store, ["--kubeconfig", str(control_plane.kubeconfig)], {})
    azurite = request.getfixturevalue("azurite")
    container = request.getfixturevalue("container").container_name
    return Storage(
        blob_destination(cluster, azurite, container, "backups"),
        request.getfixturevalue("blob_store"),  # under prefix "backups"
        ["--account-url", azurite.blob_endpoint, "--container", container, "--prefix", "backups"],
        {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string()},
    )


#: The keys of the restore and retention scenarios: EC keys, which Lowkey makes at once.
KEYS = ["card-signing", "tokens", "wrapping", "archive", "sessions", "payroll"]


async def test_the_newest_incremental_snapshot_restores_every_key_as_a_full_backup_holds_it(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, storage: Storage
) -> None:
    vault.create_ec_keys(KEYS)
    vault.create_ec_keys(["card-signing", "archive"])  # two versions each
    keys = Items(vault, KEY)
    chain = partial(keybackup, CHAIN, vault.url, destination=storage.destination)
    runs = [applied(cluster, CHAIN, chain())["lastSnapshot"]["id"]]
    vault.create_ec_keys(["card-signing"])
    runs.append(run_now(cluster, CHAIN, "second")["lastSnapshot"]["id"])
    keys.update("tokens", keys.current("tokens"), tags={"owner": "payments"})
    vault.create_ec_keys(["wrapping"])
    runs.append(run_now(cluster, CHAIN, "third")["lastSnapshot"]["id"])
    vault.delete_and_purge("archive")
    vault.create_ec_keys(["archive", "archive"])
    newest = run_now(cluster, CHAIN, "fourth")
    runs.append(newest["lastSnapshot"]["id"])
    assert newest["lastRun"]["unchanged"] == len(KEYS) - 1
    # Taken at the same point: a KeyBackup's first run is a full one.
    cluster.apply(keybackup("full", vault.url, destination=storage.destination))
    cluster.wait_for_phase("keybackup", "full", "Succeeded")

    namespace, store = cluster.namespace, storage.store
    [full_id] = [s.snapshot_id for s in await store.list_snapshots(namespace, "full")]
    full = await read_whole_manifest(store, namespace, "full", full_id)
    whole = await read_whole_manifest(store, namespace, CHAIN, runs[-1])
    # The newest snapshot lists its differences from the third; its bytes are in all four.
    assert (await store.read_manifest(namespace, CHAIN, runs[-1])).base == runs[2]
    assert {artifact.home(runs[-1]) for artifact in whole.artifacts} == set(runs)
    assert {(a.name, a.versions, a.sha256) for a in whole.artifacts} == {
        (a.name, a.versions, a.sha256) for a in full.artifacts
    }
    signatures = {
        (name, version): vault.sign(name, version, MESSAGE)
        for name in KEYS
        for version in vault.version_ids(name)
    }
    before = vault.state()["active"]
    purge_keys(vault, KEYS)

    cluster.apply(keyrestore("back", vault.url, keybackup=CHAIN))
    restored = cluster.wait_for_phase("keyrestore", "back", "Succeeded")

    assert restored["source"]["snapshotId"] == runs[-1]
    assert key_results(restored) == dict.fromkeys(KEYS, "Restored")
    assert vault.state()["active"] == before
    for (name, version), signature in signatures.items():
        assert vault.verifies(name, version, MESSAGE, signature), (name, version)


async def test_retention_over_incremental_snapshots_deletes_only_what_no_kept_snapshot_needs(
    operator: OperatorProcess, cluster: Cluster, vault: VaultUnderTest, storage: Storage
) -> None:
    """Eight keys: a differential manifest lists at most two items. Snapshots S1... go in
    several orders: a middle one before the older one it is based on; none while a kept
    one needs each, however far back; five at once when a full run needs none; by age,
    the newer of two old ones."""
    keys = [f"key-{n}" for n in range(8)]
    vault.create_ec_keys(keys)
    namespace, store = cluster.namespace, storage.store
    chain = partial(keybackup, CHAIN, vault.url, destination=storage.destination)
    taken: list[str] = []

    async def step(status: dict[str, Any], expected: list[tuple[int, list[int]]]) -> list[str]:
        """Checks that the status lists the snapshots ``expected`` (S<n>, and the S<n>s
        holding it), newest first; that storage holds them alone; and that each is whole.
        Returns their ids."""
        taken.append(status["lastSnapshot"]["id"])
        ids = [(taken[n - 1], [taken[h - 1] for h in holders]) for n, holders in expected]
        assert kept(status) == ids
        stored = await store.list_stored(namespace, CHAIN)
        assert {(s.snapshot_id, s.complete) for s in stored} == {(i, True) for i, _ in ids}
        assert set(await verified(store, namespace, CHAIN)) == {i for i, _ in ids}
        return [i for i, _ in ids]

    await step(applied(cluster, CHAIN, chain(retention={"keepLast": 2})), [(1, [])])
    vault.create_ec_keys(["key-1"])
    await step(run_now(cluster, CHAIN, "2"), [(2, []), (1, [])])
    vault.create_ec_keys(["key-1"])
    await step(run_now(cluster, CHAIN, "3"), [(3, []), (2, []), (1, [3, 2])])
    vault.create_ec_keys(["key-2"])  # S4 refers to S3's key-1; S2 is needed by none
    await step(run_now(cluster, CHAIN, "4"), [(4, []), (3, []), (1, [4, 3])])
    vault.create_ec_keys(["key-3", "key-4", "key-5"])  # five differences: S5 is whole
    await step(run_now(cluster, CHAIN, "5"), [(5, []), (4, []), (3, [5, 4]), (1, [5, 4])])
    keep_one = applied(cluster, CHAIN, chain(retention={"keepLast": 1}))
    held = await step(keep_one, [(6, []), (5, [6]), (4, [6]), (3, [6]), (1, [6])])
    for snapshot_id in held:
        assert storage.verify_with_the_command_line(namespace, snapshot_id) == len(keys)

    await step(run_now(cluster, CHAIN, "full-7"), [(7, [])])
    older_than = datetime.timedelta(seconds=2)
    wait_past(completed(cluster) + older_than + datetime.timedelta(seconds=0.2))
    by_age = applied(cluster, CHAIN, chain(retention={"maxAge": "2s"}))
    await step(by_age, [(8, []), (7, [8])])
    vault.create_ec_keys(["key-6"])
    wait_past(completed(cluster) + older_than + datetime.timedelta(seconds=0.2))
    last = await step(run_now(cluster, CHAIN, "9"), [(9, []), (7, [9])])
    for snapshot_id in last:
        assert storage.verify_with_the_command_line(namespace, snapshot_id) == len(keys)


def completed(cluster: Cluster) -> datetime.datetime:
    """When CHAIN's last run completed, as its status (and its snapshot's summary) says:
    to the second, so no later than it did."""
    text = cluster.status("keybackup", CHAIN)["lastRun"]["completionTime"]
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


class KillOnDeletion:
    """Kills an operator (SIGKILL) as soon as the API server has deleted ``count`` Secrets of
    CHAIN's: retention is then under way, or just over with its status not yet written."""

    def __init__(
        self, api: KubernetesApi, namespace: str, count: int, operator: OperatorProcess
    ) -> None:
        selector = f"{KEYBACKUP_LABEL}={CHAIN}"
        listed = api.core.list_namespaced_secret(namespace, label_selector=selector, limit=1)
        assert listed.metadata is not None
        self.killed = threading.Event()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        stream = partial(
            self._watch.stream,
            api.core.list_namespaced_secret,
            namespace,
            label_selector=selector,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=120,
        )
        threading.Thread(target=self._kill, args=(stream, count, operator), daemon=True).start()

    def _kill(
        self, stream: Callable[[], Iterator[dict[str, Any]]], count: int, operator: OperatorProcess
    ) -> None:
        deleted = 0
        for event in stream():
            deleted += event["type"] == "DELETED"
            if deleted == count:
                operator.kill()
                self.killed.set()
                self._watch.stop()  # type: ignore[no-untyped-call]
                return


def test_an_operator_killed_while_retention_deletes_loses_nothing_a_kept_snapshot_needs(
    control_plane: ControlPlane, operators: Operators, vault: VaultUnderTest, api: KubernetesApi
) -> None:
    """keepLast 1 over a chain: each run deletes a snapshot (its manifest Secret first, then
    its other Secrets) or, when full, two. The operator is killed after the first Secret,
    after the last one, and in the middle of two snapshots; a new one resumes the run."""
    [cluster] = new_namespaces(control_plane, "incremental-kill")
    namespace = cluster.namespace
    process = operators.start(namespace)
    keys = [f"key-{n}" for n in range(8)]
    vault.create_ec_keys(keys)
    store = SecretSnapshotStore(api)
    applied(cluster, CHAIN, keybackup(CHAIN, vault.url, retention={"keepLast": 1}))
    vault.create_ec_keys(["key-0"])
    run_now(cluster, CHAIN, "held")  # keeps the first snapshot as its base
    for value, rotated, kill_at in (
        ("after-a-manifest", ["key-0"], 1),
        ("after-a-snapshot", ["key-0"], 3),
        ("full-between-two-snapshots", [], 4),
    ):
        vault.create_ec_keys(rotated)
        next_second()
        killer = KillOnDeletion(api, namespace, kill_at, process)
        ask_backup_now(cluster, CHAIN, value)
        cluster.wait_until(f"the operator is killed in {value}", killer.killed.is_set, timeout=60)
        process = operators.start(namespace)
        status = handled(cluster, CHAIN, value)

        whole = asyncio.run(verified(store, namespace, CHAIN))
        newest = status["lastSnapshot"]["id"]
        assert {a.name for a in whole[newest].artifacts} == set(keys), value
        assert [i for i, _ in kept(status)] == sorted(whole, reverse=True), value
