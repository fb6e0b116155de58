"""`unimo-g COMMAND [ARGS]`: one installed command for every job of the toolkit.

    unimo-g --help | --version
    unimo-g COMMAND --help
    unimo-g build --input data/sample --output demo_output --config tiny --runner=DirectRunner

Each COMMAND is an argparse subcommand whose arguments are its job's own (`add_arguments`) and
which runs the job's `run(args)`; see `unimo_g_cli.commands`. Usage errors: one line on stderr,
exit code 2.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from unimo_g.process_exit import exit_now
from unimo_g.usage import OneLineParser, UsageError, answer, parse, report
from unimo_g_cli import __version__
from unimo_g_cli.commands import COMMANDS

PROG = "unimo-g"
NOTES = """\
examples:
{examples}

--config takes a bundled preset name (`unimo-g presets`) or a YAML path. Flags are kebab-case; the
underscore spellings (--input_format) also work. Exit codes: 0 ok, 1 failed run, 2 usage,
130 / 143 stopped by SIGINT / SIGTERM."""


def build_parser(selected: Optional[str] = None) -> OneLineParser:
    """The `unimo-g` parser. Only the `selected` command's job is imported and given its arguments,
    so that `unimo-g --help` and each command start without loading every job."""
    examples = "\n".join(f"  $ {command.example}" for command in COMMANDS.values())
    parser = OneLineParser(prog=PROG, epilog=NOTES.format(examples=examples),
                           description="UNIMO-G multimodal-prompt data construction (Apache Beam) and training "
                                       "(PyTorch).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subcommands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND",
                                        help="`unimo-g COMMAND --help` lists its options")
    for command in COMMANDS.values():
        subparser = subcommands.add_parser(command.name, help=command.summary, description=command.summary,
                                           epilog=f"example:\n  $ {command.example}")
        if command.name == selected:
            command.job().add_arguments(subparser)
    return parser


def dispatch(argv: Sequence[str]) -> int:
    """Parse `argv` and run its command's job; the exit code."""
    selected = next((token for token in argv if not token.startswith("-")), None)
    selected = selected if selected in COMMANDS else None
    parser = build_parser(selected)
    try:
        args = parse(parser, argv)
        if args.command is None:
            parser.error(f"a command is required (one of {', '.join(COMMANDS)}); see `{PROG} --help`")
    except UsageError as err:
        if selected is not None and err.prog == PROG:  # arguments the command's parser left over
            err.prog = f"{PROG} {selected}"
        return report(PROG, err)
    return answer(f"{PROG} {args.command}", lambda: COMMANDS[args.command].job().run(args))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return dispatch(argv)
    except SystemExit as exit_:  # --help and --version print and exit through argparse; a job may exit too
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)


def entry() -> None:
    """The installed `unimo-g` command: `main`, then `exit_now` with its code."""
    from unimo_g.quiet_logs import install

    install()  # before any job imports Beam (its import-time warnings); --log-level DEBUG lets them through
    exit_now(main())


if __name__ == "__main__":
    entry()
