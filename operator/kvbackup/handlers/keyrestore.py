"""KeyRestore: one restore per spec generation."""

from __future__ import annotations

from typing import Any

import kopf

from kvbackup.api import GROUP, KEYRESTORE_PLURAL, VERSION, status
from kvbackup.api.conditions import Phase, now
from kvbackup.api.keyrestore import parse_spec
from kvbackup.errors import KvBackupError
from kvbackup.handlers.outcomes import as_kopf_error, retry_delay
from kvbackup.runtime import Runtime
from kvbackup.services.restore import run_restore

_FINISHED = {Phase.SUCCEEDED.value, Phase.PARTIALLY_FAILED.value}
_EVENTS = {
    Phase.SUCCEEDED: ("Normal", "RestoreSucceeded"),
    Phase.PARTIALLY_FAILED: ("Warning", "RestorePartiallyFailed"),
    Phase.FAILED: ("Warning", "RestoreFailed"),
}


@kopf.on.create(GROUP, VERSION, KEYRESTORE_PLURAL)
@kopf.on.update(GROUP, VERSION, KEYRESTORE_PLURAL, field="spec")
async def restore_keys(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    generation = int(body.meta.get("generation") or 0)
    existing = dict(body.status)
    if existing.get("observedGeneration") == generation and existing.get("phase") in _FINISHED:
        return  # this generation was restored already; a restart must not redo it

    async def write(patch: dict[str, Any]) -> None:
        await runtime.kubernetes.patch_status(KEYRESTORE_PLURAL, namespace, name, patch)

    try:
        spec = parse_spec(body.spec)
        resumed = status.restore_resumes(existing, generation)
        await write(status.restore_started(existing, generation, now()))
        async with runtime.opened_snapshot(namespace, spec.source) as snapshot:
            manifest = snapshot.manifest
            kopf.info(
                body,
                reason="RestoreStarted",
                message=f"restoring from snapshot {manifest.snapshot_id}",
            )
            async with runtime.vault(namespace, spec.vault_url, spec.credentials_secret) as vault:
                report = await run_restore(spec, snapshot, vault, resumed=resumed)
    except KvBackupError as error:
        delay = retry_delay(error, retry, runtime.settings)
        failed = status.run_failed(existing, error, generation, now(), delay)
        if delay is None:
            failed |= {"observedGeneration": generation, "activeRun": None}
        await write(failed)
        kopf.warn(body, reason=error.reason, message=error.message)
        raise as_kopf_error(error, delay) from error
    patch = status.restore_finished(
        existing, report, manifest.keybackup.name, generation, runtime.settings.status_keys_limit
    )
    await write(patch)
    kind, reason = _EVENTS[report.phase]
    kopf.event(body, type=kind, reason=reason, message=patch["conditions"][-1]["message"])
