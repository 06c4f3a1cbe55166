"""The commands: each reads its snapshot or vault through services and adapters, and
returns what it found for ``output`` to print."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kvbackup.adapters.directory import directory_snapshot, export_directory
from kvbackup.api import fields
from kvbackup.api.conditions import timestamp
from kvbackup.api.keyrestore import KeyRestoreSpec, OnConflict, SnapshotSource, Strategy
from kvbackup.cli.output import ProgressFactory, Result, exit_code_of, table
from kvbackup.cli.sources import (
    StorageOptions,
    keybackup_location,
    opened_source,
    opened_storage,
    opened_vault,
)
from kvbackup.config import Settings
from kvbackup.errors import InvalidSpecError
from kvbackup.presentation.key_results import key_entries, key_line, restore_counts, restore_summary
from kvbackup.services.inspection import export_snapshot, list_all_snapshots, verify_snapshot
from kvbackup.services.outcomes import KeyOutcome
from kvbackup.services.ports import utc_now
from kvbackup.services.restore import run_restore


async def list_snapshots(options: StorageOptions, settings: Settings) -> Result:
    location = keybackup_location(options)
    async with opened_storage(options, settings) as storage:
        listed = await list_all_snapshots(storage.snapshots, location.namespace, location.keybackup)
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
        if summary is not None:
            document |= {
                "completionTime": timestamp(summary.completion_time),
                "keys": summary.keys,
                "failedKeys": summary.failed_keys,
                "bytes": summary.total_bytes,
            }
        documents.append(document)
        rows.append(
            [
                snapshot.snapshot_id,
                started,
                timestamp(summary.completion_time) if summary else "-",
                str(summary.keys) if summary else "-",
                str(summary.failed_keys) if summary else "-",
                str(summary.total_bytes) if summary else "-",
                "yes" if snapshot.complete else "no",
            ]
        )
    header = ["SNAPSHOT", "STARTED", "COMPLETED", "KEYS", "FAILED", "BYTES", "COMPLETE"]
    return Result(table(header, rows) if rows else ["no snapshots"], {"snapshots": documents})


def _key_result(
    snapshot_id: str, outcomes: Sequence[KeyOutcome], done: str, **document: object
) -> Result:
    """Per-key lines and entries, as a KeyRestore's status lists them."""
    failed = sum(1 for o in outcomes if o.failed)
    summary = f"{len(outcomes) - failed} {done}, {failed} failed"
    return Result(
        [key_line(o) for o in outcomes] + [summary],
        {
            "snapshot": snapshot_id,
            **document,
            "keys": key_entries(outcomes, None, with_version_ids=True),
            done: len(outcomes) - failed,
            "failed": failed,
        },
        exit_code_of(outcomes),
    )


async def verify(
    options: StorageOptions, snapshot: str, settings: Settings, progress: ProgressFactory | None
) -> Result:
    async with opened_source(options, snapshot, settings) as opened:
        outcomes = await verify_snapshot(
            opened, concurrency=settings.keys_per_run, progress=progress
        )
    return _key_result(opened.manifest.snapshot_id, outcomes, "verified")


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
    return _key_result(opened.manifest.snapshot_id, outcomes, "exported", directory=str(directory))


async def restore(
    directory: Path,
    *,
    vault_url: str,
    keys: list[str] | None,
    strategy: str,
    on_conflict: str,
    purge_deleted: bool,
    dry_run: bool,
    settings: Settings,
    progress: ProgressFactory | None,
) -> Result:
    chosen = fields.enum(Strategy, strategy, Strategy.AUTO, "--strategy")
    if purge_deleted and chosen is Strategy.RECOVER_ONLY:
        raise InvalidSpecError(
            "--purge-deleted-keys cannot be combined with --strategy RecoverOnly"
        )
    checked_url = fields.vault_url(vault_url, "--vault-url")
    checked_keys = None if keys is None else fields.key_names(keys, "--keys")
    with directory_snapshot(directory) as opened:
        manifest = opened.manifest
        spec = KeyRestoreSpec(
            vault_url=checked_url,
            # Where the files came from; the restore reads the files it is given.
            source=SnapshotSource(manifest.keybackup.name, manifest.snapshot_id),
            keys=checked_keys,
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
    counts = {
        k: v for k, v in restore_counts(report.keys, dry_run=dry_run).items() if v is not None
    }
    return Result(
        [key_line(o) for o in report.keys] + [restore_summary(report.keys, dry_run=dry_run)],
        {
            "snapshot": report.snapshot_id,
            "vaultUrl": spec.vault_url,
            "dryRun": dry_run,
            "counts": {name: n for name, n in counts.items() if n is not None},
            "keys": key_entries(report.keys, None, with_version_ids=True),
        },
        exit_code_of(report.keys),
    )
