"""Beam's own pipeline options, known without importing Beam, so that the launcher can refuse an
unknown option at once (importing Beam takes about 2 s).

`beam_flags.txt` lists the option strings of every Beam `PipelineOptions` class of the release in
its first line, each with how many values it takes (0, 1 or ?). `known_flags()` returns them only
when that release is the one installed; otherwise None, and the caller asks Beam itself
(`pipelines.beam_options.unknown_beam_options`, which always runs once Beam is imported).
Regenerate after a Beam upgrade: `python -m pipelines.beam_flags --write` (tests/test_beam_runner.py
checks the file against the installed Beam when the releases agree). This module imports Beam only
to regenerate.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import Optional, Sequence

FLAGS_FILE = Path(__file__).with_name("beam_flags.txt")
TAKES_VALUE = ("1", "?")


def installed_beam() -> Optional[str]:
    try:
        return metadata.version("apache-beam")
    except metadata.PackageNotFoundError:
        return None


def read_flags(path: Path = FLAGS_FILE) -> tuple[str, dict[str, str]]:
    """(Beam release, {option string: "0" | "1" | "?"}) of a flags file."""
    lines = path.read_text().splitlines()
    release = lines[0].removeprefix("# apache-beam ").strip()
    return release, dict(line.split() for line in lines[1:] if line.strip())


def known_flags() -> Optional[dict[str, str]]:
    """The flags of the installed Beam, when the file describes that release; else None."""
    release, flags = read_flags()
    return flags if release == installed_beam() else None


def unknown_options(argv: Sequence[str], flags: dict[str, str]) -> list[str]:
    """The arguments of `argv` that are neither one of `flags` nor a value of one (as Beam's own
    parser, which allows no abbreviations, would leave them)."""
    unknown, i = [], 0
    while i < len(argv):
        token = argv[i]
        name, has_value = token.split("=", 1)[0], "=" in token
        if not token.startswith("-") or name not in flags:
            unknown.append(token)
        elif flags[name] in TAKES_VALUE and not has_value and i + 1 < len(argv):
            following = argv[i + 1]
            if flags[name] == "1" or not following.startswith("-"):
                i += 1
        i += 1
    return unknown


def beam_options_parser():
    """The parser Beam builds in `get_all_options`: every registered `PipelineOptions` class's flags
    (with the job's modules imported, so that every options class the job registers is seen)."""
    import pipelines.prompts.graph  # noqa: F401
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    classes: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    return parser


def live_flags() -> dict[str, str]:
    """The flags of the installed Beam, read from its option classes."""
    parser = beam_options_parser()
    flags = {}
    for action in parser._actions:
        takes = "0" if action.nargs == 0 else "?" if action.nargs == "?" else "1"
        flags.update({option: takes for option in action.option_strings if option.startswith("--")})
    return flags


def write_flags(path: Path = FLAGS_FILE) -> None:
    flags = live_flags()
    path.write_text(f"# apache-beam {installed_beam()}\n" + "".join(f"{k} {v}\n" for k, v in sorted(flags.items())))


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m pipelines.beam_flags --write")
    write_flags()
    print(f"{FLAGS_FILE}: {len(read_flags()[1])} flags of apache-beam {installed_beam()}")
