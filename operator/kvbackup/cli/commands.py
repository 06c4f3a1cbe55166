"""The commands: each reads its snapshot or vault through services and adapters, and
returns what it found for ``output`` to print."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kvbackup.adapters.directory import directory_snapshot, export_directory
from kvbackup.api import fields
from kvbackup.api.conditions import timestamp
from kvbackup.api.keyrestore import KeyRestoreSpec, OnConflict, SnapshotSource, Strategy
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.cli.output import (
    ProgressFactory,
    Result,
    exit_code_of,
    item_documents,
    item_lines,
    table,
)
from kvbackup.cli.sources import (
    StorageOptions,
    keybackup_location,
    opened_source,
    opened_storage,
    opened_vault,
)
from kvbackup.config import Settings
from kvbackup.errors import InvalidSpecError
from kvbackup.presentation.item_results import restore_counts, restore_summary
from kvbackup.services.inspection import (
    ListedSnapshot,
    export_snapshot,
    list_all_snapshots,
    verify_snapshot,
)
from kvbackup.services.outcomes import ItemOutcome
from kvbackup.services.ports import OpenedSnapshot, utc_now
from kvbackup.services.restore import run_restore
from kvbackup.services.snapshot import Manifest


async def list_snapshots(options: StorageOptions, settings: Settings) -> Result:
    """Every snapshot of a KeyBackup, complete or not, newest first."""
    location = keybackup_location(options)
    async with opened_storage(options, settings) as storage:
        listed = await list_all_snapshots(storage.snapshots, location.namespace, location.keybackup)
    return snapshot_listing(listed)


def snapshot_listing(listed: Sequence[ListedSnapshot]) -> Result:
    """Each snapshot with its count of each kind; FAILED counts the items of every kind
    that the run could not back up (the JSON tells them per kind). BYTES are those of every
    item the snapshot holds, NEW BYTES those it stored itself: the rest it refers to in
    earlier snapshots, which stored them (all of BYTES in a snapshot before incremental
    runs)."""
    documents = []
    rows = []
    for snapshot in listed:
        started = timestamp(snapshot.start_time) if snapshot.start_time else ""
        summary = snapshot.summary
        document: dict[str, object] = {
            "id": snapshot.snapshot_id,
            "startTime": started or None,
            "complete": snapshot.complete,
        }
        figures = ["-"] * (len(ITEM_KINDS) + 3)
        if summary is not None:
            document["completionTime"] = timestamp(summary.completion_time)
            for kind in ITEM_KINDS:  # as a summary's JSON names them: keys, failedKeys, ...
                document[kind.plural] = summary.stored(kind)
                document[f"failed{kind.camel}s"] = summary.failed(kind)
            document["bytes"] = summary.total_bytes
            document["newBytes"] = summary.stored_bytes
            figures = [
                *(str(summary.stored(kind)) for kind in ITEM_KINDS),
                str(summary.failed_items),
                str(summary.total_bytes),
                str(summary.stored_bytes),
            ]
        documents.append(document)
        rows.append(
            [
                snapshot.snapshot_id,
                started,
                timestamp(summary.completion_time) if summary else "-",
                *figures,
                "yes" if snapshot.complete else "no",
            ]
        )
    header = [
        "SNAPSHOT",
        "STARTED",
        "COMPLETED",
        *(kind.plural.upper() for kind in ITEM_KINDS),
        "FAILED",
        "BYTES",
        "NEW BYTES",
        "COMPLETE",
    ]
    return Result(table(header, rows) if rows else ["no snapshots"], {"snapshots": documents})


def _item_result(
    manifest: Manifest, outcomes: Sequence[ItemOutcome], done: str, **document: object
) -> Result:
    """Per-item lines and entries, as a KeyRestore's status lists them."""
    failed = sum(1 for o in outcomes if o.failed)
    summary = f"{len(outcomes) - failed} {done}, {failed} failed"
    return Result(
        [*item_lines(outcomes, manifest), summary],
        {
            "snapshot": manifest.snapshot_id,
            **document,
            **item_documents(outcomes),
            done: len(outcomes) - failed,
            "failed": failed,
        },
        exit_code_of(outcomes),
    )


async def verify(
    options: StorageOptions, snapshot: str, settings: Settings, progress: ProgressFactory | None
) -> Result:
    async with opened_source(options, snapshot, settings) as opened:
        return await _verified(opened, settings, progress)


async def verify_directory(
    directory: Path, settings: Settings, progress: ProgressFactory | None
) -> Result:
    """An export's files against its manifest, e.g. after copying them elsewhere."""
    with directory_snapshot(directory) as opened:
        return await _verified(opened, settings, progress, directory=str(directory))


async def _verified(
    opened: OpenedSnapshot,
    settings: Settings,
    progress: ProgressFactory | None,
    **document: object,
) -> Result:
    outcomes = await verify_snapshot(opened, concurrency=settings.keys_per_run, progress=progress)
    return _item_result(opened.manifest, outcomes, "verified", **document)


async def export(
    options: StorageOptions,
    snapshot: str,
    directory: Path,
    settings: Settings,
    progress: ProgressFactory | None,
) -> Result:
    async with opened_source(options, snapshot, settings) as opened:
        with export_directory(directory) as target:
            outcomes = await export_snapshot(
                opened, target, concurrency=settings.keys_per_run, progress=progress
            )
    return _item_result(opened.manifest, outcomes, "exported", directory=str(directory))


def purge_option(kind: ItemKind) -> str:
    """The switch that purges soft-deleted items of ``kind`` before restoring them."""
    return f"--purge-deleted-{kind.plural}"


async def restore(
    directory: Path,
    *,
    vault_url: str,
    names: Mapping[ItemKind, Sequence[str]],
    strategy: str,
    on_conflict: str,
    purge_deleted: frozenset[ItemKind],
    dry_run: bool,
    settings: Settings,
    progress: ProgressFactory | None,
) -> Result:
    """The exported snapshot's items, or only the ``names`` given per kind (none given:
    every item of every kind), brought back as a KeyRestore does."""
    chosen = fields.enum(Strategy, strategy, Strategy.AUTO, "--strategy")
    if purge_deleted and chosen is Strategy.RECOVER_ONLY:
        switches = ", ".join(purge_option(kind) for kind in ITEM_KINDS if kind in purge_deleted)
        raise InvalidSpecError(f"{switches} cannot be combined with --strategy RecoverOnly")
    checked_url = fields.vault_url(vault_url, "--vault-url")
    checked_names = {
        kind: fields.item_names(list(names[kind]), f"--{kind.plural}", kind)
        for kind in ITEM_KINDS
        if kind in names
    }
    with directory_snapshot(directory) as opened:
        manifest = opened.manifest
        spec = KeyRestoreSpec(
            vault_url=checked_url,
            # Where the files came from; the restore reads the files it is given.
            source=SnapshotSource(manifest.keybackup.name, manifest.snapshot_id),
            items=checked_names or None,
            strategy=chosen,
            on_conflict=fields.enum(OnConflict, on_conflict, OnConflict.SKIP, "--on-conflict"),
            purge_deleted=purge_deleted,
            dry_run=dry_run,
        )
        async with opened_vault(spec.vault_url, settings) as vault:
            report = await run_restore(
                spec,
                opened,
                vault,
                clock=utc_now,
                concurrency=settings.keys_per_run,
                progress=progress,
            )
    outcomes = report.outcomes
    counts = restore_counts(outcomes, dry_run=dry_run)
    return Result(
        [*item_lines(outcomes, manifest), restore_summary(outcomes, dry_run=dry_run)],
        {
            "snapshot": report.snapshot_id,
            "vaultUrl": spec.vault_url,
            "dryRun": dry_run,
            "counts": _given(counts),
            **item_documents(outcomes),
        },
        exit_code_of(outcomes),
    )


def _given(counts: Mapping[str, Any]) -> dict[str, Any]:
    """The counts of the restore's mode and of the kinds it handled: a status's None
    (which removes a field from it) means nothing to a script, and is left out."""
    return {
        name: _given(value) if isinstance(value, Mapping) else value
        for name, value in counts.items()
        if value is not None
    }
