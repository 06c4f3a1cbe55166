"""Shell completion is written from the command line's own parser: every command, option
and choice the parser takes, and nothing else."""

from __future__ import annotations

from kvbackup.cli import parser
from kvbackup.cli.completion import FILE_OPTIONS, commands, script


def test_every_command_its_options_and_their_choices_are_read_from_the_parser() -> None:
    found = {command.path: command for command in commands(parser())}

    assert sorted(found) == [
        "",
        "completion",
        "export",
        "restore",
        "snapshots",
        "snapshots list",
        "snapshots verify",
    ]
    assert found[""].words == ["snapshots", "export", "restore", "completion"]
    assert found["completion"].words == ["bash", "zsh"]
    listing = found["snapshots list"]
    assert {"-n", "--namespace", "--kubeconfig", "-o", "--output"} <= set(listing.options)
    assert listing.valued["-o"] == ["text", "json", "yaml"]
    assert listing.valued["--namespace"] == []  # a value, but any
    assert "--dry-run" not in found["restore"].valued  # a flag: the next word is not its
    assert found["export"].takes_paths
    assert not found["snapshots list"].takes_paths


def test_restore_completes_the_names_and_purge_switch_of_every_kind() -> None:
    restoring = {command.path: command for command in commands(parser())}["restore"]

    for kind in ("keys", "secrets", "certificates"):
        assert restoring.valued[f"--{kind}"] == []  # names: any
        assert f"--purge-deleted-{kind}" in restoring.options
        assert f"--purge-deleted-{kind}" not in restoring.valued  # a switch


def test_verify_completes_its_directory_as_a_path() -> None:
    verifying = {command.path: command for command in commands(parser())}["snapshots verify"]

    assert "--directory" in verifying.valued
    assert "--directory" in FILE_OPTIONS
    assert "--kubeconfig|--directory) COMPREPLY=($(compgen -f" in script(parser(), "bash")


def test_both_names_of_the_command_get_the_completion_in_bash_and_zsh() -> None:
    bash, zsh = script(parser(), "bash"), script(parser(), "zsh")

    assert "complete -o filenames -F _kvbackup kvbackup kubectl-kvbackup" in bash
    assert zsh.startswith("#compdef kvbackup kubectl-kvbackup\n")
    assert "bashcompinit" in zsh
    assert zsh.endswith(bash)
