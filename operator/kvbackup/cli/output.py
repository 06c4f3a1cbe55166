"""What the command line prints: lines for people or one JSON or YAML document for
scripts, a progress bar on a terminal, and its exit codes."""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.presentation.item_results import beyond_keys, item_entries, item_line, of_kind
from kvbackup.services.outcomes import ItemOutcome
from kvbackup.services.progress import Progress
from kvbackup.services.snapshot import Manifest

#: How often the bar moves.
BAR_INTERVAL_SECONDS = 0.1
#: ``-o``: lines for people, or one document for scripts.
TEXT, JSON, YAML = "text", "json", "yaml"
OUTPUTS = (TEXT, JSON, YAML)


class ExitCode(IntEnum):
    #: Done, and every item as asked (a dry run: no item would fail).
    OK = 0
    #: Done, but at least one item failed, would fail, or failed verification.
    ITEMS_FAILED = 1
    #: A bad argument: a name, URL, path or option the command refuses.
    INVALID_INPUT = 2
    #: Nothing could be done: the snapshot, storage or vault could not be read or reached.
    NOT_DONE = 3


def exit_code_of(outcomes: Sequence[ItemOutcome]) -> ExitCode:
    return ExitCode.ITEMS_FAILED if any(o.failed for o in outcomes) else ExitCode.OK


def item_lines(outcomes: Sequence[ItemOutcome], manifest: Manifest) -> list[str]:
    """One line per item, worded as a status words it. When the snapshot holds secrets or
    certificates, the lines go kind by kind and each names its kind (``secret db-password:
    Restored``): a key and a secret may share a name. A keys-only snapshot's lines are as
    they were before there were other kinds."""
    with_kind = beyond_keys(outcomes) or any(
        artifact.kind is not ItemKind.KEY for artifact in manifest.artifacts
    )
    if with_kind:
        outcomes = sorted(outcomes, key=lambda outcome: ITEM_KINDS.index(outcome.kind))
    return [item_line(outcome, with_kind=with_kind) for outcome in outcomes]


def item_documents(outcomes: Sequence[ItemOutcome]) -> dict[str, list[dict[str, Any]]]:
    """Each kind's entries under its plural (``keys``, ``secrets``, ``certificates``), as a
    status lists them (failures first), each naming its kind. Every kind is there, empty
    when the snapshot has none, so that scripts find one shape whatever the snapshot."""
    return {
        kind.plural: [
            {"kind": kind.value, **entry}
            for entry in item_entries(of_kind(outcomes, kind), None, with_version_ids=True)
        ]
        for kind in ITEM_KINDS
    }


@dataclass(frozen=True)
class Result:
    """What a command found: ``lines`` for people, ``document`` for scripts."""

    lines: list[str]
    document: dict[str, Any]
    code: ExitCode = ExitCode.OK


def printable(text: str) -> str:
    """Text from storage or a service, safe on a terminal: control characters (escape
    sequences could rewrite the screen) are shown as escapes instead."""
    return "".join(
        char.encode("unicode_escape").decode() if unicodedata.category(char)[0] == "C" else char
        for char in text
    )


def rendered(document: dict[str, Any], output: str) -> str:
    """A document as ``-o json`` or ``-o yaml`` prints it; both escape control characters."""
    if output == YAML:
        text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return text.rstrip("\n")
    return json.dumps(document, indent=2)


def show(result: Result, *, output: str) -> None:
    if output == TEXT:
        for line in result.lines:
            print(printable(line))
    else:
        print(rendered(result.document, output))


def show_error(reason: str, message: str, *, output: str) -> None:
    if output != TEXT:
        print(rendered({"error": {"reason": reason, "message": message}}, output))
    print(f"kvbackup: {printable(reason)}: {printable(message)}", file=sys.stderr)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns as kubectl prints them: left-aligned, three spaces apart."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


ProgressFactory = Callable[[int], Progress]


@contextmanager
def progress_bar(what: str, *, enabled: bool) -> Iterator[ProgressFactory | None]:
    """A bar on stderr while items are worked on, when stderr is a terminal; none for
    scripts (``--output json`` or ``yaml``) or a redirected stderr."""
    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield None
        return
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Bar(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=None)

        async def moved(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def start(total: int) -> Progress:
            bar.update(task, total=total)
            return Progress(total, moved, time.monotonic, interval=BAR_INTERVAL_SECONDS)

        yield start
