"""The run manifest (OUTPUT/manifest.json) and the lineage stored in every shard footer.

Counts come from the written files, not from runner metrics: rows from the shard footers, rejects
by stage and reason from the reject shards' columns. They are exact on every runner, and
`inputs == rows + rejects` checks that every input was accounted for.
"""

from __future__ import annotations

import datetime
import json
import platform
from collections import Counter
from importlib import metadata as package_metadata
from typing import Any, Mapping, Optional

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.shard_stats import summarize_shards
from pipelines.write import MANIFEST_NAME, reject_files_pattern, shard_files_pattern
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


def model_ids(config) -> dict[str, dict[str, Any]]:
    """Model id and revision of each model stage of a PipelineConfig (`tiny` = random weights)."""
    models: dict[str, dict[str, Any]] = {}
    phrases = getattr(config, "phrases", None)
    if phrases is not None:
        models["phrases"] = {"id": phrases.spacy_model, "revision": _package_version(phrases.spacy_model)}
    for stage in ("grounding", "segmentation"):
        section = getattr(config, stage, None)
        if section is not None:
            models[stage] = {"id": section.model, "revision": section.revision, "backend": section.backend,
                             "seed": section.seed}
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


def matching_files(pattern: str) -> list[str]:
    """Paths matching a glob (local or object store), sorted."""
    return sorted(meta.path for meta in FileSystems.match([pattern])[0].metadata_list)


def count_outputs(output_dir: str) -> dict:
    """Rows and rejects actually written under `output_dir`.

    Returns {"rows", "rejects", "rejects_by_stage": {stage: n},
    "rejects_by_reason": {stage: {reason: n}}, "shard_files", "reject_files"}. Refuses files
    without a supported schema version (SchemaVersionError).
    """
    rows = 0
    shard_files = matching_files(shard_files_pattern(output_dir))
    for path in shard_files:
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            check_schema_version(parquet.schema_arrow.metadata, where=path)
            rows += parquet.metadata.num_rows
    return {"rows": rows, **count_rejects(output_dir), "shard_files": len(shard_files)}


def count_rejects(output_dir: str) -> dict:
    """Rejects actually written under OUTPUT/rejects: {"rejects", "rejects_by_stage": {stage: n},
    "rejects_by_reason": {stage: {reason: n}}, "reject_files"}. Refuses files without a supported
    schema version (SchemaVersionError)."""
    by_reason: Counter = Counter()
    reject_files = matching_files(reject_files_pattern(output_dir))
    for path in reject_files:
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle, columns=["stage", "reason"])
            check_schema_version(table.schema.metadata, where=path)
        by_reason.update(zip(table.column("stage").to_pylist(), table.column("reason").to_pylist()))
    by_stage: Counter = Counter()
    nested: dict[str, dict[str, int]] = {}
    for (stage, reason), count in sorted(by_reason.items()):
        by_stage[stage] += count
        nested.setdefault(stage, {})[reason] = count
    return {
        "rejects": sum(by_stage.values()),
        "rejects_by_stage": dict(sorted(by_stage.items())),
        "rejects_by_reason": nested,
        "reject_files": len(reject_files),
    }


def build_manifest(
    config,
    output_dir: str,
    *,
    inputs: Optional[int],
    runner: str,
    wall_time_s: float,
    input_path: Optional[str] = None,
    input_format: Optional[str] = None,
    lineage: Optional[Mapping[str, Any]] = None,
    counts: Optional[Mapping[str, Any]] = None,
) -> dict:
    """The manifest of a finished run.

    `inputs` is the number of inputs read (the `read/inputs` counter, or None if the runner reports
    none); `counts` defaults to `count_outputs(output_dir)`; `lineage` to `build_lineage(config)`.
    `counts.accounted` is True when inputs == rows + rejects, None when inputs is unknown.
    """
    lineage = dict(lineage) if lineage is not None else build_lineage(config)
    counts = dict(counts) if counts is not None else count_outputs(output_dir)
    accounted = None if inputs is None else inputs == counts["rows"] + counts["rejects"]
    return {
        **lineage,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input": {"path": input_path, "format": input_format},
        "output_dir": output_dir,
        "runner": runner,
        "wall_time_s": round(float(wall_time_s), 3),
        "counts": {"inputs": inputs, **counts, "accounted": accounted},
        "statistics": summarize_shards(output_dir),
    }


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
