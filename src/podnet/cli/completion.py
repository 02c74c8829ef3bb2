"""podnet completion bash|zsh: a shell completion script, as `kubectl completion` and `kind completion`.

Generated from the command line itself (the parser of every command and the kinds podnet
knows), so it cannot fall behind a new flag. Commands, their flags, resource types after
`get`/`describe`, file names after -f/--config. zsh runs the same function through bashcompinit,
as kubectl's first zsh completion did: one script to keep right.
"""

from __future__ import annotations

import argparse
import sys

from podnet.api.kinds import KINDS

EXAMPLES = """examples:
  source <(podnet completion bash)                  # this shell
  podnet completion bash > /etc/bash_completion.d/podnet
  source <(podnet completion zsh)                   # zsh (needs compinit)
"""

BASH = """# podnet completion for bash; load it with: source <(podnet completion bash)
_podnet() {
    local cur prev command="" i
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in -*) ;; *) command="${COMP_WORDS[i]}"; break ;; esac
    done
    case "$prev" in
        -f|--filename|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    local flags="" words=""
    case "$command" in
        "") flags="-h --help --version"; words="%(commands)s" ;;
%(cases)s
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}
complete -o default -F _podnet podnet
"""

ZSH = """#compdef podnet
# podnet completion for zsh; load it with: source <(podnet completion zsh)
autoload -U +X bashcompinit && bashcompinit
"""


def add_parser(sub) -> None:
    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=["bash", "zsh"])


def resource_words() -> list[str]:
    """What `get` and `describe` accept: every kind's plural, singular and short names, and `all`."""
    words = {"all"}
    for info in KINDS:
        words.update((info.plural, info.singular, *info.short_names))
    return sorted(words)


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    commands = _subparsers(parser)
    cases = []
    for name, sub in sorted(commands.items()):
        flags = sorted(o for action in sub._actions for o in action.option_strings)  # noqa: SLF001
        words = [w for action in sub._actions for w in (action.choices or [])  # noqa: SLF001
                 if not action.option_strings]
        if name in ("get", "describe"):
            words = resource_words() + (["clusters"] if name == "get" else [])
        cases.append(f'        {name}) flags="{" ".join(flags)}"; words="{" ".join(map(str, words))}" ;;')
    bash = BASH % {"commands": " ".join(sorted(commands)), "cases": "\n".join(cases)}
    return bash if shell == "bash" else ZSH + bash


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._subparsers._group_actions if parser._subparsers else []:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def run(args) -> int:
    sys.stdout.write(script(args.shell, args.whole_parser()))  # the entry point's, with every command
    return 0
