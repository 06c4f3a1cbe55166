"""A run's keys flow through a bounded pipeline: memory follows the concurrency limit,
not the size of the vault."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator, Iterator

from kvbackup.api.keybackup import ItemSelector, KeyBackupRef
from kvbackup.api.kinds import ItemKind, ItemRef
from kvbackup.services.backup import run_backup
from kvbackup.services.outcomes import ItemOutcome, ItemResult
from kvbackup.services.ports import ItemInfo, ItemVersions, StoredSnapshot
from kvbackup.services.snapshot import Artifact, ChangeRecord, Manifest, SnapshotSummary
from kvbackup.services.workers import for_each_item
from tests.unit.fakes import REF, SNAPSHOT_ID, UPDATED, backup_spec, clock


async def test_no_more_keys_than_the_concurrency_limit_are_in_flight() -> None:
    in_flight, peak = 0, 0

    async def work(item: ItemRef) -> ItemOutcome:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        return ItemOutcome(item.name, ItemResult.SUCCEEDED)

    keys = [ItemRef(ItemKind.KEY, f"k{i}") for i in range(200)]
    outcomes = await for_each_item(keys, work, concurrency=7)

    assert peak == 7
    assert [o.name for o in outcomes] == [f"k{i}" for i in range(200)]


async def test_a_key_is_taken_from_the_list_only_when_a_worker_is_free_for_it() -> None:
    taken = 0
    release = asyncio.Event()

    def names() -> Iterator[ItemRef]:
        nonlocal taken
        for index in range(1000):
            taken += 1
            yield ItemRef(ItemKind.KEY, f"k{index}")

    async def work(item: ItemRef) -> ItemOutcome:
        await release.wait()
        return ItemOutcome(item.name, ItemResult.SUCCEEDED)

    run = asyncio.create_task(for_each_item(names(), work, concurrency=4))
    await asyncio.sleep(0.01)
    assert taken == 4
    release.set()
    assert len(await run) == 1000


async def test_keys_of_an_asynchronous_listing_are_worked_on_before_the_listing_ends() -> None:
    first_done = asyncio.Event()

    async def listing() -> AsyncIterator[ItemRef]:
        yield ItemRef(ItemKind.KEY, "first")
        # The next page comes only once the first key is through: a pipeline that
        # waited for the whole listing first would time out here.
        await asyncio.wait_for(first_done.wait(), timeout=5)
        yield ItemRef(ItemKind.KEY, "second")

    async def work(item: ItemRef) -> ItemOutcome:
        if item.name == "first":
            first_done.set()
        return ItemOutcome(item.name, ItemResult.SUCCEEDED)

    outcomes = await for_each_item(listing(), work, concurrency=4)

    assert [o.name for o in outcomes] == ["first", "second"]


async def test_a_selector_backup_stores_keys_while_the_vault_is_still_listing() -> None:
    class SlowListing(ManyKeys):
        stored_while_listing = 0

        async def list_items(self, kind: ItemKind) -> AsyncIterator[ItemInfo]:
            for page in range(4):
                for index in range(25):
                    yield ItemInfo(f"key-{page}-{index:02d}")
                await asyncio.sleep(0.01)  # the next page's round trip
            self.stored_while_listing = store.stored

    vault, store = SlowListing(100), Discarding()
    report = await run_backup(
        backup_spec(selector=ItemSelector()),
        REF,
        SNAPSHOT_ID,
        vault,  # type: ignore[arg-type]
        store,  # type: ignore[arg-type]
        clock=clock,
        concurrency=4,
    )

    assert len(report.outcomes) == 100
    assert vault.stored_while_listing >= 50


class ManyKeys:
    """A vault of ``count`` one-version keys whose backups are a few bytes each."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def list_items(self, kind: ItemKind) -> AsyncIterator[ItemInfo]:
        for index in range(self.count):
            change = ChangeRecord.of(UPDATED, [index])
            yield ItemInfo(f"{kind}-{index:06d}", change=change)

    async def list_versions(self, kind: ItemKind, name: str) -> ItemVersions:
        return ItemVersions(("0123456789abcdef0123456789abcdef",))

    async def backup(self, kind: ItemKind, name: str) -> bytes:
        return b"backup of " + name.encode()


class Discarding:
    """A store that keeps nothing but a count, so only the run's own memory is measured."""

    def __init__(self) -> None:
        self.stored = 0

    async def write_artifact(
        self,
        keybackup: KeyBackupRef,
        snapshot_id: str,
        kind: ItemKind,
        name: str,
        data: bytes,
        versions: tuple[str, ...] = (),
    ) -> str:
        self.stored += 1
        await asyncio.sleep(0)
        return ""

    async def resumable(self, keybackup: KeyBackupRef, snapshot_id: str) -> list[Artifact]:
        return []

    async def write_manifest(self, manifest: Manifest, summary: SnapshotSummary) -> None:
        manifest.to_json()

    async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
        return []

    async def list_snapshots(self, namespace: str, keybackup: str) -> list[SnapshotSummary]:
        return []

    def location(self, namespace: str, keybackup: str, snapshot_id: str) -> str:
        return "nowhere"


async def peak_bytes_backing_up(count: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        await run_backup(
            backup_spec(selector=ItemSelector()),
            REF,
            SNAPSHOT_ID,
            ManyKeys(count),  # type: ignore[arg-type]
            Discarding(),  # type: ignore[arg-type]
            clock=clock,
            concurrency=16,
        )
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_the_memory_a_backup_run_needs_per_key_stays_small() -> None:
    small, large = await peak_bytes_backing_up(500), await peak_bytes_backing_up(5500)

    per_key = (large - small) / 5000
    # What a run must keep per key until its manifest is written: its name, outcome,
    # change record and manifest entry, about 1,150 bytes here. Building the manifest as a
    # document of dicts before its text cost some 700 more; a task per key created up
    # front, more still.
    assert per_key < 1300, f"{per_key:.0f} bytes per key"
