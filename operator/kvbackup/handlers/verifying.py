"""A KeyBackup's verification: every kept snapshot of every copy read back and checked,
and the latest compared with the vault, read only; run by the object's loop
(handlers/keybackup.py) when ``spec.verify`` or kvbackup.io/verify-now asks."""

from __future__ import annotations

from contextlib import AsyncExitStack
from functools import partial

import kopf

from kvbackup.api import KEYBACKUP_PLURAL
from kvbackup.api.keybackup import KeyBackupRef, parse_spec
from kvbackup.handlers.reporting import RunLog, publish
from kvbackup.presentation import verification_status as status
from kvbackup.runtime import Runtime
from kvbackup.services.retry_policy import Judge
from kvbackup.services.triggers import RunRequest, VerificationPlan
from kvbackup.services.verification import NamedStore, verify


async def attempt_verification(
    runtime: Runtime, body: kopf.Body, plan: VerificationPlan, request: RunRequest, judge: Judge
) -> float | None:
    """One attempt at the verification ``request`` asks for; the delay before the next
    attempt, or None when done."""
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    write = partial(publish, runtime.kubernetes, KEYBACKUP_PLURAL, body)
    log = RunLog("verification", body)
    seen = status.read_verification(body.status.get("verification"))
    try:
        spec = parse_spec(body.spec, min_schedule_interval=runtime.settings.min_schedule_interval)
        log.started(f"of {len(spec.copies) + 1} copy(ies)")
        async with AsyncExitStack() as stack:
            copies = [
                NamedStore(copy, await stack.enter_async_context(runtime.store(namespace, where)))
                for copy, where in spec.destinations().items()
            ]
            # Reads only: verification is given the vault's reads, and nothing else.
            vault = await stack.enter_async_context(
                runtime.vault(namespace, spec.vault_url, spec.credentials_secret)
            )
            report = await verify(
                spec,
                KeyBackupRef(namespace, name, body.meta.uid or ""),
                copies,
                vault,
                clock=runtime.clock,
                concurrency=runtime.settings.keys_per_run,
            )
    except Exception as failure:
        verdict = judge(failure)
        log.failed(verdict)
        await write(status.verification_failed(verdict, request, runtime.clock()))
        return verdict.retry_in
    finished = status.verification_finished(seen, report, request, plan.next_slot)
    log.finished(finished)
    await write(finished)
    return None
