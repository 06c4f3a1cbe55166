"""What the command line prints: one line per key as the status words it, tables, JSON
and YAML documents, text from storage made harmless on a terminal; the name it goes by,
and the namespace it reads without -n."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kvbackup.adapters.kubernetes import context_namespace
from kvbackup.cli import parser, program_name
from kvbackup.cli.output import (
    JSON,
    TEXT,
    YAML,
    ExitCode,
    exit_code_of,
    printable,
    rendered,
    show_error,
    table,
)
from kvbackup.presentation.key_results import key_line
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


def test_json_and_yaml_print_the_same_document_with_control_characters_escaped() -> None:
    document = {"snapshots": [{"id": "20261128-\x1b[2J", "complete": True, "keys": 2}]}

    as_json, as_yaml = rendered(document, JSON), rendered(document, YAML)

    assert json.loads(as_json) == yaml.safe_load(as_yaml) == document
    assert "\x1b" not in as_json
    assert "\x1b" not in as_yaml
    assert as_yaml.startswith("snapshots:\n- id:")  # the document's own order


def test_an_error_is_a_document_on_stdout_for_scripts_and_a_line_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    show_error("NotFound", "no snapshot latest", output=YAML)
    printed = capsys.readouterr()
    assert yaml.safe_load(printed.out) == {
        "error": {"reason": "NotFound", "message": "no snapshot latest"}
    }
    assert printed.err == "kvbackup: NotFound: no snapshot latest\n"

    show_error("NotFound", "no snapshot latest", output=TEXT)
    assert capsys.readouterr().out == ""


def test_run_as_a_kubectl_plugin_the_usage_names_kubectl_kvbackup() -> None:
    assert program_name("/usr/local/bin/kubectl-kvbackup") == "kubectl kvbackup"
    assert program_name("/home/me/.venv/bin/kvbackup") == "kvbackup"
    assert (
        parser(program_name("kubectl-kvbackup"))
        .format_usage()
        .startswith("usage: kubectl kvbackup")
    )


def _kubeconfig(path: Path, current: str) -> str:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [
                    {"name": "team-a", "context": {"cluster": "c", "user": "u", "namespace": "a"}},
                    {"name": "bare", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": current,
            }
        )
    )
    return str(path)


def test_without_n_the_namespace_is_the_contexts_or_default_as_kubectls(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "config", current="team-a")

    assert context_namespace(kubeconfig, None) == "a"
    assert context_namespace(kubeconfig, "bare") == "default"
    assert context_namespace(kubeconfig, "elsewhere") is None
    assert context_namespace(str(tmp_path / "missing"), None) is None
