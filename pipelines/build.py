"""The data-construction pipeline as one Beam graph.

    [DoneKeys] ─► ReadSamples (ledger per read unit) ─► Check ─► [Filter] ─► DedupeById ─► [SkipWrittenIds]
        ─► [RejectNearDuplicates] (near-duplicates, evaluation images) ─► Decode
        ─► [Scores ─► FilterScores] ─► ExtractPhrases (cleans the caption; or Entities: a model names
           them, `entities.source` mllm / llm, pipelines.entity_stage) ─► RunInference(Grounding DINO)
        ─► RunInference(SAM) ─► Assemble ─► WriteShards
    every stage's rejects (model errors of the model steps too) ─► Flatten ─► WriteRejects
    Create([None]) ─► WriteManifest (side inputs: the files WriteShards and WriteRejects committed)

Every input ends as exactly one row or one reject. Bracketed steps run only when configured:
DoneKeys and SkipWrittenIds for --resume; Filter with rules on the input's provenance (`filters`:
before anything is decoded; de-duplication only ranks inputs that passed it); RejectNearDuplicates
when `near_duplicates.enabled` or `exclude.images` (its keys come from the key path `deduplicate`
returns; with --resume it also compares the rows already written); Scores with `scores.enabled`, and
FilterScores with rules on its `computed_*` scores.
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import apache_beam as beam

from pipelines import metrics
from pipelines.assemble import AssembleFn
from pipelines.decode import CheckFn, DecodeFn, DedupeById, dedupe_ranks, passing_check
from pipelines.entity_stage import ListEntities
from pipelines.filter_stage import FilterFn, passes_all
from pipelines.ledger import Ledger
from pipelines.manifest import WriteManifest
from pipelines.model_handlers import GroundingModelHandler, SegmentationModelHandler
from pipelines.model_stage import RunModelStage
from pipelines.near_duplicates import RejectNearDuplicates, WrittenHashes, uses_hash_keys
from pipelines.phrase_stage import ExtractPhrasesFn
from pipelines.resume import DoneKeys, SkipWrittenIds, WrittenIds, new_run_id
from pipelines.score_stage import ComputeScores
from pipelines.sources import ReadPlan, ReadSamples
from pipelines.write import REJECTS_DIR, SHARDS_DIR, WriteRolling
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.schema import reject_schema, shard_schema


def build_pipeline(
    pipeline: beam.Pipeline,
    input_path: str,
    output_dir: str,
    config: PipelineConfig,
    input_format: str = "auto",
    lineage: dict | None = None,
    run: Optional[dict] = None,
    resume: bool = False,
) -> ReadPlan:
    """Add the whole job to `pipeline`: read `input_path`, write shards, rejects, the read ledger and
    manifest.json under `output_dir`. Returns what the job will read (listed once, here).

    `run` is what the manifest records about this run (its "id" names its files; default: a new
    id; its "commit_every_s", when set, also commits a shard or reject file once it has been open
    that long). With `resume`, inputs that already have a row or a reject in `output_dir` are skipped.
    """
    lineage = lineage or {}
    run = dict(run or {})
    run.setdefault("id", new_run_id())
    done_keys = written_ids = None
    if resume:
        done_keys = pipeline | "DoneKeys" >> DoneKeys(output_dir)
        written_ids = pipeline | "WrittenIds" >> WrittenIds(output_dir)
    ledger = Ledger(output_dir, run["id"])
    read = ReadSamples(input_path, input_format, ledger=ledger, done=done_keys, config=config.read)
    raw = pipeline | "Read" >> read
    checked = raw | "Check" >> beam.ParDo(CheckFn(config.phrases.max_caption_chars)).with_outputs(
        CheckFn.REJECTS, main="samples"
    )
    passed, filter_rejects = checked.samples, ()
    if config.filters.input_rules:
        filtered = checked.samples | "Filter" >> beam.ParDo(
            FilterFn(config.filters.input_rules, config.filters.missing)).with_outputs(FilterFn.REJECTS, main="samples")
        passed, filter_rejects = filtered.samples, (filtered[FilterFn.REJECTS],)
    unique_samples, dedupe_rejects, key_samples = deduplicate(pipeline, passed, input_path, input_format, config,
                                                              done_keys)
    if written_ids is not None:
        unique = unique_samples | "SkipWrittenIds" >> SkipWrittenIds(written_ids)
        unique_samples, dedupe_rejects = unique.samples, (*dedupe_rejects, unique.rejects)
    reports = {}
    if uses_hash_keys(config):
        written_hashes = pipeline | "WrittenHashes" >> WrittenHashes(output_dir) if resume else None
        near_duplicates = RejectNearDuplicates(key_samples, config, written_hashes)
        near = unique_samples | "NearDuplicates" >> near_duplicates
        unique_samples, dedupe_rejects = near.samples, (*dedupe_rejects, near.rejects)
        if near_duplicates.evaluation_summary is not None:
            reports["evaluation_images"] = near_duplicates.evaluation_summary
    decoded = unique_samples | "Decode" >> beam.ParDo(DecodeFn(config.decode)).with_outputs(
        DecodeFn.REJECTS, main="samples"
    )
    samples, score_rejects = decoded.samples, ()
    if config.scores.enabled:
        scored = samples | "Scores" >> ComputeScores(config.scores, config.exclude, config.read,
                                                     config.decode.max_pixels)
        samples, score_rejects = scored["samples"], (scored["rejects"],)
    if config.filters.computed_rules:  # rules on computed_* scores: after the stage that computes them
        kept = samples | "FilterScores" >> beam.ParDo(
            FilterFn(config.filters.computed_rules, config.filters.missing)).with_outputs(FilterFn.REJECTS,
                                                                                          main="samples")
        samples, score_rejects = kept.samples, (*score_rejects, kept[FilterFn.REJECTS])
    if config.entities.source == "spacy":
        phrased = samples | "Phrases" >> beam.ParDo(
            ExtractPhrasesFn(config.phrases, config.captions)
        ).with_outputs(ExtractPhrasesFn.REJECTS, main="items")
        items, phrase_rejects = phrased.items, phrased[ExtractPhrasesFn.REJECTS]
    else:  # a model names the entities (the paper's step 1)
        listed = samples | "Entities" >> ListEntities(config.entities, config.phrases, config.captions)
        items, phrase_rejects = listed["items"], listed["rejects"]
    grounded = items | "Ground" >> RunModelStage(GroundingModelHandler(config.grounding))
    segmented = grounded.items | "Segment" >> RunModelStage(SegmentationModelHandler(config.segmentation))
    rows = segmented.items | "Assemble" >> beam.ParDo(AssembleFn(config))
    commit_every_s = run.get("commit_every_s") or 0.0
    shard_files = rows | "WriteShards" >> WriteRolling(
        output_dir, SHARDS_DIR, shard_schema(lineage), config.write, run["id"], metrics.ROWS, commit_every_s)
    reject_files = (
        (
            checked[CheckFn.REJECTS],
            *filter_rejects,
            *dedupe_rejects,
            decoded[DecodeFn.REJECTS],
            *score_rejects,
            phrase_rejects,
            grounded.rejects,
            segmented.rejects,
        )
        | "AllRejects" >> beam.Flatten()
        | "WriteRejects" >> WriteRolling(
            output_dir, REJECTS_DIR, reject_schema(lineage), config.write, run["id"], metrics.REJECTS, commit_every_s)
    )
    _ = pipeline | "Manifest" >> WriteManifest(output_dir, lineage, run, [shard_files, reject_files], reports)
    return read.plan


def deduplicate(
    pipeline: beam.Pipeline, checked: beam.PCollection, input_path: str, input_format: str, config: PipelineConfig,
    done_keys: Optional[beam.PCollection] = None,
) -> tuple[beam.PCollection, tuple[beam.PCollection, ...], beam.PCollection]:
    """The checked samples with one per id, the rejects of the others (none with method "none"),
    and the key path: the CheckedSamples that the small keys (exact and near-duplicate) are
    computed from. See `unimo_g.pipeline_config.DedupeConfig` for the methods; with "none" and hash
    keys in use, the keys come from the one read (as with "single_read"). `checked` holds only
    inputs that passed the filters; the second read applies the same filters, so a filtered input is
    never the copy an id or a near-duplicate group keeps. `done_keys` are skipped by the second read
    as by the first."""
    method = config.dedupe.method
    if method == "none" and not uses_hash_keys(config):
        return checked, (), checked
    if method == "reread":  # small keys from a second read (it only hashes): nothing buffers image bytes
        source = pipeline | "ReadForDedupe" >> ReadSamples(
            input_path, input_format, count=False, done=done_keys, config=config.read
        )
        rules = config.filters.input_rules
        keep = partial(passes_all, rules=rules, default_missing=config.filters.missing) if rules else None
        key_samples = source | "CheckForKeys" >> beam.FlatMap(passing_check, config.phrases.max_caption_chars, keep)
    else:  # "single_read", or "none" with hash keys
        key_samples = checked
    if method == "none":
        return checked, (), key_samples
    unique = checked | "Dedupe" >> DedupeById(dedupe_ranks(key_samples))
    return unique.samples, (unique.rejects,), key_samples
