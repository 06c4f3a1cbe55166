"""KeyBackup: one long-lived loop per object that runs a backup whenever one is due."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import kopf

from kvbackup.adapters.metrics import BACKUP
from kvbackup.api import GROUP, KEYBACKUP_PLURAL, VERSION
from kvbackup.api.keybackup import KeyBackupRef, parse_spec
from kvbackup.errors import KvBackupError
from kvbackup.handlers.loops import Loops, Watched
from kvbackup.handlers.reporting import RunLog, progress_of, publish
from kvbackup.handlers.verifying import attempt_verification
from kvbackup.presentation import keybackup_status as status
from kvbackup.presentation.gauges import keybackup_readings
from kvbackup.runtime import Runtime
from kvbackup.services.backup import run_backup
from kvbackup.services.copies import write_copies
from kvbackup.services.retry_policy import Judge, Retries
from kvbackup.services.triggers import (
    Plan,
    RunRequest,
    plan_run,
    plan_verification,
    snapshot_id_for,
)

logger = logging.getLogger(__name__)


@kopf.on.event(GROUP, VERSION, KEYBACKUP_PLURAL)
async def notice_change(type: str, body: kopf.Body, uid: str, memo: kopf.Memo, **_: Any) -> None:
    loops: Loops = memo.loops
    await loops.on_event(type, body, uid, partial(keep_backed_up, memo.runtime))
    if type == "DELETED" or body.meta.get("deletionTimestamp"):
        memo.runtime.metrics.forget_keybackup(body.meta.namespace or "", body.meta.name or "")


async def keep_backed_up(runtime: Runtime, watched: Watched) -> None:
    """Runs a backup whenever one is due, for as long as the object exists."""
    namespace, name = watched.body.meta.namespace, watched.body.meta.name
    retries: Retries[RunRequest] = Retries(runtime.settings, f"{namespace}/{name}: run failed")
    checks: Retries[RunRequest] = Retries(
        runtime.settings, f"{namespace}/{name}: verification failed"
    )
    while True:
        watched.wakeup.clear()
        body, moment = watched.body, runtime.clock()
        seen = status.read_keybackup_status(body.status)
        plan = plan_run(
            body.spec,
            seen,
            body.meta,
            moment,
            min_schedule_interval=runtime.settings.min_schedule_interval,
        )
        runtime.metrics.observe_keybackup(
            body.meta.namespace or "", body.meta.name or "", keybackup_readings(seen, plan)
        )
        if await retries.attempt_if_due(plan.request, partial(_attempt, runtime, body, plan)):
            continue
        verification = plan_verification(plan.spec, seen, body.meta, moment)
        if await checks.attempt_if_due(
            verification.request, partial(attempt_verification, runtime, body, verification)
        ):
            continue
        if plan.spec and plan.spec.schedule and not retries.backing_off_from(plan.request):
            await _acknowledge_schedule(runtime, body, plan)
        waits = (
            retries.wait_seconds(plan.request, plan.seconds_to_next_slot(moment)),
            checks.wait_seconds(verification.request, verification.seconds_to_next_slot(moment)),
        )
        await watched.changed(min((w for w in waits if w is not None), default=None))


async def _acknowledge_schedule(runtime: Runtime, body: kopf.Body, plan: Plan) -> None:
    generation = int(body.meta.get("generation") or 0)
    patch = status.schedule_acknowledged(body.status, generation, plan.next_slot, runtime.clock())
    if patch is None:
        return
    try:
        await runtime.kubernetes.patch_status(
            KEYBACKUP_PLURAL, body.meta.namespace or "", body.meta.name or "", patch
        )
    except KvBackupError as error:  # written again at the next wake-up
        logger.warning("%s/%s: %s", body.meta.namespace, body.meta.name, error)


async def _attempt(
    runtime: Runtime, body: kopf.Body, plan: Plan, request: RunRequest, judge: Judge
) -> float | None:
    """One attempt at ``request``; the delay before the next one, or None when done."""
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    existing, moment = dict(body.status), runtime.clock()
    snapshot_id = snapshot_id_for(status.read_keybackup_status(existing), request, moment)
    write = partial(publish, runtime.kubernetes, KEYBACKUP_PLURAL, body)
    log = RunLog("backup", body)
    with runtime.metrics.run(BACKUP) as run:
        try:
            spec = parse_spec(
                body.spec, min_schedule_interval=runtime.settings.min_schedule_interval
            )
            await write(status.backup_started(existing, request, snapshot_id, moment))
            log.started(f"into snapshot {snapshot_id}")
            async with (
                runtime.store(namespace, spec.destination) as store,
                runtime.vault(namespace, spec.vault_url, spec.credentials_secret) as vault,
            ):
                report = await run_backup(
                    spec,
                    KeyBackupRef(namespace, name, body.meta.uid or ""),
                    snapshot_id,
                    vault,
                    store,
                    clock=runtime.clock,
                    incomplete_grace=runtime.settings.incomplete_snapshot_grace,
                    concurrency=runtime.settings.keys_per_run,
                    full_requested=request.asks_full_run,
                    progress=progress_of(
                        runtime.kubernetes, KEYBACKUP_PLURAL, body, status.backup_progress
                    ),
                )
                copies = await write_copies(
                    report,
                    spec.copies,
                    store,
                    runtime,
                    clock=runtime.clock,
                    incomplete_grace=runtime.settings.incomplete_snapshot_grace,
                    concurrency=runtime.settings.keys_per_run,
                )
        except Exception as failure:
            run.failed()
            verdict = judge(failure)
            log.failed(verdict)
            await write(status.backup_failed(existing, verdict, request, runtime.clock()))
            return verdict.retry_in
        run.finished(report.phase.value, report.outcomes)
        items_limit, next_slot = runtime.settings.status_keys_limit, plan.next_slot_after(request)
        finished = status.backup_finished(existing, report, request, items_limit, next_slot, copies)
        log.finished(finished)
        await write(finished)
    return None
