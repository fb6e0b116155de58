"""`unimo-g COMMAND [ARGS]`: one installed command for every job of the toolkit.

    unimo-g --help | --version
    unimo-g COMMAND --help
    unimo-g build --input data/sample --output demo_output --config tiny --runner=DirectRunner

Each COMMAND runs an existing entry point (`beam_runner.main`, `trainers.train.main`, ...), given
the remaining arguments; see `unimo_g_cli.commands`. Usage errors: one line on stderr, exit code 2.
"""

from __future__ import annotations

import importlib
import io
import sys
from typing import Callable, Optional, Sequence

from unimo_g.process_exit import exit_now
from unimo_g.usage import UsageError
from unimo_g_cli import __version__
from unimo_g_cli.commands import COMMANDS, Command

PROG = "unimo-g"
USAGE = f"usage: {PROG} [--help] [--version] COMMAND [ARGS ...]"


def load(target: str) -> Callable:
    """The function named by 'module:function'."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def top_help() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        USAGE,
        "",
        "UNIMO-G multimodal-prompt data construction (Apache Beam) and training (PyTorch).",
        "",
        "commands (each with an example; `unimo-g COMMAND --help` lists its options):",
    ]
    for command in COMMANDS.values():
        lines += [f"  {command.name:<{width}}  {command.summary}", f"  {'':<{width}}    $ {command.example}"]
    lines += [
        "",
        "--config takes a bundled preset name (`unimo-g presets`) or a YAML path. Flags are kebab-case;",
        "the underscore spellings (--input_format) also work. Exit codes: 0 ok, 1 failed run, 2 usage,",
        "130 / 143 stopped by SIGINT / SIGTERM.",
    ]
    return "\n".join(lines) + "\n"


class _Respelled(io.TextIOBase):
    """A text stream that writes through to `stream`, naming the job's program `unimo-g NAME`."""

    def __init__(self, stream, old: str, new: str):
        self._stream, self._old, self._new = stream, old, new

    def write(self, text: str) -> int:
        self._stream.write(text.replace(f"{self._old}: error:", f"{self._new}: error:"))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self):
        return getattr(self._stream, "encoding", "utf-8")


def command_parser(command: Command):
    """The job's own argparse parser, named `unimo-g NAME` (importing neither torch nor Beam)."""
    parser = load(command.parser)()
    parser.prog = f"{PROG} {command.name}"
    return parser


def command_help(command: Command) -> str:
    """The job's own --help under the name `unimo-g NAME`, with an example first."""
    return (f"{PROG} {command.name}: {command.summary}\n\nexample:\n  $ {command.example}\n\n"
            f"{command_parser(command).format_help()}")


def run_command(command: Command, argv: Sequence[str]) -> int:
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(command_help(command))
        return 0
    parser = command_parser(command)
    try:  # the arguments are checked before the job (and torch or Beam behind it) loads
        parser.parse_known_args(argv) if command.passthrough else parser.parse_args(argv)
    except UsageError as err:
        return usage_error(str(err), f"{PROG} {command.name}")
    target = load(command.target)
    stderr = sys.stderr
    if command.prog:
        sys.stderr = _Respelled(stderr, command.prog, f"{PROG} {command.name}")
    try:
        code = target(list(argv))
    except SystemExit as exit_:  # a job that exits instead of returning
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.stderr = stderr
    return int(code or 0)


def usage_error(message: str, prog: str = PROG) -> int:
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        return usage_error(f"a command is required (one of {', '.join(COMMANDS)}); see `{PROG} --help`")
    first, rest = argv[0], argv[1:]
    if first in ("-h", "--help", "help") and not rest:
        sys.stdout.write(top_help())
        return 0
    if first == "help" and rest and rest[0] in COMMANDS:
        sys.stdout.write(command_help(COMMANDS[rest[0]]))
        return 0
    if first == "--version":
        print(f"{PROG} {__version__}")
        return 0
    if first.startswith("-"):
        return usage_error(f"unknown option {first!r} before the command; see `{PROG} --help`")
    command = COMMANDS.get(first)
    if command is None:
        return usage_error(f"unknown command {first!r} (choose from {', '.join(COMMANDS)})")
    return run_command(command, rest)


def entry() -> None:
    """The installed `unimo-g` command: `main`, then `exit_now` with its code."""
    from unimo_g.quiet_logs import install

    install()  # before any job imports Beam (its import-time warnings); --log-level DEBUG lets them through
    exit_now(main())


if __name__ == "__main__":
    entry()
