"""`unimo-g report OUT [--out FILE] [--per-bucket K] [--per-reason K] [--seed S]`.

Writes OUT/report.html (or --out): accounting and rejects, prompt statistics beside the paper's,
entity and image histograms, run facts, and a stratified sample gallery. OUT may be local or an
object store path Beam can open (gs://, s3:// with the matching apache-beam extra).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

from unimo_g.usage import UsageError, run_job, spellings

PROG = "unimo-g report"
REPORT_NAME = "report.html"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output_dir", help="pipeline output folder (shards/, rejects/, manifest.json)")
    parser.add_argument("--out", help=f"HTML file to write (default OUTPUT_DIR/{REPORT_NAME})")
    parser.add_argument(*spellings("--per-bucket"), type=int, default=4,
                        help="sample rows per entity-count bucket (default 4)")
    parser.add_argument(*spellings("--per-reason"), type=int, default=3,
                        help="sample rejects per stage and reason (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument(*spellings("--max-side"), type=int, default=512, help="longer side of sample images in pixels")


def build_report(output_dir: str, out: Optional[str] = None, per_bucket: int = 4, per_reason: int = 3,
                 seed: int = 0, max_side: int = 512) -> tuple[str, object]:
    """Write the report; returns (its path, the collected statistics)."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.outputs.report.collect import collect
    from pipelines.outputs.report.files import write_text
    from pipelines.outputs.report.page import render

    collected = collect(output_dir, per_bucket, per_reason, seed)
    page = render(collected, output_dir.rstrip("/"), max_side)
    return write_text(out or FileSystems.join(output_dir, REPORT_NAME), page), collected


def run(args: argparse.Namespace) -> int:
    from unimo_g.schema import SchemaVersionError

    for flag in ("per_bucket", "per_reason"):
        if getattr(args, flag) < 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if args.max_side < 16:
        raise UsageError(f"--max-side must be >= 16, got {args.max_side}")
    # Beam's filesystems (slow to import) only once the arguments are usable
    from apache_beam.io.filesystems import FileSystems

    from pipelines.io.write import MANIFEST_NAME
    from pipelines.outputs.report.files import shard_files

    started = time.time()
    try:
        # Object stores have no folders: look for the files themselves.
        manifest = FileSystems.join(args.output_dir, MANIFEST_NAME)
        if not shard_files(args.output_dir) and not FileSystems.exists(manifest):
            raise UsageError(f"{args.output_dir} is not a pipeline output (no shards/*.parquet or manifest.json)")
        path, collected = build_report(args.output_dir, args.out, args.per_bucket, args.per_reason, args.seed,
                                       args.max_side)
    except SchemaVersionError as err:
        raise UsageError(str(err)) from None
    print(f"report: {path} ({collected.stats.rows:,} rows, {collected.rejects.total:,} rejects, "
          f"{time.time() - started:.1f} s)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, add_arguments, run, argv, __doc__.split("\n\n")[1].split("\n")[0])


if __name__ == "__main__":
    sys.exit(main())
