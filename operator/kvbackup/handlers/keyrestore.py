"""KeyRestore: one restore per spec generation."""

from __future__ import annotations

from functools import partial
from typing import Any

import kopf

from kvbackup.adapters.metrics import DRY_RUN, RESTORE
from kvbackup.api import GROUP, KEYRESTORE_PLURAL, VERSION
from kvbackup.api.keyrestore import parse_spec
from kvbackup.handlers.outcomes import RunLog, as_kopf_error, post, progress_of, publish
from kvbackup.presentation import status
from kvbackup.presentation.verdicts import judge
from kvbackup.runtime import Runtime
from kvbackup.services.restore import opened_snapshot, run_restore


@kopf.on.create(GROUP, VERSION, KEYRESTORE_PLURAL)
@kopf.on.update(GROUP, VERSION, KEYRESTORE_PLURAL, field="spec")
async def restore_keys(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    namespace = body.meta.namespace or ""
    generation = int(body.meta.get("generation") or 0)
    existing = dict(body.status)
    if status.restore_finished_already(existing, generation):
        return
    write = partial(publish, runtime.kubernetes, KEYRESTORE_PLURAL, body)
    log = RunLog("restore", body)
    journal = status.restore_journal(existing, generation)
    # A dry run changes nothing: it is counted apart, so restores count what was restored.
    with runtime.metrics.run(DRY_RUN if body.spec.get("dryRun") is True else RESTORE) as run:
        try:
            spec = parse_spec(body.spec)
            # A dry run changed nothing, so an interrupted one is simply done again.
            resumed = not spec.dry_run and status.restore_resumes(existing, generation)
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
                        concurrency=runtime.settings.max_concurrency,
                        progress=progress_of(
                            runtime.kubernetes,
                            KEYRESTORE_PLURAL,
                            body,
                            partial(status.restore_progress, journal=journal),
                        ),
                    )
        except Exception as failure:
            run.failed()
            verdict = judge(failure, retry, runtime.settings)
            log.failed(verdict)
            now = runtime.clock()
            await write(status.restore_failed(existing, verdict, generation, now, journal))
            raise as_kopf_error(verdict) from failure
        run.finished(report.phase.value, report.keys)
        keybackup = snapshot.manifest.keybackup.name
        keys_limit = runtime.settings.status_keys_limit
        finished = status.restore_finished(existing, report, keybackup, generation, keys_limit)
        log.finished(finished)
        await write(finished)
