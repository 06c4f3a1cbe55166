"""What the command line prints: one line per item as the status words it, named by kind
once a snapshot holds more than keys, tables (the snapshots' with the bytes each stored
itself), JSON and YAML documents, text from storage made harmless on a terminal; the name
it goes by, and the namespace it reads without -n."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kvbackup.adapters.kubernetes import context_namespace
from kvbackup.api.kinds import ItemKind
from kvbackup.cli import parser, program_name
from kvbackup.cli.commands import snapshot_listing
from kvbackup.cli.output import (
    JSON,
    TEXT,
    YAML,
    ExitCode,
    exit_code_of,
    item_documents,
    item_lines,
    printable,
    rendered,
    show_error,
    table,
)
from kvbackup.services.inspection import ListedSnapshot
from kvbackup.services.outcomes import ItemOutcome, ItemResult
from kvbackup.services.snapshot import Artifact, SnapshotSummary, snapshot_time
from tests.unit.fakes import manifest_of

KEY, SECRET, CERTIFICATE = ItemKind.KEY, ItemKind.SECRET, ItemKind.CERTIFICATE
KEYS_ONLY = manifest_of(
    Artifact("tokens", ("v1",), "0" * 64, 1), Artifact("a", ("v1",), "1" * 64, 1)
)
MIXED = manifest_of(
    Artifact("tokens", ("v1",), "0" * 64, 1),
    Artifact("tokens", ("v1",), "1" * 64, 1, kind=SECRET),
    Artifact("api-tls", ("v1",), "2" * 64, 1, kind=CERTIFICATE),
)


def test_a_keys_only_snapshots_lines_read_as_before_other_kinds() -> None:
    outcomes = [
        ItemOutcome("tokens", ItemResult.SKIPPED, reason="KeyExists", message="m"),
        ItemOutcome("a", ItemResult.RESTORED, reason="Restored"),
    ]

    assert item_lines(outcomes, KEYS_ONLY) == ["tokens: Skipped (KeyExists) - m", "a: Restored"]


def test_once_a_snapshot_holds_other_kinds_each_line_names_its_kind_kind_by_kind() -> None:
    outcomes = [
        ItemOutcome(
            "api-tls", ItemResult.WOULD_RESTORE, reason="CertificateAbsent", kind=CERTIFICATE
        ),
        ItemOutcome("tokens", ItemResult.RESTORED, reason="Restored", kind=SECRET),
        ItemOutcome("tokens", ItemResult.SKIPPED, reason="KeyExists"),
    ]

    assert item_lines(outcomes, MIXED) == [
        "key tokens: Skipped (KeyExists)",
        "secret tokens: Restored",
        "certificate api-tls: WouldRestore (CertificateAbsent)",
    ]
    # Even when only keys were chosen from it: the reader cannot tell a key from a secret.
    assert item_lines(outcomes[2:], MIXED) == ["key tokens: Skipped (KeyExists)"]


def test_documents_list_each_kinds_entries_apart_each_naming_its_kind() -> None:
    outcomes = [
        ItemOutcome("tokens", ItemResult.SUCCEEDED, ("v1",), "0" * 64, 1, reason="Verified"),
        ItemOutcome("tokens", ItemResult.FAILED, reason="IntegrityCheckFailed", kind=SECRET),
    ]

    document = item_documents(outcomes)

    assert document == {
        "keys": [
            {
                "kind": "key",
                "name": "tokens",
                "result": "Succeeded",
                "versionCount": 1,
                "versions": ["v1"],
                "sha256": "0" * 64,
                "size": 1,
                "reason": "Verified",
            }
        ],
        "secrets": [
            {
                "kind": "secret",
                "name": "tokens",
                "result": "Failed",
                "versionCount": 0,
                "versions": [],
                "reason": "IntegrityCheckFailed",
            }
        ],
        "certificates": [],
    }


def test_control_characters_from_storage_are_shown_as_escapes_not_sent_to_the_terminal() -> None:
    assert printable("20261128-\x1b[2Jx\nforged line") == "20261128-\\x1b[2Jx\\nforged line"
    assert printable("plain text, ünïcode") == "plain text, ünïcode"


def test_a_table_aligns_its_columns_under_the_header() -> None:
    assert table(["A", "BEE"], [["long", "1"], ["s", "22"]]) == [
        "A      BEE",
        "long   1",
        "s      22",
    ]


def _summary(snapshot_id: str, total_bytes: int, new_bytes: int | None) -> SnapshotSummary:
    started = snapshot_time(snapshot_id)
    assert started is not None
    return SnapshotSummary(
        snapshot_id, started, started, 3, 0, total_bytes, secrets=1, new_bytes=new_bytes
    )


def test_the_listing_shows_beside_each_snapshots_bytes_those_it_stored_itself() -> None:
    """An incremental snapshot stored a little and refers to the rest; one written before
    snapshots were incremental stored all of its bytes."""
    incomplete, incremental, before = (
        "20261207-120000-bbbb",
        "20261207-110000-aaaa",
        "20261101-000000-cccc",
    )
    listed = [
        ListedSnapshot(incomplete, None),
        ListedSnapshot(incremental, _summary(incremental, 90_000, 1_200)),
        ListedSnapshot(before, _summary(before, 88_000, None)),
    ]

    result = snapshot_listing(listed)

    header, *rows = result.lines
    assert header.split("   ")[-3:] == ["BYTES", "NEW BYTES", "COMPLETE"]
    bytes_at, new_at = header.index("BYTES"), header.index("NEW BYTES")
    assert [(row[bytes_at:new_at].strip(), row[new_at:].split()[0]) for row in rows] == [
        ("-", "-"),
        ("90000", "1200"),
        ("88000", "88000"),
    ]
    assert [(s["id"], s.get("bytes"), s.get("newBytes")) for s in result.document["snapshots"]] == [
        (incomplete, None, None),
        (incremental, 90_000, 1_200),
        (before, 88_000, 88_000),
    ]


def test_the_exit_code_says_whether_any_item_of_any_kind_failed_or_would_fail() -> None:
    fine = ItemOutcome("a", ItemResult.WOULD_RESTORE)
    assert exit_code_of([fine]) is ExitCode.OK
    assert exit_code_of([fine, ItemOutcome("b", ItemResult.WOULD_FAIL)]) is ExitCode.ITEMS_FAILED
    failed = ItemOutcome("b", ItemResult.FAILED, kind=CERTIFICATE)
    assert exit_code_of([fine, failed]) is ExitCode.ITEMS_FAILED


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
