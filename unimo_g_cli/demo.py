"""`unimo-g demo OUT [--overwrite] [Beam options]`: the whole data job on the bundled sample, from any
directory: ten real photos (`unimo_g.sample_data`) through every stage with the `tiny` preset
(random-weight models, offline) on the DirectRunner, then the report, OUT/report.html.

The same as `unimo-g build --input <bundled sample> --output OUT --config tiny
--runner=DirectRunner` followed by `unimo-g report OUT`; Beam options go to the build.
"""

from __future__ import annotations

import argparse

from unimo_g.usage import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="output folder of the demo run (refused when not empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the shards, rejects, ledger and manifest of an earlier demo in OUTPUT")
    parser.add_argument_group("Beam pipeline options", "Beam's own options (e.g. --direct_num_workers=2) go to the "
                                                       "build (`unimo-g build --help`).")
    parser.set_defaults(passthrough=[])


def run(args: argparse.Namespace) -> int:
    """`unimo-g build` on the bundled sample, then `unimo-g report`: the two commands as typed."""
    from unimo_g.sample_data import sample_dir
    from unimo_g_cli.main import dispatch

    try:
        sample = sample_dir()
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    beam_options = list(args.passthrough)
    if not any(a == "--runner" or a.startswith("--runner=") for a in beam_options):
        beam_options.append("--runner=DirectRunner")
    build = ["build", "--input", str(sample), "--output", args.output, "--config", "tiny",
             *(["--overwrite"] if args.overwrite else []), *beam_options]
    code = dispatch(build)
    return code if code != 0 else dispatch(["report", args.output])
