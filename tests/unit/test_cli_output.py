"""What the command line prints: one line per key as the status words it, tables, and
text from storage made harmless on a terminal."""

from __future__ import annotations

from kvbackup.cli.output import ExitCode, exit_code_of, printable, table
from kvbackup.presentation.outcomes import key_line
from kvbackup.services.outcomes import KeyOutcome, KeyResult


def test_a_key_line_gives_result_reason_and_message_and_leaves_out_a_repeated_reason() -> None:
    assert key_line(KeyOutcome("tokens", KeyResult.SKIPPED, reason="KeyExists", message="m")) == (
        "tokens: Skipped (KeyExists) - m"
    )
    assert key_line(KeyOutcome("a", KeyResult.RESTORED, reason="Restored")) == "a: Restored"


def test_control_characters_from_storage_are_shown_as_escapes_not_sent_to_the_terminal() -> None:
    assert printable("20261128-\x1b[2Jx\nforged line") == "20261128-\\x1b[2Jx\\nforged line"
    assert printable("plain text, ünïcode") == "plain text, ünïcode"


def test_a_table_aligns_its_columns_under_the_header() -> None:
    assert table(["A", "BEE"], [["long", "1"], ["s", "22"]]) == [
        "A      BEE",
        "long   1",
        "s      22",
    ]


def test_the_exit_code_says_whether_any_key_failed_or_would_fail() -> None:
    fine = KeyOutcome("a", KeyResult.WOULD_RESTORE)
    assert exit_code_of([fine]) is ExitCode.OK
    assert exit_code_of([fine, KeyOutcome("b", KeyResult.WOULD_FAIL)]) is ExitCode.KEYS_FAILED
    assert exit_code_of([KeyOutcome("b", KeyResult.FAILED)]) is ExitCode.KEYS_FAILED
