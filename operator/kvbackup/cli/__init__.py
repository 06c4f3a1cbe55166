"""``kvbackup``: snapshots and restores of keys, secrets and certificates without the
operator, for the day it, or the cluster, is gone. Built on the services and adapters the
operator uses, so it finds, verifies and restores exactly as a KeyRestore does; it never
imports kopf."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kvbackup import __version__
from kvbackup.adapters.kubernetes import context_namespace
from kvbackup.api.keyrestore import OnConflict, Strategy
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.cli import commands, completion
from kvbackup.cli.output import (
    OUTPUTS,
    TEXT,
    ExitCode,
    ProgressFactory,
    Result,
    progress_bar,
    show,
    show_error,
)
from kvbackup.cli.sources import CONNECTION_STRING_VARIABLE, StorageOptions
from kvbackup.config import Settings
from kvbackup.errors import InvalidSpecError, KvBackupError, NotPermittedError, UnexpectedError

EPILOG = f"""\
exit codes:
  0  done, every item as asked (a dry run: no item would fail)
  1  done, but an item failed, would fail, or failed verification (its line says why)
  2  a bad argument: a name, URL, path or option refused before anything was read
  3  nothing could be done: the snapshot, storage or vault could not be found or reached

authentication: Azure's DefaultAzureCredential (environment variables, workload or managed
identity, the Azure CLI's login); a blob container also takes a connection string in
${CONNECTION_STRING_VARIABLE}. Hosts, CA bundle and pace come from the operator's
variables (KVBACKUP_VAULT_HOSTS, KVBACKUP_BLOB_HOSTS, KVBACKUP_CA_BUNDLE, ...).
"""


def _storage_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group(
        "where the snapshots are",
        "a KeyBackup's Secrets through a kubeconfig (default), or a blob container "
        "(--account-url, --container, --prefix as in the KeyBackup's destination)",
    )
    where.add_argument(
        "--namespace",
        "-n",
        help="the KeyBackup's namespace (default: the kubeconfig context's, as kubectl's)",
    )
    where.add_argument("--keybackup", "-b", help="the KeyBackup's name")
    where.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    where.add_argument("--context", help="kubeconfig context (default: the current one)")
    where.add_argument("--account-url", help="storage account's blob endpoint")
    where.add_argument("--container", help="blob container")
    where.add_argument("--prefix", help="folder in the container (the KeyBackup's prefix)")


def _storage(arguments: argparse.Namespace) -> StorageOptions:
    namespace = arguments.namespace
    if namespace is None:
        namespace = context_namespace(arguments.kubeconfig, arguments.context)
    return StorageOptions(
        namespace=namespace,
        keybackup=arguments.keybackup,
        kubeconfig=arguments.kubeconfig,
        context=arguments.context,
        account_url=arguments.account_url,
        container=arguments.container,
        prefix=arguments.prefix,
    )


def _output_argument(parser: argparse.ArgumentParser, *, default: str) -> None:
    parser.add_argument(
        "--output",
        "-o",
        choices=OUTPUTS,
        default=default,
        help="text, or json or yaml for scripts",
    )


SNAPSHOT_HELP = (
    "latest, or a snapshot id; in a container without --keybackup, the snapshot's folder "
    "or URL (as a KeyBackup's status.lastSnapshot.location shows it)"
)


def program_name(argv0: str) -> str:
    """How the user ran the command: ``kubectl kvbackup`` through kubectl's plugin
    mechanism, which runs the ``kubectl-kvbackup`` executable, else ``kvbackup``."""
    return "kubectl kvbackup" if Path(argv0).name.startswith("kubectl-") else "kvbackup"


def parser(prog: str = "kvbackup") -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Azure Key Vault snapshots and restores of keys, secrets and certificates, "
            "without the operator."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    main.add_argument("--version", action="version", version=f"kvbackup {__version__}")
    _output_argument(main, default=TEXT)
    # Also after the command (kvbackup restore DIR ... -o json), where a user puts it.
    output = argparse.ArgumentParser(add_help=False)
    _output_argument(output, default=argparse.SUPPRESS)
    command = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    snapshots = command.add_parser("snapshots", help="list or verify a KeyBackup's snapshots")
    of_snapshots = snapshots.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = of_snapshots.add_parser(
        "list",
        parents=[output],
        help="id, times, keys, secrets, certificates, bytes (all, and those the snapshot "
        "stored itself) and whether complete, newest first",
    )
    _storage_arguments(listing)
    verifying = of_snapshots.add_parser(
        "verify",
        parents=[output],
        help="every item's stored backup against the manifest's sha256 and size",
    )
    verifying.add_argument(
        "snapshot", metavar="SNAPSHOT", nargs="?", help=f"{SNAPSHOT_HELP}; or --directory"
    )
    verifying.add_argument(
        "--directory",
        metavar="DIR",
        type=Path,
        help="what export wrote, instead of a stored SNAPSHOT (e.g. after copying it elsewhere)",
    )
    _storage_arguments(verifying)

    exporting = command.add_parser(
        "export",
        parents=[output],
        help="each item's exact backup bytes into DIR/keys/, DIR/secrets/ and "
        "DIR/certificates/ (<name>.bak), and DIR/manifest.json",
    )
    exporting.add_argument("snapshot", metavar="SNAPSHOT", help=SNAPSHOT_HELP)
    exporting.add_argument("directory", metavar="DIR", type=Path, help="a new or empty directory")
    _storage_arguments(exporting)

    restoring = command.add_parser(
        "restore",
        parents=[output],
        help="bring an exported snapshot's items back, as a KeyRestore does",
    )
    restoring.add_argument("directory", metavar="DIR", type=Path, help="what export wrote")
    restoring.add_argument("--vault-url", required=True, help="the target vault")
    chosen = restoring.add_argument_group(
        "what to bring back",
        "names of each kind, as NAME,NAME or NAME NAME; without --keys, --secrets or "
        "--certificates, every item of the snapshot",
    )
    for kind in ITEM_KINDS:
        chosen.add_argument(
            f"--{kind.plural}",
            nargs="+",
            action="extend",
            metavar=kind.upper(),
            help=f"only these {kind.plural}",
        )
    restoring.add_argument(
        "--strategy", choices=[s.value for s in Strategy], default=Strategy.AUTO.value
    )
    restoring.add_argument(
        "--on-conflict",
        choices=[c.value for c in OnConflict],
        default=OnConflict.SKIP.value,
        help="for an item active in the vault (default: Skip)",
    )
    for kind in ITEM_KINDS:
        restoring.add_argument(
            commands.purge_option(kind),
            action="append_const",
            dest="purge_deleted",
            const=kind,
            help=f"purge a soft-deleted {kind} and restore it instead of recovering it",
        )
    restoring.add_argument(
        "--dry-run", action="store_true", help="only read, and say what would be done"
    )

    completing = command.add_parser(
        "completion",
        help="print a shell completion script: source <(kvbackup completion bash)",
    )
    completing.add_argument("shell", choices=completion.SHELLS)
    return main


def names_given(arguments: argparse.Namespace) -> dict[ItemKind, list[str]]:
    """The names given per kind, ``a,b`` split (Key Vault names have no commas); only the
    kinds given."""
    return {
        kind: [name for value in values for name in value.split(",")]
        for kind in ITEM_KINDS
        if (values := getattr(arguments, kind.plural)) is not None
    }


def _storage_given(arguments: argparse.Namespace) -> list[str]:
    """The storage options given, which a directory does not take."""
    options = (
        "namespace",
        "keybackup",
        "kubeconfig",
        "context",
        "account_url",
        "container",
        "prefix",
    )
    return [f"--{name.replace('_', '-')}" for name in options if getattr(arguments, name)]


async def _verify(
    arguments: argparse.Namespace, settings: Settings, progress: ProgressFactory | None
) -> Result:
    if arguments.directory is None:
        if arguments.snapshot is None:
            raise InvalidSpecError("name a SNAPSHOT, or an export's --directory")
        return await commands.verify(_storage(arguments), arguments.snapshot, settings, progress)
    if arguments.snapshot is not None:
        raise InvalidSpecError("--directory takes no SNAPSHOT: it holds one")
    if given := _storage_given(arguments):
        raise InvalidSpecError(
            f"--directory reads no stored snapshot: leave out {', '.join(given)}"
        )
    return await commands.verify_directory(arguments.directory, settings, progress)


async def _run(arguments: argparse.Namespace, settings: Settings) -> Result:
    with progress_bar("items", enabled=arguments.output == TEXT) as progress:
        if arguments.command == "restore":
            return await commands.restore(
                arguments.directory,
                vault_url=arguments.vault_url,
                names=names_given(arguments),
                strategy=arguments.strategy,
                on_conflict=arguments.on_conflict,
                purge_deleted=frozenset(arguments.purge_deleted or ()),
                dry_run=arguments.dry_run,
                settings=settings,
                progress=progress,
            )
        if arguments.command == "snapshots" and arguments.action == "verify":
            return await _verify(arguments, settings, progress)
        storage = _storage(arguments)
        if arguments.command == "export":
            return await commands.export(
                storage, arguments.snapshot, arguments.directory, settings, progress
            )
        return await commands.list_snapshots(storage, settings)


def main(argv: Sequence[str] | None = None) -> int:
    command_line = parser(program_name(sys.argv[0]))
    arguments = command_line.parse_args(argv)
    if arguments.command == "completion":
        print(completion.script(command_line, arguments.shell), end="")
        return ExitCode.OK
    output = arguments.output
    # The SDKs log each request at INFO; a person reads the command's own lines.
    logging.basicConfig(level=logging.WARNING, format="kvbackup: %(message)s")
    try:
        settings = Settings.from_env()
        result = asyncio.run(_run(arguments, settings))
    except KeyboardInterrupt:
        return 130
    except KvBackupError as error:
        show_error(error.reason, error.message, output=output)
        refused = isinstance(error, InvalidSpecError | NotPermittedError)
        return ExitCode.INVALID_INPUT if refused else ExitCode.NOT_DONE
    except Exception as error:
        unexpected = UnexpectedError.wrapping(error)
        show_error(unexpected.reason, unexpected.message, output=output)
        return ExitCode.NOT_DONE
    show(result, output=output)
    return result.code
