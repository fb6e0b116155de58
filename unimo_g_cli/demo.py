"""`unimo-g demo OUT [--overwrite] [Beam options]`: the whole data job on the bundled sample, from any
directory: ten real photos (`unimo_g.sample_data`) through every stage with the `tiny` preset
(random-weight models, offline) on the DirectRunner, then the report, OUT/report.html.

The same as `unimo-g build --input <bundled sample> --output OUT --config tiny
--runner=DirectRunner` followed by `unimo-g report OUT`; extra arguments go to the build.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

from unimo_g.usage import OneLineParser, UsageError

PROG = "unimo-g demo"


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("output", help="output folder of the demo run (refused when not empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the shards, rejects, ledger and manifest of an earlier demo in OUTPUT")
    return parser


def _job(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from unimo_g.sample_data import sample_dir

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, build_options = build_parser().parse_known_args(argv)
        sample = sample_dir()
    except (UsageError, FileNotFoundError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    if not any(a == "--runner" or a.startswith("--runner=") for a in build_options):
        build_options.append("--runner=DirectRunner")
    build = ["--input", str(sample), "--output", args.output, "--config", "tiny",
             *(["--overwrite"] if args.overwrite else []), *build_options]
    code = _job("beam_runner:main")(build)  # loaded by name: the command layer imports no job module
    if code != 0:
        return code
    return _job("pipelines.report.main:main")([args.output])
