"""Near-duplicates and evaluation images, found on small keys before any image is decoded.

    checked samples (key path) ─► HashKeys (id, Node) ─► OnePerId ─► MatchEvaluation ─► eval verdicts
                                  [WrittenHashes] ─┘                     └─► BandKeys ─► GroupByKey
        ─► BucketEdges ─► ToList ─► Resolve ─► near-duplicate verdicts
    elements ─► ApplyVerdicts (side input: AsDict of verdicts, losers only) ─► kept | Reject

Keys are (id, perceptual hash, rank) only; image bytes are never grouped or shuffled. A hash crosses
Beam boundaries as a signed 64-bit int (`hash_value`): Beam's int coder takes nothing wider, and the
unsigned value of most real photos' hashes is >= 2**63 (their first bit is the DC term's). Inputs sharing
an id share their bytes and so their hash: one node per id (the smallest rank), i.e. the inputs past
exact de-duplication. A node within `exclude.phash_distance` of an evaluation image or of its
mirror image (a horizontal flip, the commonest augmentation: its hash lies ~32 bits from the
original's) becomes `exclude`/`eval_overlap` (it then takes no further part). The others are banded (LSH): nodes
agreeing on a whole band are compared, pairs within `near_duplicates.max_distance` are edges.

Which node of a group is kept (`resolve`): nodes in rank order (rows written by an earlier run
first, then `dedupe_rank`); a node is rejected when an edge joins it to a node already kept (naming
the nearest, then smallest-ranked one), kept otherwise; written rows are always kept. So every
reject is within `max_distance` of the row it names, and no two kept rows of this run that were
compared are (pairs sharing no band, or past a crowded bucket's `max_bucket`, are not). (Connected
components would instead chain: A~B~C drops C although it may be far from A.) Nodes with one hash
are one node to compare (identical hashes, e.g. blank images, cost no pairwise work): the smallest
ranked leads, the others share its fate, or are rejected naming it when it is kept.
"""

from __future__ import annotations

import logging
from typing import Iterable, Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines import metrics
from pipelines.io.resume import FromWrittenShards
from pipelines.io.sources import ReadSamples
from pipelines.prompts.decode import CheckedSample, dedupe_rank
from pipelines.staged import REJECTS, DoFnStage
from unimo_g.images.decoding import ImageRejected, decode_image, hash_pixels, perceptual_hash
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.records import Reject

_LOG = logging.getLogger(__name__)
HASH_BITS = 64
NEAR_DUPLICATES = "near_duplicates"  # counter names in metrics.DEDUPE
EVAL_OVERLAPS = "eval_overlaps"
BUCKET_OVERFLOW = "near_duplicate_bucket_overflow"  # hashes compared only with a bucket's first max_bucket
WRITTEN, NEW = 0, 1  # first element of a node's order: rows of earlier runs sort first


def hash_value(hex_hash: str) -> int:
    """A perceptual hash (16 hex digits) as a signed 64-bit int: its bits in two's complement."""
    value = int(hex_hash, 16)
    return value - (1 << HASH_BITS) if value >> (HASH_BITS - 1) else value


def hash_bits(values: Sequence[int]) -> np.ndarray:
    """Signed hash values (`hash_value`) as uint64 bit patterns, for XOR and popcount. (numpy's
    `bitwise_count` of a signed int counts the bits of its absolute value.)"""
    return np.asarray(values, dtype=np.int64).view(np.uint64)


class Node(NamedTuple):
    """What the key path knows of one input (or written row): `order` sorts written rows first, then
    by `dedupe_rank`; `phash` is the 64-bit hash as a signed int (`hash_value`)."""

    order: tuple
    phash: int
    written: bool


class Verdict(NamedTuple):
    stage: str
    reason: str
    detail: str


def uses_hash_keys(config: PipelineConfig) -> bool:
    """Whether the job computes hash keys: near-duplicates on, or evaluation images to exclude by hash."""
    return config.near_duplicates.enabled or excludes_by_hash(config)


def excludes_by_hash(config: PipelineConfig) -> bool:
    """Whether evaluation images are matched by perceptual hash (`exclude.phash_distance` set)."""
    return bool(config.exclude.images) and config.exclude.phash_distance is not None


# ---------------------------------------------------------------- keys


def hash_key(sample: CheckedSample, config: PipelineConfig) -> Iterator[tuple[str, Node]]:
    """(id, Node) of one checked sample; nothing for an image the hash cannot read (decode rejects it)."""
    try:
        phash = perceptual_hash(sample.image, config.decode)
    except ImageRejected:
        return
    yield sample.id, Node((NEW, dedupe_rank(sample)), hash_value(phash), False)


def near_duplicate_keys(checked: beam.PCollection, config: PipelineConfig) -> beam.PCollection:
    """(id, Node) of the checked samples that take part in near-duplicate and evaluation matching,
    one per id. `checked` holds CheckedSamples (the key path: the second read's, or the one read's)."""
    return (
        checked
        | "HashKeys" >> beam.FlatMap(hash_key, config)
        | "OnePerId" >> beam.CombinePerKey(min)
    )


def _written_hashes(path: str) -> Iterator[tuple[str, Node]]:
    with FileSystems.open(path) as handle:
        shard = pq.ParquetFile(handle)
        if "phash" not in shard.schema_arrow.names:
            _LOG.warning("%s has no phash column (schema before v3): its rows are not compared with new "
                         "inputs for near-duplicates", path)
            return
        table = shard.read(columns=["id", "phash"])
    for sample_id, phash in zip(table.column("id").to_pylist(), table.column("phash").to_pylist()):
        if phash:
            yield sample_id, Node((WRITTEN, sample_id), hash_value(phash), True)


class WrittenHashes(FromWrittenShards):
    """(id, Node) of every row already in OUTPUT/shards (`id` and `phash` columns only). Shards
    without `phash` are skipped (warning)."""

    def __init__(self, output_dir: str):
        super().__init__(output_dir, _written_hashes)


# ---------------------------------------------------------------- evaluation images


MIRRORED = " (mirrored)"  # suffix of an evaluation image's name for its mirror image's hash
OUTCOMES = ("hashed", "skipped_non_images", "unreadable", "unusable")  # per evaluation path, in the summary


def mirrored_hash(data: bytes, config: PipelineConfig) -> str:
    """The perceptual hash of the image mirrored left-right (EXIF-upright first, transparency on
    white), as `perceptual_hash` would give for a flipped copy. Full decode: for JPEGs this is within
    a few bits of the reduced-size decode `perceptual_hash` uses (0-4 on the bundled photos)."""
    pixels = decode_image(data, config.decode).pixels  # (H, W, 3)
    return hash_pixels(np.ascontiguousarray(pixels[:, ::-1]))


def _eval_hash(sample, root: str, config: PipelineConfig) -> Iterator:
    """(name, hash) and (name + MIRRORED, hash of the mirror image) of one evaluation image, and its
    outcome (path, one of OUTCOMES) to the `outcomes` output."""
    name = f"{root.rstrip('/')}/{sample.source_key}"
    if sample.image is None:
        if sample.source_error is None:  # a key with no image file: a caption, prompt list or notes
            _LOG.debug("exclude.images: %s has no image (skipped)", name)
            yield beam.pvalue.TaggedOutput("outcomes", (root, "skipped_non_images"))
            return
        _LOG.warning("evaluation image %s could not be read: %s", name, sample.source_error)
        yield beam.pvalue.TaggedOutput("outcomes", (root, "unreadable"))
        return
    try:
        phash = perceptual_hash(sample.image, config.decode)
        mirrored = mirrored_hash(sample.image, config)
    except ImageRejected as err:
        _LOG.warning("evaluation image %s is not usable: %s", name, err)
        yield beam.pvalue.TaggedOutput("outcomes", (root, "unusable"))
        return
    yield name, hash_value(phash)
    yield f"{name}{MIRRORED}", hash_value(mirrored)
    yield beam.pvalue.TaggedOutput("outcomes", (root, "hashed"))


def summarize_outcomes(counted: Sequence[tuple[tuple[str, str], int]], paths: Sequence[str]) -> dict:
    """((path, outcome), count) pairs -> {"hashed": n, "hashes": 2n (with the mirror images),
    "paths": {path: {outcome: count}}}, every `exclude.images` path listed (zeros included)."""
    table = {path: dict.fromkeys(OUTCOMES, 0) for path in paths}
    for (path, outcome), count in counted:
        table.setdefault(path, dict.fromkeys(OUTCOMES, 0))[outcome] += count
    hashed = sum(row["hashed"] for row in table.values())
    for path, row in table.items():
        level = logging.WARNING if row["hashed"] == 0 else logging.INFO
        _LOG.log(level, "exclude.images: %d evaluation images hashed (with their mirror images) from %s%s",
                 row["hashed"], path, "" if row["hashed"] else ": nothing of it is excluded")
    return {"hashed": hashed, "hashes": 2 * hashed, "paths": table}


class EvaluationHashes(beam.PTransform):
    """(name, hash) of every image under `exclude.images` and of its mirror image (named
    `name + MIRRORED`); any input format, captions not needed, files without an image (a folder's
    .txt and .json) skipped quietly. After expansion, `self.summary` is a PCollection of one dict
    (`summarize_outcomes`): how many evaluation images were hashed from which paths.

    The paths are listed at construction: one that cannot be read is a ValueError before the job runs."""

    def __init__(self, config: PipelineConfig):
        super().__init__()
        self.config = config
        self.reads = []
        self.summary = None
        for path in config.exclude.images:
            try:
                self.reads.append((path, ReadSamples(path, count=False, config=config.read)))
            except ValueError as err:
                raise ValueError(f"exclude.images: {err}") from None

    def expand(self, pbegin):
        hashed, outcomes = [], []
        for index, (path, read) in enumerate(self.reads):
            results = (pbegin | f"ReadEval{index}" >> read
                       | f"HashEval{index}" >> beam.FlatMap(_eval_hash, path, self.config).with_outputs(
                           "outcomes", main="hashes"))
            hashed.append(results.hashes)
            outcomes.append(results.outcomes)
        paths = [path for path, _ in self.reads]
        self.summary = (outcomes | "AllEvalOutcomes" >> beam.Flatten()
                        | "CountEvalOutcomes" >> beam.combiners.Count.PerElement()
                        | "EvalOutcomeList" >> beam.combiners.ToList()
                        | "EvalSummary" >> beam.Map(summarize_outcomes, paths))
        return hashed | "AllEval" >> beam.Flatten()


class _MatchEvaluationFn(beam.DoFn):
    """(id, Node) -> (id, eval Verdict) to the `eval` output when within `max_distance` of an
    evaluation image or its mirror image (the nearest, then first by name; a mirror image is named
    `<image> (mirrored)`), else the key unchanged."""

    def __init__(self, max_distance: int):
        self.max_distance = max_distance
        self._source = None
        self._names: list[str] = []
        self._bits = np.zeros(0, dtype=np.uint64)

    def process(self, keyed: tuple[str, Node], evaluation: Sequence[tuple[str, int]]) -> Iterator:
        sample_id, (_, phash, written) = keyed  # a Node; plain tuples too (what a runner's coder may give back)
        if evaluation and not written:
            if evaluation is not self._source:  # the side input changes once per window: convert it once
                ordered = sorted(evaluation)
                self._names = [name for name, _ in ordered]
                self._bits = hash_bits([value for _, value in ordered])
                self._source = evaluation
            distances = np.bitwise_count(self._bits ^ hash_bits([phash]))
            best = int(np.argmin(distances))
            if distances[best] <= self.max_distance:
                detail = f"evaluation image {self._names[best]}, distance {int(distances[best])}"
                yield beam.pvalue.TaggedOutput("eval", (sample_id, Verdict("exclude", "eval_overlap", detail)))
                return
        yield keyed


# ---------------------------------------------------------------- banding and resolution


def band_values(phash: int, bands: int) -> list[int]:
    """The hash cut into `bands` runs of consecutive bits (the first `HASH_BITS % bands` one bit wider).
    Signed and unsigned values of one bit pattern give the same bands (Python's `>>` is arithmetic)."""
    values, start = [], 0
    for band in range(bands):
        width = HASH_BITS // bands + (band < HASH_BITS % bands)
        values.append((phash >> start) & ((1 << width) - 1))
        start += width
    return values


def band_keys(keyed: tuple[str, Node], bands: int) -> Iterator[tuple[tuple[int, int], tuple]]:
    sample_id, (order, phash, written) = keyed
    for band, value in enumerate(band_values(phash, bands)):
        yield (band, value), (order, sample_id, phash, written)


class _BucketEdgesFn(beam.DoFn):
    """One bucket (inputs agreeing on one band) -> edges.

    ("alias", id, written, leader id): same hash as its leader (emitted in band 0 only: identical
    hashes share every band). ("pair", (order, id, written), (order, id, written), distance): two
    leaders within `max_distance`, emitted by the first band they agree on only. Leaders beyond the
    first `max_bucket` (by order) are compared with those first ones only (counted as overflow)."""

    def __init__(self, bands: int, max_distance: int, max_bucket: int):
        self.bands = bands
        self.max_distance = max_distance
        self.max_bucket = max_bucket

    def process(self, bucket: tuple[tuple[int, int], Iterable[tuple]]) -> Iterator[tuple]:
        (band, _), members = bucket
        by_hash: dict[int, list[tuple]] = {}
        for member in members:
            by_hash.setdefault(member[2], []).append(member)
        leaders = []
        for group in by_hash.values():
            group.sort()
            leaders.append(group[0])
            if band == 0:
                for order, sample_id, _, written in group[1:]:
                    yield "alias", sample_id, written, group[0][1]
        if len(leaders) < 2:
            return
        leaders.sort()
        if len(leaders) > self.max_bucket:
            beam.metrics.Metrics.counter(metrics.DEDUPE, BUCKET_OVERFLOW).inc(len(leaders) - self.max_bucket)
        hashes = hash_bits([leader[2] for leader in leaders])
        bands = [band_values(leader[2], self.bands) for leader in leaders]
        for i in range(1, len(leaders)):
            compared = min(i, self.max_bucket)
            distances = np.bitwise_count(hashes[:compared] ^ hashes[i])
            for j in np.flatnonzero(distances <= self.max_distance):
                first_shared = next(b for b in range(self.bands) if bands[i][b] == bands[j][b])
                if first_shared == band:
                    yield "pair", _ref(leaders[j]), _ref(leaders[i]), int(distances[j])


def _ref(member: tuple) -> tuple:
    order, sample_id, _, written = member
    return order, sample_id, written


def resolve(edges: Iterable[tuple]) -> Iterator[tuple[str, Verdict]]:
    """Edges of every bucket -> (rejected id, Verdict): see the module docstring for the rule."""
    orders: dict[str, tuple] = {}
    written: set[str] = set()
    neighbours: dict[str, list[tuple[int, tuple, str]]] = {}
    aliases = []
    for edge in edges:
        if edge[0] == "alias":
            aliases.append(edge[1:])
            continue
        _, first, second, distance = edge
        for (order, sample_id, is_written), (other_order, other_id, _) in ((first, second), (second, first)):
            orders[sample_id] = order
            if is_written:
                written.add(sample_id)
            neighbours.setdefault(sample_id, []).append((distance, other_order, other_id))
    kept: set[str] = set()
    fates: dict[str, tuple[str, int]] = {}
    for sample_id in sorted(orders, key=orders.__getitem__):
        near_kept = sorted(n for n in neighbours[sample_id] if n[2] in kept)
        if sample_id in written or not near_kept:
            kept.add(sample_id)
        else:
            distance, _, kept_id = near_kept[0]
            fates[sample_id] = (kept_id, distance)
    for alias_id, alias_written, leader in aliases:
        if not alias_written:
            fates[alias_id] = fates.get(leader, (leader, 0))
    for sample_id, (kept_id, distance) in sorted(fates.items()):
        yield sample_id, Verdict("dedupe", "near_duplicate", f"kept {kept_id}, distance {distance}")


class Verdicts(beam.PTransform):
    """(id, Verdict) of every input to reject: evaluation overlaps, then near-duplicates.

    Applied to the (id, Node) keys of `near_duplicate_keys`; `written` (optional) adds the rows of
    earlier runs as nodes that are compared but never rejected."""

    def __init__(self, config: PipelineConfig, written: Optional[beam.PCollection] = None):
        super().__init__()
        self.config = config
        self.written = written
        self.evaluation = EvaluationHashes(config) if excludes_by_hash(config) else None

    def expand(self, keys):
        near = self.config.near_duplicates
        pipeline = keys.pipeline
        if self.written is not None:
            keys = ((keys, self.written) | "WithWritten" >> beam.Flatten()
                    | "OnePerIdWithWritten" >> beam.CombinePerKey(min))
        verdicts = []
        if self.evaluation is not None:
            evaluation = pipeline | "EvaluationHashes" >> self.evaluation
            matched = keys | "MatchEvaluation" >> beam.ParDo(
                _MatchEvaluationFn(self.config.exclude.phash_distance), evaluation=beam.pvalue.AsList(evaluation)
            ).with_outputs("eval", main="keys")
            keys = matched.keys
            verdicts.append(matched.eval)
        if near.enabled:
            verdicts.append(
                keys
                | "BandKeys" >> beam.FlatMap(band_keys, near.bands)
                | "Buckets" >> beam.GroupByKey()
                | "BucketEdges" >> beam.ParDo(_BucketEdgesFn(near.bands, near.max_distance, near.max_bucket))
                | "AllEdges" >> beam.combiners.ToList()
                | "Resolve" >> beam.FlatMap(resolve)
            )
        if not verdicts:
            return pipeline | "NoVerdicts" >> beam.Create([])
        return verdicts | "AllVerdicts" >> beam.Flatten()


class _ApplyVerdictsFn(beam.DoFn):
    def process(self, element, verdicts: dict) -> Iterator:
        verdict = verdicts.get(element.id)
        if verdict is None:
            yield element
            return
        beam.metrics.Metrics.counter(metrics.DEDUPE, NEAR_DUPLICATES if verdict.stage == "dedupe"
                                     else EVAL_OVERLAPS).inc()
        beam.metrics.Metrics.counter(metrics.DECODE, metrics.reject_counter_name(verdict.stage, verdict.reason)).inc()
        yield beam.pvalue.TaggedOutput(REJECTS, Reject(id=element.id, source=element.source_key, stage=verdict.stage,
                                                       reason=verdict.reason, detail=verdict.detail,
                                                       provenance=element.provenance))


class RejectNearDuplicates(beam.PTransform):
    """Checked samples -> Staged(the kept samples, Rejects `dedupe`/`near_duplicate` and
    `exclude`/`eval_overlap`), told apart by a side input of the losers only, computed from the
    keys of `key_samples` (CheckedSamples of the key path; see `near_duplicate_keys`). `written`:
    `WrittenHashes` of the output folder with --resume. After expansion, `evaluation_summary` is
    the `EvaluationHashes` summary (one dict; None without evaluation images), for the manifest."""

    def __init__(self, key_samples: beam.PCollection, config: PipelineConfig,
                 written: Optional[beam.PCollection] = None):
        super().__init__()
        self.key_samples = key_samples
        self.verdicts = Verdicts(config, written)
        self.config = config

    @property
    def evaluation_summary(self) -> Optional[beam.PCollection]:
        evaluation = self.verdicts.evaluation
        return evaluation.summary if evaluation is not None else None

    def expand(self, samples):
        keys = near_duplicate_keys(self.key_samples, self.config)
        verdicts = keys | "Verdicts" >> self.verdicts
        return samples | "ApplyVerdicts" >> DoFnStage(_ApplyVerdictsFn(), verdicts=beam.pvalue.AsDict(verdicts))

