"""Per-item outcomes as users read them, in a status and on the command line alike: each
item's entry, the lists and counts of each kind, and the sentences that sum them up.

Wording stays as it was for keys alone; once a run handles secrets or certificates, the
sentences name each item's kind.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvbackup.api.kinds import ITEM_KINDS, ItemKind, ItemRef
from kvbackup.api.statuses import ItemEntries, ItemEntry, RestoreCounts, RestoreResultCounts
from kvbackup.services.outcomes import ItemOutcome, ItemResult

#: How many (newest) version ids an entry lists.
VERSION_IDS_PER_ITEM = 20


def item_entry(outcome: ItemOutcome, *, with_version_ids: bool) -> ItemEntry:
    entry: ItemEntry = {"name": outcome.name, "result": outcome.result.value}
    entry["versionCount"] = len(outcome.versions)
    if with_version_ids:
        # Bounded: a key rotated daily for years has thousands of versions.
        entry["versions"] = list(outcome.versions[-VERSION_IDS_PER_ITEM:])
    if outcome.sha256:
        entry["sha256"] = outcome.sha256
        entry["size"] = outcome.size
    if outcome.reason:
        entry["reason"] = outcome.reason
    if outcome.message:
        entry["message"] = outcome.message
    return entry


def item_entries(
    outcomes: Sequence[ItemOutcome], limit: int | None, *, with_version_ids: bool
) -> list[ItemEntry]:
    """Failures first, so a bounded list never hides a failed item behind successes."""
    ordered = sorted(outcomes, key=lambda o: (not o.failed, o.name.lower()))
    return [item_entry(o, with_version_ids=with_version_ids) for o in ordered[:limit]]


def entries_by_kind(
    outcomes: Sequence[ItemOutcome], limit: int | None, *, with_version_ids: bool
) -> ItemEntries:
    """Each kind's list, bounded by ``limit`` each; None for a kind the run did not handle,
    so that a merge patch removes an earlier run's list of it."""

    def listed(kind: ItemKind) -> list[ItemEntry] | None:
        chosen = of_kind(outcomes, kind)
        return item_entries(chosen, limit, with_version_ids=with_version_ids) if chosen else None

    return {
        "keys": listed(ItemKind.KEY),
        "secrets": listed(ItemKind.SECRET),
        "certificates": listed(ItemKind.CERTIFICATE),
    }


def of_kind(outcomes: Sequence[ItemOutcome], kind: ItemKind) -> list[ItemOutcome]:
    return [outcome for outcome in outcomes if outcome.kind is kind]


def kinds_of(outcomes: Sequence[ItemOutcome]) -> tuple[ItemKind, ...]:
    """The kinds the outcomes are of, in ITEM_KINDS order."""
    present = {outcome.kind for outcome in outcomes}
    return tuple(kind for kind in ITEM_KINDS if kind in present)


def beyond_keys(outcomes: Sequence[ItemOutcome]) -> bool:
    """Whether a run handled secrets or certificates: then its sentences name kinds."""
    return any(outcome.kind is not ItemKind.KEY for outcome in outcomes)


def count(outcomes: Sequence[ItemOutcome], result: ItemResult) -> int:
    return sum(1 for outcome in outcomes if outcome.result is result)


def counted(number: int, kind: ItemKind) -> str:
    """``1 key``, ``2 secrets``."""
    return f"{number} {kind if number == 1 else kind.plural}"


def joined(parts: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(parts) < 2:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} and {parts[-1]}"


def item_label(outcome: ItemOutcome, *, with_kind: bool) -> str:
    """The item's name, after its kind (``secret db-password``) when ``with_kind``."""
    return str(ItemRef(outcome.kind, outcome.name)) if with_kind else outcome.name


def _result_counts(outcomes: Sequence[ItemOutcome], *, dry_run: bool) -> RestoreResultCounts:
    def tally(result: ItemResult, here: bool) -> int | None:
        return count(outcomes, result) if here else None

    real = not dry_run
    return {
        "restored": tally(ItemResult.RESTORED, real),
        "recovered": tally(ItemResult.RECOVERED, real),
        "skipped": tally(ItemResult.SKIPPED, real),
        "failed": tally(ItemResult.FAILED, real),
        "wouldRestore": tally(ItemResult.WOULD_RESTORE, dry_run),
        "wouldRecover": tally(ItemResult.WOULD_RECOVER, dry_run),
        "wouldSkip": tally(ItemResult.WOULD_SKIP, dry_run),
        "wouldFail": tally(ItemResult.WOULD_FAIL, dry_run),
    }


def restore_counts(outcomes: Sequence[ItemOutcome], *, dry_run: bool) -> RestoreCounts:
    """A restore's counts, or a dry run's, over every item and for each kind handled; the
    other mode's counts, and a kind not handled, are None, so that a merge patch removes
    them from a status that held them."""

    def of(kind: ItemKind) -> RestoreResultCounts | None:
        chosen = of_kind(outcomes, kind)
        return _result_counts(chosen, dry_run=dry_run) if chosen else None

    return {
        **_result_counts(outcomes, dry_run=dry_run),
        "keys": of(ItemKind.KEY),
        "secrets": of(ItemKind.SECRET),
        "certificates": of(ItemKind.CERTIFICATE),
    }


def _tally(outcomes: Sequence[ItemOutcome], result: ItemResult, said: str, by_kind: bool) -> str:
    """How many came to ``result``, followed by ``said``: ``4 restored`` and, ``by_kind``,
    `` (3 keys, 1 secret)`` after it."""
    total = count(outcomes, result)
    told = f"{total}{said}"
    if not by_kind or not total:
        return told
    parts = [
        counted(n, kind) for kind in ITEM_KINDS if (n := count(of_kind(outcomes, kind), result))
    ]
    return f"{told} ({', '.join(parts)})"


def restore_summary(outcomes: Sequence[ItemOutcome], *, dry_run: bool) -> str:
    """One sentence: what a restore did, or what a dry run found it would do; with each
    count's kinds once secrets or certificates are involved."""
    by_kind = beyond_keys(outcomes)

    def tally(result: ItemResult, said: str = "") -> str:
        return _tally(outcomes, result, said, by_kind)

    if dry_run:
        unchanged = "nothing was changed" if by_kind else "no key was changed"
        return (
            f"dry run: would restore {tally(ItemResult.WOULD_RESTORE)}, "
            f"recover {tally(ItemResult.WOULD_RECOVER)}, skip {tally(ItemResult.WOULD_SKIP)}, "
            f"fail {tally(ItemResult.WOULD_FAIL)}; {unchanged}"
        )
    return (
        f"{tally(ItemResult.RESTORED, ' restored')}, {tally(ItemResult.RECOVERED, ' recovered')}, "
        f"{tally(ItemResult.SKIPPED, ' skipped')}, {tally(ItemResult.FAILED, ' failed')}"
    )


def item_line(outcome: ItemOutcome, *, with_kind: bool = False) -> str:
    """One item on one line: ``name: Result (Reason) - message``, the name after its kind
    when ``with_kind``."""
    line = f"{item_label(outcome, with_kind=with_kind)}: {outcome.result.value}"
    if outcome.reason and outcome.reason != outcome.result.value:
        line += f" ({outcome.reason})"
    if outcome.message:
        line += f" - {outcome.message}"
    return line
