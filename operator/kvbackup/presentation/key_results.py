"""Per-key outcomes as users read them, in a status and on the command line alike: each
key's entry, the counts of a restore and the sentence that sums them up."""

from __future__ import annotations

from collections.abc import Sequence

from kvbackup.api.statuses import KeyEntry, RestoreCounts
from kvbackup.services.outcomes import KeyOutcome, KeyResult

#: How many (newest) version ids an entry lists.
VERSION_IDS_PER_KEY = 20


def key_entry(outcome: KeyOutcome, *, with_version_ids: bool) -> KeyEntry:
    entry: KeyEntry = {"name": outcome.name, "result": outcome.result.value}
    entry["versionCount"] = len(outcome.versions)
    if with_version_ids:
        # Bounded: a key rotated daily for years has thousands of versions.
        entry["versions"] = list(outcome.versions[-VERSION_IDS_PER_KEY:])
    if outcome.sha256:
        entry["sha256"] = outcome.sha256
        entry["size"] = outcome.size
    if outcome.reason:
        entry["reason"] = outcome.reason
    if outcome.message:
        entry["message"] = outcome.message
    return entry


def key_entries(
    outcomes: Sequence[KeyOutcome], limit: int | None, *, with_version_ids: bool
) -> list[KeyEntry]:
    """Failures first, so a bounded list never hides a failed key behind successes."""
    ordered = sorted(outcomes, key=lambda o: (not o.failed, o.name.lower()))
    return [key_entry(o, with_version_ids=with_version_ids) for o in ordered[:limit]]


def count(outcomes: Sequence[KeyOutcome], result: KeyResult) -> int:
    return sum(1 for outcome in outcomes if outcome.result is result)


def restore_counts(outcomes: Sequence[KeyOutcome], *, dry_run: bool) -> RestoreCounts:
    """A restore's counts, or a dry run's; the other kind's are None, so that a merge
    patch removes them from a status that held them."""

    def counted(result: KeyResult, here: bool) -> int | None:
        return count(outcomes, result) if here else None

    real = not dry_run
    return {
        "restored": counted(KeyResult.RESTORED, real),
        "recovered": counted(KeyResult.RECOVERED, real),
        "skipped": counted(KeyResult.SKIPPED, real),
        "failed": counted(KeyResult.FAILED, real),
        "wouldRestore": counted(KeyResult.WOULD_RESTORE, dry_run),
        "wouldRecover": counted(KeyResult.WOULD_RECOVER, dry_run),
        "wouldSkip": counted(KeyResult.WOULD_SKIP, dry_run),
        "wouldFail": counted(KeyResult.WOULD_FAIL, dry_run),
    }


def restore_summary(outcomes: Sequence[KeyOutcome], *, dry_run: bool) -> str:
    """One sentence: what a restore did, or what a dry run found it would do."""
    c = restore_counts(outcomes, dry_run=dry_run)
    if dry_run:
        return (
            f"dry run: would restore {c['wouldRestore']}, recover {c['wouldRecover']}, "
            f"skip {c['wouldSkip']}, fail {c['wouldFail']}; no key was changed"
        )
    return (
        f"{c['restored']} restored, {c['recovered']} recovered, {c['skipped']} skipped, "
        f"{c['failed']} failed"
    )


def key_line(outcome: KeyOutcome) -> str:
    """One key on one line: ``name: Result (Reason) - message``."""
    line = f"{outcome.name}: {outcome.result.value}"
    if outcome.reason and outcome.reason != outcome.result.value:
        line += f" ({outcome.reason})"
    if outcome.message:
        line += f" - {outcome.message}"
    return line
