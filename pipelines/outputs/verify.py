"""Rebuild and re-check the manifest of an output folder from its files alone.

    python -m pipelines.outputs.verify OUTPUT [--input PATH [--input-format F]] [--repair] [--write]
    (also: python beam_runner.py verify OUTPUT, unimo-g verify OUTPUT)

Counts inputs from the read ledger, rows from shards/, rejects from rejects/ (small columns only)
and checks that every input is accounted for: inputs = rows + rejects, no input missing, no row
id twice, and that manifest.json says the same. With --input (or the input the manifest records,
when it can be read) it also lists the input's keys, without reading an image, and names those
with neither a row nor a reject: what a killed, failed or disk-full run left to do. Temporary files
of an unfinished run are listed (`--resume` deletes them). `--repair` first removes the outputs that
overlapping runs wrote twice for one input (`pipelines.outputs.repair`; `--resume` does it too). Exit 0
when everything holds; 1 when it
does not (or the run's last step never wrote manifest.json), naming how many inputs are missing;
2 for unusable arguments. `--write` rewrites manifest.json from the files.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from unimo_g.usage import UsageError, first_paragraph, run_job, spellings

PROG = "python -m pipelines.outputs.verify"

COMPARED = ("inputs", "rows", "rejects", "rejects_by_reason", "accounted")  # what manifest.json must agree on


def _stored_manifest(output_dir: str) -> Optional[dict]:
    from apache_beam.io.filesystems import FileSystems

    from pipelines.io.write import MANIFEST_NAME
    from pipelines.outputs.manifest import read_manifest

    if not FileSystems.exists(FileSystems.join(output_dir, MANIFEST_NAME)):
        return None
    return read_manifest(output_dir)


def _lineage(output_dir: str, stored: Optional[dict]) -> dict:
    """The lineage to rewrite a manifest with: the stored manifest's, else a shard footer's."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.io.write import shard_files_pattern
    from pipelines.outputs.manifest import matching_files
    from unimo_g.schema import lineage_of

    if stored is not None:
        return {k: v for k, v in stored.items() if k not in ("counts", "runs", "created_at", "output_dir")}
    for path in matching_files(shard_files_pattern(output_dir))[:1]:
        import pyarrow.parquet as pq

        with FileSystems.open(path) as handle:
            return lineage_of(pq.ParquetFile(handle).schema_arrow.metadata)
    return {}


def _recorded_input(stored: Optional[dict]) -> Optional[tuple[str, str]]:
    """(path, format) of the input the manifest's last run read, when it names one that exists."""
    if not stored:
        return None
    recorded = stored.get("runs", {}).get(stored.get("run_id"), {}).get("input") or {}
    path = recorded.get("path")
    if not path:
        return None
    from pipelines.local_checks import local_input_missing

    return None if local_input_missing(path) else (path, recorded.get("format", "auto"))


def unprocessed_inputs(output_dir: str, input_path: str, input_format: str = "auto") -> tuple[int, list[str]]:
    """(inputs `input_path` holds, the sorted keys of those with neither a row nor a reject in
    `output_dir`); keys are listed without reading an image (`pipelines.io.input_keys`)."""
    from pipelines.io.input_keys import unit_keys
    from pipelines.io.sources import plan_read
    from pipelines.outputs.manifest import output_keys

    listed = {key for unit in plan_read(input_path, input_format).units for key in unit_keys(unit)}
    return len(listed), sorted(listed - set(output_keys(output_dir)))


def verify(output_dir: str, write: bool = False, input_path: Optional[str] = None,
           input_format: str = "auto", repair: bool = False) -> tuple[int, list[str]]:
    """Check `output_dir`; returns (exit code, lines to print). Raises ValueError for a path that is
    not an output folder (or an input that cannot be listed)."""
    from apache_beam.io.filesystems import FileSystems  # Beam is slow to import: only once the arguments are usable

    from pipelines.io.resume import leftover_files
    from pipelines.io.write import MANIFEST_NAME
    from pipelines.outputs.manifest import build_run_manifest, collect_counts, summary_line, write_run_manifest

    if not FileSystems.exists(output_dir):
        raise ValueError(f"no such output folder: {output_dir!r}")
    repaired = []
    if repair:
        from pipelines.outputs.repair import repair as remove_surplus

        done = remove_surplus(output_dir)
        repaired = [f"repaired: {done['removed']} outputs written twice removed from {done['files']} files"]
    counts, _ = collect_counts(output_dir)
    stored = _stored_manifest(output_dir)
    lines = [f"{output_dir}: {summary_line({'counts': counts})}", *repaired]
    ok = counts["accounted"]
    if not ok and counts["missing"]:
        lines.append(f"{counts['missing']} inputs missing (read, but neither a row nor a reject), e.g. "
                     f"{', '.join(counts['missing_examples'][:3])}; rerun with --resume to process them")
    source = (input_path, input_format) if input_path else _recorded_input(stored)
    if source is not None:
        listed, missing = unprocessed_inputs(output_dir, *source)
        lines.append(f"input {source[0]}: {listed} inputs, {len(missing)} with neither a row nor a reject"
                     + (f", e.g. {', '.join(missing[:3])}; --resume processes them" if missing else ""))
        ok = ok and not missing
    leftovers = leftover_files(output_dir)
    if leftovers:
        lines.append(f"{len(leftovers)} temporary files of an unfinished run (--resume deletes them), e.g. "
                     f"{leftovers[0]}")
    if stored is None:
        ok = ok and write
        lines.append(f"no {MANIFEST_NAME}: the run's last step did not run (use --write to write it from the files"
                     + ("" if source else "; --input PATH counts the inputs it did not reach") + ")")
    else:
        disagree = [k for k in COMPARED if stored.get("counts", {}).get(k) != counts[k]]
        if disagree:
            ok = False
            shown = ", ".join(f"{k}: manifest {stored.get('counts', {}).get(k)!r} vs files {counts[k]!r}"
                              for k in disagree)
            lines.append(f"{MANIFEST_NAME} disagrees with the files ({shown})")
    if write:
        manifest = build_run_manifest(output_dir, _lineage(output_dir, stored), previous=stored)
        lines.append(f"rewrote {write_run_manifest(output_dir, manifest)}")
    return (0 if ok else 1), lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="output folder of a pipeline run")
    parser.add_argument("--input", help="the run's input: list its keys and name those with no row and no reject "
                                        "(default: the input manifest.json records, when it can be read)")
    parser.add_argument(*spellings("--input-format"), default="auto",
                        choices=("auto", "img2dataset", "folder", "jsonl", "parquet"),
                        help="how to read --input (as the build did)")
    parser.add_argument("--repair", action="store_true",
                        help="first remove the outputs overlapping runs wrote twice for one input (one is kept)")
    parser.add_argument("--write", action="store_true", help="rewrite manifest.json from the files")


def run(args: argparse.Namespace) -> int:
    try:
        code, lines = verify(args.output, args.write, args.input, args.input_format, args.repair)
    except ValueError as err:  # not an output folder, or an input that cannot be listed
        raise UsageError(str(err)) from None
    for line in lines:
        print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, add_arguments, run, argv, first_paragraph(__doc__))


if __name__ == "__main__":
    from unimo_g.process_exit import exit_now

    exit_now(main())
