"""KeyRestore: one restore per spec generation, run by a long-lived loop per object."""

from __future__ import annotations

from functools import partial
from typing import Any

import kopf

from kvbackup.adapters.metrics import DRY_RUN, RESTORE
from kvbackup.api import GROUP, KEYRESTORE_PLURAL, VERSION
from kvbackup.api.keyrestore import parse_spec
from kvbackup.handlers.loops import Loops, Watched
from kvbackup.handlers.reporting import RunLog, post, progress_of, publish
from kvbackup.presentation import keyrestore_status as status
from kvbackup.runtime import Runtime
from kvbackup.services.journal import CarriedJournal, RestoreJournal
from kvbackup.services.restore import opened_snapshot, run_restore
from kvbackup.services.retry_policy import Judge, Retries


@kopf.on.event(GROUP, VERSION, KEYRESTORE_PLURAL)
async def notice_change(type: str, body: kopf.Body, uid: str, memo: kopf.Memo, **_: Any) -> None:
    loops: Loops = memo.loops
    await loops.on_event(type, body, uid, partial(keep_restored, memo.runtime))


async def keep_restored(runtime: Runtime, watched: Watched) -> None:
    """Restores each spec generation once, retrying temporary failures with backoff. What
    is done lives in status, so a restarted operator or a new leader never redoes it."""
    namespace, name = watched.body.meta.namespace, watched.body.meta.name
    retries: Retries[int] = Retries(runtime.settings, f"{namespace}/{name}: restore failed")
    while True:
        watched.wakeup.clear()
        body = watched.body
        generation = int(body.meta.get("generation") or 0)
        finished = status.read_keyrestore_status(body.status).finished(generation)
        request = None if finished else generation
        if await retries.attempt_if_due(request, partial(_attempt, runtime, watched)):
            continue
        await watched.changed(retries.wait_seconds(request, None))


def _journal_for(watched: Watched, generation: int) -> RestoreJournal:
    recorded = status.read_keyrestore_status(watched.body.status)
    watched.carried = CarriedJournal.of(watched.carried, generation, recorded)
    return watched.carried.journal


async def _attempt(
    runtime: Runtime, watched: Watched, generation: int, judge: Judge
) -> float | None:
    """One attempt at restoring ``generation``; the delay before the next one, or None
    when this generation is done."""
    body = watched.body
    namespace = body.meta.namespace or ""
    existing = dict(body.status)
    write = partial(publish, runtime.kubernetes, KEYRESTORE_PLURAL, body)
    log = RunLog("restore", body)
    journal = _journal_for(watched, generation)
    # A dry run changes nothing: it is counted apart, so restores count what was restored.
    with runtime.metrics.run(DRY_RUN if body.spec.get("dryRun") is True else RESTORE) as run:
        try:
            spec = parse_spec(body.spec)
            # A dry run changed nothing, so an interrupted one is simply done again.
            resumed = not spec.dry_run and (
                journal.begun or status.read_keyrestore_status(existing).resumes(generation)
            )
            await write(
                status.restore_started(existing, generation, runtime.clock(), dry_run=spec.dry_run)
            )
            what = "dry run of generation" if spec.dry_run else "generation"
            log.started(f"{what} {generation}" + (", resuming" if resumed else ""))
            async with opened_snapshot(runtime, namespace, spec.source) as snapshot:
                post(
                    body,
                    status.restore_source_opened(
                        snapshot.manifest.snapshot_id, dry_run=spec.dry_run
                    ),
                )
                async with runtime.vault(
                    namespace, spec.vault_url, spec.credentials_secret
                ) as vault:
                    report = await run_restore(
                        spec,
                        snapshot,
                        vault,
                        clock=runtime.clock,
                        resumed=resumed,
                        journal=journal,
                        concurrency=runtime.settings.keys_per_run,
                        progress=progress_of(
                            runtime.kubernetes,
                            KEYRESTORE_PLURAL,
                            body,
                            partial(status.restore_progress, journal=journal),
                        ),
                    )
        except Exception as failure:
            run.failed()
            verdict = judge(failure)
            log.failed(verdict)
            now = runtime.clock()
            await write(status.restore_failed(existing, verdict, generation, now, journal))
            return verdict.retry_in
        keybackup = snapshot.manifest.keybackup.name
        items_limit = runtime.settings.status_keys_limit
        finished = status.restore_finished(existing, report, keybackup, generation, items_limit)
        await write(finished)
        # Logged and counted once told: an attempt whose end could not be written is
        # attempted again.
        log.finished(finished)
        run.finished(report.phase.value, report.outcomes)
    watched.carried = None
    return None
