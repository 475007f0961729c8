"""Shell completion for `orch` (`orch --completion bash|zsh`), generated from the argument parser.

Why generated: a hand-written list of flags drifts from `main.py`; this reads the parser's own
options and choices, so a new flag completes the day it is added. zsh uses the same function through
`bashcompinit`, so there is one script to keep right.
"""
from __future__ import annotations

import argparse
import shlex

BASH = r"""# orch completion (bash): eval "$(orch --completion bash)"
_orch_complete() {
    local cur prev
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    case "$prev" in
%(choices)s
        %(paths)s) COMPREPLY=( $(compgen -f -- "$cur") ); return 0 ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=( $(compgen -W %(flags)s -- "$cur") )
    elif [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=( $(compgen -W "runs" -- "$cur") )
    fi
    return 0
}
complete -o default -F _orch_complete orch
"""
ZSH_HEAD = '# orch completion (zsh): eval "$(orch --completion zsh)"\nautoload -U +X bashcompinit && bashcompinit\n'
PATH_FLAGS = ("--workflow-file", "--resume", "--run-plan", "--config", "--input", "--data", "--output-dir")


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell` (bash or zsh): flags, each flag's choices, files for paths."""
    flags, choices = [], []
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list of its options
        flags += [o for o in action.option_strings if o.startswith("--")]
        if action.choices and action.option_strings:
            words = " ".join(str(c) for c in action.choices)
            choices.append(f"        {'|'.join(action.option_strings)}) "
                           f"COMPREPLY=( $(compgen -W {shlex.quote(words)} -- \"$cur\") ); return 0 ;;")
    script = BASH % {"choices": "\n".join(choices), "paths": "|".join(PATH_FLAGS),
                     "flags": shlex.quote(" ".join(sorted(set(flags))))}
    return (ZSH_HEAD + script) if shell == "zsh" else script
