"""KeyBackup: one long-lived loop per object that runs a backup whenever one is due."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from kvbackup.api import GROUP, KEYBACKUP_PLURAL, VERSION, status
from kvbackup.api.conditions import Phase, now
from kvbackup.api.keybackup import KeyBackupRef, backup_now_token, parse_spec
from kvbackup.errors import KvBackupError
from kvbackup.handlers.outcomes import retry_delay
from kvbackup.runtime import Runtime
from kvbackup.services.backup import run_backup
from kvbackup.services.triggers import run_is_due, snapshot_id_for

_EVENTS = {
    Phase.SUCCEEDED: ("Normal", "BackupSucceeded"),
    Phase.PARTIALLY_FAILED: ("Warning", "BackupPartiallyFailed"),
    Phase.FAILED: ("Warning", "BackupFailed"),
}


def _wakeup(memo: kopf.Memo) -> asyncio.Event:
    """The per-object signal that something changed; memo is per object in kopf."""
    event: asyncio.Event | None = memo.get("wakeup")
    if event is None:
        event = memo["wakeup"] = asyncio.Event()
    return event


@kopf.on.event(GROUP, VERSION, KEYBACKUP_PLURAL)
def notice_change(memo: kopf.Memo, **_: Any) -> None:
    _wakeup(memo).set()


@kopf.daemon(GROUP, VERSION, KEYBACKUP_PLURAL, cancellation_timeout=10.0)
async def keep_backed_up(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    runtime: Runtime = memo.runtime
    wakeup = _wakeup(memo)
    loop = asyncio.get_running_loop()
    handled: tuple[int, str | None] | None = None
    backing_off: tuple[int, str | None] | None = None
    retry_at = 0.0
    failures = 0
    while not stopped:
        wakeup.clear()
        generation = int(body.meta.get("generation") or 0)
        trigger = backup_now_token(body.meta.annotations)
        wanted = (generation, trigger)
        delay: float | None = None
        if wanted != handled and run_is_due(body.status, generation, trigger):
            if wanted == backing_off and loop.time() < retry_at:
                # Our own status writes wake us too; only a new spec or trigger cuts a
                # backoff short.
                delay = retry_at - loop.time()
            else:
                failures = failures if wanted == backing_off else 0
                delay = await _run(runtime, body, generation, trigger, failures)
                if delay is None:
                    handled, backing_off, failures = wanted, None, 0
                else:
                    backing_off, retry_at, failures = wanted, loop.time() + delay, failures + 1
        await _wait(wakeup, stopped, delay_seconds=delay)


async def _run(
    runtime: Runtime, body: kopf.Body, generation: int, trigger: str | None, failures: int
) -> float | None:
    """One attempt; returns the retry delay after a temporary failure, else None."""
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    existing = dict(body.status)
    moment = now()
    snapshot_id = snapshot_id_for(existing, generation, trigger, moment)

    async def write(patch: dict[str, Any]) -> None:
        await runtime.kubernetes.patch_status(KEYBACKUP_PLURAL, namespace, name, patch)

    try:
        spec = parse_spec(body.spec)
        await write(status.backup_started(existing, generation, snapshot_id, trigger, moment))
        kopf.info(body, reason="BackupStarted", message=f"backing up into {snapshot_id}")
        ref = KeyBackupRef(namespace, name, body.meta.uid or "")
        async with runtime.vault(namespace, spec.vault_url, spec.credentials_secret) as vault:
            report = await run_backup(spec, ref, snapshot_id, vault, runtime.store)
    except KvBackupError as error:
        delay = retry_delay(error, failures, runtime.settings)
        if delay is None:
            await write(status.backup_given_up(existing, error, generation, trigger, now()))
        else:
            await write(status.run_failed(existing, error, generation, now(), delay))
        kopf.warn(body, reason=error.reason, message=error.message)
        return delay
    patch = status.backup_finished(
        existing, report, generation, trigger, runtime.settings.status_keys_limit
    )
    await write(patch)
    kind, reason = _EVENTS[report.phase]
    kopf.event(body, type=kind, reason=reason, message=patch["conditions"][-1]["message"])
    return None


async def _wait(
    wakeup: asyncio.Event, stopped: kopf.DaemonStopped, *, delay_seconds: float | None
) -> None:
    """Sleep until the object changes, the daemon stops, or the retry delay passes."""
    waiters = [asyncio.ensure_future(wakeup.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waiters, timeout=delay_seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
