"""What the command line takes: names per kind (``a,b`` or ``a b``), a purge switch per
kind, an export's directory for verify; and what it refuses before reading anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvbackup.api.kinds import ItemKind
from kvbackup.cli import main, names_given, parser
from kvbackup.cli.output import ExitCode

VAULT = ("--vault-url", "https://payments.vault.azure.net")


def test_names_are_given_per_kind_split_at_commas_and_gathered_across_repeats() -> None:
    arguments = parser().parse_args(
        ["restore", "dir", *VAULT, "--keys", "a,b", "c", "--certificates", "api-tls", "--keys", "d"]
    )

    assert names_given(arguments) == {
        ItemKind.KEY: ["a", "b", "c", "d"],
        ItemKind.CERTIFICATE: ["api-tls"],
    }
    assert names_given(parser().parse_args(["restore", "dir", *VAULT])) == {}


def test_each_kind_has_its_purge_switch() -> None:
    arguments = parser().parse_args(
        ["restore", "dir", *VAULT, "--purge-deleted-secrets", "--purge-deleted-certificates"]
    )

    assert set(arguments.purge_deleted) == {ItemKind.SECRET, ItemKind.CERTIFICATE}
    assert parser().parse_args(["restore", "dir", *VAULT]).purge_deleted is None


@pytest.mark.parametrize(
    ("arguments", "refusal"),
    [
        (["--secrets", "db,a/b"], "--secrets[1] must be a Key Vault secret name"),
        (["--certificates", "api-tls,,x"], "--certificates[1] must be a Key Vault certificate"),
        (["--keys", "a,A"], "--keys lists a key twice"),
        (
            ["--strategy", "RecoverOnly", "--purge-deleted-certificates", "--purge-deleted-keys"],
            "--purge-deleted-keys, --purge-deleted-certificates cannot be combined with "
            "--strategy RecoverOnly",
        ),
    ],
)
def test_a_bad_name_or_switch_of_any_kind_is_refused_before_the_directory_is_read(
    arguments: list[str],
    refusal: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The directory holds no snapshot: reading it would fail otherwise.
    assert main(["restore", str(tmp_path), *VAULT, *arguments]) == ExitCode.INVALID_INPUT

    assert refusal in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "refusal"),
    [
        ([], "name a SNAPSHOT, or an export's --directory"),
        (["latest", "--directory", "dir"], "--directory takes no SNAPSHOT"),
        (["--directory", "dir", "-b", "payments"], "leave out --keybackup"),
    ],
)
def test_verify_reads_a_stored_snapshot_or_an_export_never_both(
    arguments: list[str], refusal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["snapshots", "verify", *arguments]) == ExitCode.INVALID_INPUT

    assert refusal in capsys.readouterr().err
