"""Command-line errors shared by every entry point: one line on stderr, exit code 2.

`OneLineParser` turns argparse's errors into `UsageError`; each command catches `UsageError`,
prints `PROG: error: MESSAGE` and returns 2."""

from __future__ import annotations

import argparse
import sys
from typing import Callable


class UsageError(Exception):
    """An argument, config value or input that cannot be used; reported in one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are `UsageError`s instead of a usage dump."""

    def error(self, message: str):  # one line, exit 2, instead of argparse's usage dump
        raise UsageError(message)


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
