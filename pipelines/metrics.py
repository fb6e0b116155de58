"""Names of the pipeline's Beam metrics, and reading them back from a finished run.

Counters are for monitoring (a Dataflow, Flink or Spark UI shows them as NAMESPACE/NAME); the
manifest's counts come from the written files (`pipelines.outputs.manifest`), which are exact on every
runner. What a UI user sees:

    read/inputs                  inputs read this run (each becomes one row or one reject)
    read/inputs_skipped          inputs skipped by --resume: already a row or a reject
    read/source_errors           inputs the source itself marked failed (img2dataset status, bad lines)
    read/units                   read units opened (files, key batches, manifests)
    decode/checked, decoded      inputs past the caption checks / past image decoding
    decode/reject.STAGE.REASON   rejects by stage and reason (e.g. reject.decode.truncated)
    filter/passed                inputs that passed the `filters` rules
    filter/reject.filter.TOKEN   inputs a filter rule rejected (TOKEN: `unimo_g.filters.Rule.token`)
    dedupe/duplicates            inputs whose content id another input already has
    dedupe/near_duplicates       inputs rejected as near-duplicates (perceptual hash, `pipelines.prompts.near_duplicates`)
    dedupe/eval_overlaps         inputs rejected as copies of an evaluation image (`exclude.images`)
    dedupe/near_duplicate_bucket_overflow  hashes of crowded band values compared with the first `max_bucket` only
    write/rows, write/rejects    rows and rejects committed to files; *_files: files committed
"""

from __future__ import annotations

from typing import Optional

from apache_beam.metrics.metric import MetricsFilter

READ = "read"  # namespace of the sources
INPUTS = "inputs"  # every RawSample read, including source errors
SOURCE_ERRORS = "source_errors"
SKIPPED = "inputs_skipped"  # --resume: inputs whose key already has a row or a reject
UNITS = "units"  # files / key batches / manifests read

DECODE = "decode"
CHECKED = "checked"  # inputs with an image and a usable caption
DECODED = "decoded"

FILTER = "filter"
PASSED = "passed"

DEDUPE = "dedupe"
DUPLICATES = "duplicates"

WRITE = "write"
ROWS = "rows"  # counter of rows committed; ROWS + "_files" counts the files
REJECT_ROWS = "rejects"  # counter of rejects committed; REJECT_ROWS + "_files" counts the files


def reject_counter_name(stage: str, reason: str) -> str:
    """Counter name of rejects of `stage` for `reason`, e.g. `reject.decode.truncated`."""
    return f"reject.{stage}.{reason}"


def counter_value(result, namespace: str, name: str) -> Optional[int]:
    """The committed (or, where the runner has none, attempted) total of one counter; None if absent."""
    query = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))
    counters = query["counters"]
    if not counters:
        return None
    total = 0
    for counter in counters:
        value = counter.committed if counter.committed is not None else counter.attempted
        total += int(value or 0)
    return total


def counters(result, namespace: str) -> dict[str, int]:
    """All counters of one namespace as {name: total}."""
    query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals
