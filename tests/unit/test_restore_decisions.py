"""What a restore does with each key, and which snapshot it restores from."""

from __future__ import annotations

import itertools

import pytest

from kvbackup.api.keyrestore import OnConflict, Strategy
from kvbackup.api.kinds import ItemKind, ItemRef
from kvbackup.errors import MissingReferenceError
from kvbackup.services.copy_reads import choose_snapshot
from kvbackup.services.ports import ItemState
from kvbackup.services.restore import Action, decide
from kvbackup.services.snapshot import SnapshotSummary
from tests.unit.fakes import manifest_of, restore_spec

ANY_STRATEGY = tuple(Strategy)
ANY_CONFLICT = tuple(OnConflict)
ANY_PURGE = (False, True)
AUTO, RESTORE_ONLY, RECOVER_ONLY = Strategy.AUTO, Strategy.RESTORE_ONLY, Strategy.RECOVER_ONLY
ACTIVE, DELETED, ABSENT = ItemState.ACTIVE, ItemState.SOFT_DELETED, ItemState.ABSENT
SKIP, FAIL = (OnConflict.SKIP,), (OnConflict.FAIL,)
PURGE, KEEP = (True,), (False,)

#: strategies, key state, onConflict values, purgeDeletedKeys values -> action, reason
Rule = tuple[tuple[Strategy, ...], ItemState, tuple[OnConflict, ...], tuple[bool, ...], Action, str]

#: The decision table, one rule a row. Together the rows cover all 3 x 3 x 2 x 2
#: combinations exactly once; each test case checks every combination of its row.
# fmt: off
RULES: dict[str, Rule] = {
    "active-onSkip-is-Skip":
        (ANY_STRATEGY, ACTIVE, SKIP, ANY_PURGE, Action.SKIP, "KeyExists"),
    "active-onFail-is-Refuse":
        (ANY_STRATEGY, ACTIVE, FAIL, ANY_PURGE, Action.REFUSE, "KeyExists"),
    "Auto-deleted-is-Recover":
        ((AUTO,), DELETED, ANY_CONFLICT, KEEP, Action.RECOVER, ""),
    "Auto-deleted-purge-is-PurgeAndRestore":
        ((AUTO,), DELETED, ANY_CONFLICT, PURGE, Action.PURGE_AND_RESTORE, ""),
    "RestoreOnly-deleted-is-Refuse":
        ((RESTORE_ONLY,), DELETED, ANY_CONFLICT, KEEP, Action.REFUSE, "KeySoftDeleted"),
    "RestoreOnly-deleted-purge-is-PurgeAndRestore":
        ((RESTORE_ONLY,), DELETED, ANY_CONFLICT, PURGE, Action.PURGE_AND_RESTORE, ""),
    "RecoverOnly-deleted-is-Recover-even-with-purge":
        ((RECOVER_ONLY,), DELETED, ANY_CONFLICT, ANY_PURGE, Action.RECOVER, ""),
    "Auto-absent-is-Restore":
        ((AUTO,), ABSENT, ANY_CONFLICT, ANY_PURGE, Action.RESTORE, ""),
    "RestoreOnly-absent-is-Restore":
        ((RESTORE_ONLY,), ABSENT, ANY_CONFLICT, ANY_PURGE, Action.RESTORE, ""),
    "RecoverOnly-absent-is-Refuse":
        ((RECOVER_ONLY,), ABSENT, ANY_CONFLICT, ANY_PURGE, Action.REFUSE, "KeyNotDeleted"),
}
# fmt: on


def combinations(rule: Rule) -> list[tuple[Strategy, OnConflict, bool]]:
    strategies, _, conflicts, purges, _, _ = rule
    return list(itertools.product(strategies, conflicts, purges))


def test_the_decision_table_covers_every_combination_exactly_once() -> None:
    covered = [(rule[1], *combo) for rule in RULES.values() for combo in combinations(rule)]

    assert len(covered) == len(set(covered)) == 3 * 3 * 2 * 2


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_a_key_gets_the_action_its_strategy_state_and_conflict_policy_call_for(
    rule: Rule,
) -> None:
    _, state, _, _, action, reason = rule
    for strategy, on_conflict, purge in combinations(rule):
        spec = restore_spec(strategy=strategy, on_conflict=on_conflict, purge_deleted=purge)

        decision = decide(spec, ItemRef(ItemKind.KEY, "app-key"), state)

        case = f"{strategy}/{state}/onConflict={on_conflict}/purgeDeletedKeys={purge}"
        assert (decision.action, decision.reason) == (action, reason), case
        assert ("app-key" in decision.message) is bool(reason), case


NEWEST = manifest_of(snapshot_id="20240502-000000-bbbb").summary
MIDDLE = manifest_of(snapshot_id="20240501-000000-aaaa").summary
OLDEST = manifest_of(snapshot_id="20240430-000000-cccc").summary


def test_latest_picks_the_first_snapshot_which_is_the_newest() -> None:
    assert choose_snapshot([NEWEST, MIDDLE, OLDEST], "latest", "nightly") is NEWEST


def test_a_snapshot_named_by_id_is_found_among_the_complete_ones() -> None:
    assert choose_snapshot([NEWEST, MIDDLE, OLDEST], MIDDLE.snapshot_id, "nightly") is MIDDLE


@pytest.mark.parametrize(
    ("snapshots", "wanted"),
    [
        pytest.param([NEWEST, OLDEST], MIDDLE.snapshot_id, id="named-id-missing"),
        pytest.param([], "latest", id="no-snapshot-at-all"),
    ],
)
def test_a_missing_snapshot_is_a_missing_reference_with_reason_source_not_found(
    snapshots: list[SnapshotSummary], wanted: str
) -> None:
    with pytest.raises(MissingReferenceError) as caught:
        choose_snapshot(snapshots, wanted, "nightly")

    assert caught.value.reason == "SourceNotFound"
    assert caught.value.temporary is True
    assert "nightly" in caught.value.message
