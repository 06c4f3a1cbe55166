"""Shell completion for bash and zsh, written from the command line's own parser, so that
every command, option and choice it completes is one the parser accepts.

The script is static: completing runs no Python (the command takes over a second to
start). zsh runs the bash function through its bashcompinit layer.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SHELLS = ("bash", "zsh")
#: The names the command is installed under: its own, and kubectl's plugin name.
COMMANDS = ("kvbackup", "kubectl-kvbackup")
#: Options whose value is a file.
FILE_OPTIONS = ("--kubeconfig", "--directory")


@dataclass
class Command:
    """What may follow one command (``""``: the program itself; ``"snapshots list"``)."""

    path: str
    #: Its subcommands, or the values its positional argument may take.
    words: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    #: Options that take a value, and the values they may take (empty: any).
    valued: dict[str, list[str]] = field(default_factory=dict)
    #: Whether a positional argument is a path.
    takes_paths: bool = False


def commands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[Command]:
    """Every command of ``parser``, its own first."""
    command = Command(path)
    nested: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                command.words.append(name)
                nested.append((name, subparser))
        elif action.option_strings:
            command.options += action.option_strings
            if action.nargs != 0:
                choices = [str(choice) for choice in action.choices or ()]
                command.valued |= dict.fromkeys(action.option_strings, choices)
        elif action.choices:
            command.words += [str(choice) for choice in action.choices]
        elif action.type is Path:
            command.takes_paths = True
    yield command
    for name, subparser in nested:
        yield from commands(subparser, f"{path} {name}".strip())


def _words(values: list[str]) -> str:
    return shlex.quote(" ".join(values))


def bash_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion function for ``parser``'s program, under both its names."""
    found = list(commands(parser))

    def by_path(listed: dict[str, list[str]]) -> str:
        return "".join(
            f"        {shlex.quote(path)}) echo {_words(values)} ;;\n"
            for path, values in listed.items()
        )

    words = by_path({c.path: c.words for c in found})
    options = by_path({c.path: c.options for c in found})
    valued = by_path({c.path: list(c.valued) for c in found})
    choices = by_path(
        {
            f"{c.path}|{option}": values
            for c in found
            for option, values in c.valued.items()
            if values
        }
    )
    # A pattern no path matches when no command takes a path.
    paths = "|".join(shlex.quote(c.path) for c in found if c.takes_paths) or "'|'"
    return f"""\
# bash completion for kvbackup; load it with: source <(kvbackup completion bash)
_kvbackup_words() {{
    case "$1" in
{words}    esac
}}
_kvbackup_options() {{
    case "$1" in
{options}    esac
}}
_kvbackup_valued() {{
    case "$1" in
{valued}    esac
}}
_kvbackup_choices() {{
    case "$1|$2" in
{choices}    esac
}}
_kvbackup() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local path="" word skip=0 i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if ((skip)); then
            skip=0
        elif [[ "$word" == -* ]]; then
            [[ " $(_kvbackup_valued "$path") " == *" $word "* ]] && skip=1
        elif [[ " $(_kvbackup_words "$path") " == *" $word "* ]]; then
            path="${{path:+$path }}$word"
        fi
    done
    COMPREPLY=()
    if ((skip)); then
        case "$prev" in
            {"|".join(FILE_OPTIONS)}) COMPREPLY=($(compgen -f -- "$cur")) ;;
            *) COMPREPLY=($(compgen -W "$(_kvbackup_choices "$path" "$prev")" -- "$cur")) ;;
        esac
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_kvbackup_options "$path")" -- "$cur"))
    elif [[ -n "$(_kvbackup_words "$path")" ]]; then
        COMPREPLY=($(compgen -W "$(_kvbackup_words "$path")" -- "$cur"))
    else
        case "$path" in
            {paths}) COMPREPLY=($(compgen -f -- "$cur")) ;;
        esac
    fi
}}
complete -o filenames -F _kvbackup {" ".join(COMMANDS)}
"""


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (one of SHELLS)."""
    if shell == "zsh":
        return (
            f"#compdef {' '.join(COMMANDS)}\n"
            "# zsh completion for kvbackup; load it with: source <(kvbackup completion zsh)\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(parser)
        )
    return bash_script(parser)
