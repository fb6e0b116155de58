"""The run manifest (OUTPUT/manifest.json) and the lineage stored in every shard footer.

Counts come from the written files, never from runner metrics: inputs from the read ledger
(`pipelines.io.ledger`), rows from the shards, rejects by stage and reason from the reject files. They
are exact on every runner, and `inputs == rows + rejects` (with no input missing and no row id
twice) checks that every input was accounted for. The pipeline's last step (`WriteManifest`) writes
the manifest once every shard and reject file is committed, so detached runs, dry runs and runners
without metrics get one too; `python -m pipelines.outputs.verify OUTPUT` rebuilds and re-checks it.

    build_run_manifest   the manifest of an output folder, with a section per run
    write_run_manifest   THE one place manifest.json is written (add companions of it there)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import platform
import time
from collections import Counter
from importlib import metadata as package_metadata
from typing import Any, Iterator, Mapping, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.io.lease import release
from pipelines.io.ledger import listed_times, read_ledgers
from pipelines.io.write import MANIFEST_NAME, matching_files, reject_files_pattern, run_of_file, shard_files_pattern
from pipelines.outputs.card import write_dataset_card
from pipelines.outputs.shard_stats import summarize_shards
from unimo_g.config_tools import config_hash, to_dict
from unimo_g.schema import SCHEMA_VERSION, check_schema_version

LIBRARIES = ("apache-beam", "torch", "transformers", "diffusers", "spacy", "pyarrow", "pillow", "numpy")


def library_versions() -> dict[str, Optional[str]]:
    """Installed versions of the libraries that shape the output (None when not installed)."""
    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _package_version(name: str) -> Optional[str]:
    try:
        return package_metadata.version(name.replace("_", "-"))
    except (package_metadata.PackageNotFoundError, ValueError):
        return None


def _file_sha256(path: str, what: str) -> str:
    """sha256 of a file Beam reads; ValueError naming it (`what`: the config key) when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:  # local files raise FileNotFoundError, Beam's object stores BeamIOError (an IOError)
        raise ValueError(f"{what}: cannot read {path!r}: {err}") from err
    return digest.hexdigest()


def model_ids(config) -> dict[str, dict[str, Any]]:
    """Model id and revision of each model stage of a PipelineConfig (`tiny` = random weights)."""
    models: dict[str, dict[str, Any]] = {}
    phrases = getattr(config, "phrases", None)
    if phrases is not None:
        models["phrases"] = {"id": phrases.spacy_model, "revision": _package_version(phrases.spacy_model)}
    entities = getattr(config, "entities", None)
    if entities is not None and entities.model_id:  # the model of the paper's step 1, and how it was asked
        prompt, strict = entities.prompts
        models["entities"] = {"id": entities.model_id, "revision": entities.revision, "backend": entities.backend,
                              "seed": entities.seed, "source": entities.source, "prompt": prompt,
                              "strict_prompt": strict, "generation": {"do_sample": False, "num_beams": 1,
                                                                      "max_new_tokens": entities.max_new_tokens}}
    for stage in ("grounding", "segmentation"):
        section = getattr(config, stage, None)
        if section is not None:
            models[stage] = {"id": section.model, "revision": section.revision, "backend": section.backend,
                             "seed": section.seed}
    scores = getattr(config, "scores", None)
    if scores is not None and scores.enabled:
        head = scores.aesthetic_head
        models["scores"] = {"id": scores.model, "revision": scores.revision, "backend": scores.backend,
                            "seed": scores.seed, "aesthetic_head": head,
                            "aesthetic_head_sha256": _file_sha256(head, "scores.aesthetic_head") if head else None}
    return models


def build_lineage(config, models: Optional[Mapping[str, Any]] = None) -> dict:
    """What made a shard, stored in its Parquet footer: deterministic (no times), so a rerun with the
    same config and libraries writes the same metadata."""
    return {
        "schema_version": SCHEMA_VERSION,
        "config": to_dict(config),
        "config_hash": config_hash(config),
        "models": dict(models) if models is not None else model_ids(config),
        "libraries": library_versions(),
        "seed": getattr(config, "seed", None),
        "random_weights": bool(getattr(config, "random_weights", False)),
    }


def _read_checked(path: str, columns: list[str]) -> pa.Table:
    """`columns` of the shard or reject file at `path`; SchemaVersionError for an unsupported version."""
    with FileSystems.open(path) as handle:
        table = pq.read_table(handle, columns=columns)
    check_schema_version(table.schema.metadata, where=path)
    return table


def count_rejects(output_dir: str) -> dict:
    """Rejects actually written under OUTPUT/rejects: {"rejects", "rejects_by_stage": {stage: n},
    "rejects_by_reason": {stage: {reason: n}}, "reject_files"}. Refuses files without a supported
    schema version (SchemaVersionError)."""
    by_reason: Counter = Counter()
    reject_files = matching_files(reject_files_pattern(output_dir))
    for path in reject_files:
        table = _read_checked(path, ["stage", "reason"])
        by_reason.update(zip(table.column("stage").to_pylist(), table.column("reason").to_pylist()))
    return {**reject_tallies(by_reason), "reject_files": len(reject_files)}


def reject_tallies(by_reason: Counter) -> dict:
    """{(stage, reason): n} -> {"rejects", "rejects_by_stage": {stage: n},
    "rejects_by_reason": {stage: {reason: n}}}, sorted."""
    by_stage: Counter = Counter()
    nested: dict[str, dict[str, int]] = {}
    for (stage, reason), count in sorted(by_reason.items()):
        by_stage[stage] += count
        nested.setdefault(stage, {})[reason] = count
    return {"rejects": sum(by_stage.values()), "rejects_by_stage": dict(sorted(by_stage.items())),
            "rejects_by_reason": nested}


def write_manifest(output_dir: str, manifest: Mapping[str, Any]) -> str:
    """Write OUTPUT/manifest.json (via a temporary name, then a rename); returns its path."""
    path = FileSystems.join(output_dir, MANIFEST_NAME)
    temporary = path + ".tmp"
    with FileSystems.create(temporary) as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])
    return path


def read_manifest(output_dir: str) -> dict:
    with FileSystems.open(FileSystems.join(output_dir, MANIFEST_NAME)) as handle:
        return json.loads(handle.read().decode("utf-8"))


# ---------------------------------------------------------------- the manifest of an output folder

LOGGER = logging.getLogger(__name__)
MISSING_EXAMPLES = 10  # keys of missing inputs listed in the manifest


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _run_counts() -> dict:
    return {"inputs_read": 0, "inputs_skipped": 0, "rows": 0, "rejects": 0, "rejects_by_reason": {}}


ROW, REJECT = 0, 1  # kinds of output; a row sorts before a reject


def output_key_columns(output_dir: str) -> Iterator[tuple[int, str, list]]:
    """(ROW or REJECT, file path, the source key of each of its rows in order) of every shard and
    reject file under `output_dir` (the `source_key` / `source` column alone)."""
    for kind, pattern, column in ((ROW, shard_files_pattern(output_dir), "source_key"),
                                  (REJECT, reject_files_pattern(output_dir), "source")):
        for path in matching_files(pattern):
            yield kind, path, _read_checked(path, [column]).column(column).to_pylist()


def output_keys(output_dir: str) -> Counter:
    """Source keys of every row and reject under `output_dir`, counted."""
    keys: Counter = Counter()
    for _, _, column in output_key_columns(output_dir):
        keys.update(column)
    return keys


def collect_counts(output_dir: str) -> tuple[dict, dict[str, dict]]:
    """(counts, runs) of everything under `output_dir`, from its files alone.

    counts: inputs (distinct inputs any run's ledger lists), rows, rejects, rejects_by_stage,
    rejects_by_reason {stage: {reason: n}}, shard_files, reject_files, missing (inputs with no row
    and no reject), unexpected (rows/rejects beyond the inputs listed), duplicate_row_ids, accounted,
    missing_examples (a few missing keys). runs: {run id: inputs_read, inputs_skipped, rows,
    rejects, rejects_by_reason}. Small columns only (keys, stage, reason), never image bytes.
    Refuses files without a supported schema version (SchemaVersionError).
    """
    runs: dict[str, dict] = {}
    outputs_by_key: Counter = Counter()
    row_ids: Counter = Counter()
    shard_files = matching_files(shard_files_pattern(output_dir))
    for path in shard_files:
        table = _read_checked(path, ["id", "source_key"])
        outputs_by_key.update(table.column("source_key").to_pylist())
        row_ids.update(table.column("id").to_pylist())
        runs.setdefault(run_of_file(path) or "unknown", _run_counts())["rows"] += table.num_rows
    by_reason: Counter = Counter()
    reject_files = matching_files(reject_files_pattern(output_dir))
    for path in reject_files:
        table = _read_checked(path, ["source", "stage", "reason"])
        outputs_by_key.update(table.column("source").to_pylist())
        pairs = list(zip(table.column("stage").to_pylist(), table.column("reason").to_pylist()))
        by_reason.update(pairs)
        run = runs.setdefault(run_of_file(path) or "unknown", _run_counts())
        run["rejects"] += len(pairs)
        for stage, reason in pairs:
            run["rejects_by_reason"].setdefault(stage, {}).setdefault(reason, 0)
            run["rejects_by_reason"][stage][reason] += 1

    ledgers = read_ledgers(output_dir)
    for run_id, ledger in ledgers.items():
        run = runs.setdefault(run_id, _run_counts())
        run["inputs_read"] = sum(ledger["read"].values())
        run["inputs_skipped"] = sum(ledger["skipped"].values())
    inputs_by_key = listed_times(ledgers)

    missing_keys = inputs_by_key - outputs_by_key
    unexpected = outputs_by_key - inputs_by_key
    tallies = reject_tallies(by_reason)
    rows, rejects, inputs = sum(row_ids.values()), tallies["rejects"], sum(inputs_by_key.values())
    missing, duplicates = sum(missing_keys.values()), sum(c - 1 for c in row_ids.values() if c > 1)
    counts = {
        "inputs": inputs,
        "rows": rows,
        **tallies,
        "shard_files": len(shard_files),
        "reject_files": len(reject_files),
        "missing": missing,
        "missing_examples": sorted(missing_keys)[:MISSING_EXAMPLES],
        "unexpected": sum(unexpected.values()),
        "duplicate_row_ids": duplicates,
        # duplicate ids are legitimate with dedupe.method=none; a row written twice shows as unexpected
        "accounted": inputs == rows + rejects and missing == 0 and not unexpected,
    }
    return counts, dict(sorted(runs.items()))


def build_run_manifest(output_dir: str, lineage: Mapping[str, Any], run: Optional[Mapping[str, Any]] = None,
                       previous: Optional[Mapping[str, Any]] = None) -> dict:
    """The manifest of `output_dir`: lineage, counts over all runs (`collect_counts`), and `runs`,
    one section per run id with its counts, plus what `run` says about this run (id, runner,
    input, mode, started_at, ...) and what `previous` (the manifest.json found) said about earlier
    runs."""
    counts, runs = collect_counts(output_dir)
    sections = {run_id: {**section, **_run_counts()} for run_id, section in (previous or {}).get("runs", {}).items()}
    for run_id, run_counts in runs.items():
        sections.setdefault(run_id, {}).update(run_counts)
    manifest = {**lineage, "created_at": _now(), "output_dir": output_dir, "counts": counts,
                "statistics": summarize_shards(output_dir)}
    if run is not None:
        started = run.get("started_at_s")
        wall_time_s = round(time.time() - started, 3) if started else None
        sections.setdefault(run["id"], _run_counts()).update(
            {k: v for k, v in run.items() if k not in ("id", "started_at_s")}, wall_time_s=wall_time_s)
        manifest.update(run_id=run["id"], runner=run.get("runner"), input=run.get("input"), wall_time_s=wall_time_s)
    manifest["runs"] = dict(sorted(sections.items()))
    return manifest


def write_run_manifest(output_dir: str, manifest: Mapping[str, Any]) -> str:
    """Write OUTPUT/manifest.json; the one function that does, so what must accompany every
    manifest (the dataset card) is added here. Returns its path."""
    path = write_manifest(output_dir, manifest)
    write_dataset_card(output_dir, manifest)
    return path


TOP_REASONS = 3  # reject reasons named in the summary line


def top_reasons(rejects_by_reason: Mapping[str, Mapping[str, int]], limit: int = TOP_REASONS) -> str:
    """"stage/reason n, ..." of the most frequent reject reasons (ties by name)."""
    pairs = sorted(((n, f"{stage}/{reason}") for stage, reasons in rejects_by_reason.items()
                    for reason, n in reasons.items()), key=lambda p: (-p[0], p[1]))
    return ", ".join(f"{name} {n}" for n, name in pairs[:limit])


def summary_line(manifest: Mapping[str, Any]) -> str:
    counts = manifest["counts"]
    line = f"{counts['inputs']} inputs -> {counts['rows']} rows + {counts['rejects']} rejects"
    if counts["rejects"]:
        line += f" (top reasons: {top_reasons(counts.get('rejects_by_reason', {}))})"
    if not counts["accounted"]:
        line += (f"; NOT ACCOUNTED: {counts['missing']} inputs missing, {counts['unexpected']} rows or rejects "
                 f"beyond the inputs read")
    return line


class _WriteManifestFn(beam.DoFn):
    def __init__(self, output_dir: str, lineage: Mapping[str, Any], run: Mapping[str, Any]):
        self.output_dir = output_dir
        self.lineage = dict(lineage)
        self.run = dict(run)

    def process(self, _, **side_inputs):
        previous = read_manifest(self.output_dir) if FileSystems.exists(
            FileSystems.join(self.output_dir, MANIFEST_NAME)) else None
        committed_files = [v for k, v in side_inputs.items() if k.startswith("files")]
        reports = {k[len("report_"):]: v for k, v in side_inputs.items() if k.startswith("report_")}
        run = {**self.run, **reports, "finished_at": _now(),
               "files_committed": sum(len(f) for f in committed_files)}
        manifest = build_run_manifest(self.output_dir, self.lineage, run, previous)
        path = write_run_manifest(self.output_dir, manifest)
        LOGGER.debug("%s; manifest: %s", summary_line(manifest), path)  # the launcher logs it (local runs)
        if self.run.get("detached"):  # no launcher is left to give the output folder's lease back
            release(self.output_dir, self.run["id"])
        yield path


class WriteManifest(beam.PTransform):
    """The pipeline's last step: once every PCollection in `committed` (the file records of the
    shard and reject writers) is complete, write OUTPUT/manifest.json from the files. `reports`:
    PCollections of one element each, recorded under their name in this run's section (e.g.
    `evaluation_images`: how many evaluation images were hashed from which `exclude.images` paths).

    Applied to the pipeline (a single Create element); the write results come in as side inputs,
    which a runner makes available only once their writes have finished."""

    def __init__(self, output_dir: str, lineage: Mapping[str, Any], run: Mapping[str, Any],
                 committed: Sequence[beam.PCollection], reports: Optional[Mapping[str, beam.PCollection]] = None):
        super().__init__()
        self.fn = _WriteManifestFn(output_dir, lineage, run)
        self.committed = list(committed)
        self.reports = dict(reports or {})

    def expand(self, pbegin):
        waits = {f"files{i}": beam.pvalue.AsList(files) for i, files in enumerate(self.committed)}
        waits.update({f"report_{name}": beam.pvalue.AsSingleton(report) for name, report in self.reports.items()})
        return pbegin | "Once" >> beam.Create([None]) | "WriteManifest" >> beam.ParDo(self.fn, **waits)
