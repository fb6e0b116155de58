"""Command-line errors shared by every entry point: one line on stderr, exit code 2.

`OneLineParser` turns argparse's errors into `UsageError`; each command catches `UsageError`,
prints `PROG: error: MESSAGE` and returns 2. Its flags are kebab-case (`--input-format`), each shown
once in --help; the underscore spelling a user may type (`--input_format`) is read as the same
flag. Options the parser does not know (Beam's `--direct_num_workers`) pass through unchanged."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Iterable, Optional, Sequence


class UsageError(Exception):
    """An argument, config value or input that cannot be used; reported in one line, exit code 2."""


def respell_flags(argv: Sequence[str], known: Iterable[str]) -> list[str]:
    """`argv` with each `--flag_name[=value]` that is not in `known` but whose kebab-case spelling
    is, written in that spelling. Everything after a bare `--` is left alone."""
    known = set(known)
    out: list[str] = []
    for i, token in enumerate(argv):
        if token == "--":
            return out + list(argv[i:])
        if token.startswith("--") and "_" in token.partition("=")[0]:
            flag, sep, value = token.partition("=")
            kebab = "--" + flag[2:].replace("_", "-")
            if flag not in known and kebab in known:
                token = kebab + sep + value
        out.append(token)
    return out


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are `UsageError`s instead of a usage dump, and which reads the
    underscore spelling of its kebab-case flags."""

    def error(self, message: str):  # one line, exit 2, instead of argparse's usage dump
        raise UsageError(message)

    def parse_known_args(self, args: Optional[Sequence[str]] = None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        known = {flag for action in self._actions for flag in action.option_strings}
        return super().parse_known_args(respell_flags(args, known), namespace)


def run_command(prog: str, command: Callable[[], str]) -> int:
    """Run `command` and print the summary line it returns (exit code 0); a `UsageError` it raises
    is printed as `PROG: error: MESSAGE` on stderr (exit code 2)."""
    try:
        summary = command()
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print(summary)
    return 0
