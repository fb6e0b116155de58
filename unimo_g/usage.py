"""The command-line contract of every job, and its errors.

A job exposes `add_arguments(parser)` and `run(args) -> int` in one module that imports neither
torch nor Beam until `run`. `unimo-g` (`unimo_g_cli`) makes each job an argparse subcommand;
`run_job` runs one alone (`python beam_runner.py`, `python -m trainers.train`).

- Flags are kebab-case. A flag's underscore spelling (`--input_format`) is an argparse alias
  (`spellings`), accepted but left out of --help (`HelpFormatter`), so each flag shows once.
- A job whose parser sets the default `passthrough` (a list) takes the options its parser does not
  know, in that list (Beam's pipeline options); any other job refuses them.
- `parse` records the command line as typed in `args.command_line` (program first), for messages
  that say what to type next ("continue with: ...").
- Errors are one line on stderr: `UsageError` (an argument, config value or input that cannot be
  used) exits with code 2, `RunFailed` (a run that started and then failed on its data) with 1.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Callable, Optional, Sequence

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """An argument, config value or input that cannot be used; reported in one line, exit code 2.
    `prog`: the program that refused it, when a parser did (a subcommand's parser names itself)."""

    def __init__(self, message: str, prog: Optional[str] = None):
        super().__init__(message)
        self.prog = prog


class RunFailed(Exception):
    """A run that started and failed on what it met (an unreadable row); one line, exit code 1."""


def spellings(flag: str) -> tuple[str, ...]:
    """A kebab-case flag and, when it has a dash, its underscore spelling as an alias:
    `spellings("--input-format") == ("--input-format", "--input_format")`."""
    alias = "--" + flag[2:].replace("-", "_")
    return (flag,) if alias == flag else (flag, alias)


def _is_alias(option: str, action: argparse.Action) -> bool:
    return "_" in option and "--" + option[2:].replace("_", "-") in action.option_strings


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help with each flag in its kebab-case spelling only (aliases stay out)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not any(_is_alias(option, action) for option in action.option_strings):
            return super()._format_action_invocation(action)
        shown = copy.copy(action)
        shown.option_strings = [option for option in action.option_strings if not _is_alias(option, action)]
        return super()._format_action_invocation(shown)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are `UsageError`s instead of a usage dump; no abbreviations."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # a typo (`--resum`) is an error, never another flag
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(message, self.prog)


def parse(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """`argv` parsed; options the parser does not know go to `args.passthrough` when the job takes
    them (its parser sets that default), else they are a usage error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if getattr(args, "passthrough", None) is None:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.passthrough = unknown
    args.command_line = [typed_program(parser.prog), *argv]
    return args


def typed_program(prog: str) -> str:
    """How a user starts program `prog`: a script (`beam_runner.py`) through python."""
    return f"python {prog}" if prog.endswith(".py") else prog


def one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def report(prog: str, err: UsageError | RunFailed) -> int:
    """Print `PROG: error: MESSAGE` on stderr; the exit code of `err` (2 usage, 1 failed run)."""
    print(f"{getattr(err, 'prog', None) or prog}: error: {one_line(err)}", file=sys.stderr)
    return 2 if isinstance(err, UsageError) else 1


def answer(prog: str, run: Callable[[], int]) -> int:
    """`run()`'s exit code; a `UsageError` or `RunFailed` it raises is reported (`report`)."""
    try:
        return run()
    except (UsageError, RunFailed) as err:
        return report(prog, err)


def job_parser(prog: str, add_arguments: AddArguments, description: Optional[str] = None) -> OneLineParser:
    parser = OneLineParser(prog=prog, description=description)
    add_arguments(parser)
    return parser


def run_job(prog: str, add_arguments: AddArguments, run: Run, argv: Optional[Sequence[str]] = None,
            description: Optional[str] = None) -> int:
    """Run one job on its own, as program `prog` (the jobs' `main(argv)`)."""
    parser = job_parser(prog, add_arguments, description)
    return answer(prog, lambda: run(parse(parser, argv)))


def first_paragraph(doc: Optional[str]) -> Optional[str]:
    """A module docstring's first paragraph: the description of its command."""
    return doc.split("\n\n")[0].strip() if doc else None
