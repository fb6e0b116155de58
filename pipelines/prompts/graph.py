"""The data-construction pipeline as one Beam graph.

    [DoneKeys] ─► ReadSamples (ledger per read unit) ─► Check ─► [Filter] ─► DedupeById ─► [SkipWrittenIds]
        ─► [RejectNearDuplicates] (near-duplicates, evaluation images) ─► Decode
        ─► [Scores ─► FilterScores] ─► ExtractPhrases (cleans the caption; or Entities: a model names
           them, `entities.source` mllm / llm, pipelines.prompts.entity_stage) ─► RunInference(Grounding DINO)
        ─► RunInference(SAM) ─► Assemble ─► WriteShards
    every stage's rejects (model errors of the model steps too) ─► Flatten ─► WriteRejects
    Create([None]) ─► WriteManifest (side inputs: the files WriteShards and WriteRejects committed)

Every stage returns a `pipelines.staged.Staged`: what passed it, which the next stage takes, and
its rejects, which `build_pipeline` collects in one list. So every input ends as exactly one row
or one reject. Bracketed steps run only when configured:
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
from pipelines.io.ledger import Ledger
from pipelines.io.resume import DoneKeys, SkipWrittenIds, WrittenIds, new_run_id
from pipelines.io.sources import ReadPlan, ReadSamples
from pipelines.io.write import REJECTS_DIR, SHARDS_DIR, WriteRolling
from pipelines.outputs.manifest import WriteManifest
from pipelines.prompts.assemble import Assemble
from pipelines.prompts.decode import Check, Decode, DedupeById, dedupe_ranks, passing_check
from pipelines.prompts.entity_stage import ListEntities
from pipelines.prompts.filter_stage import Filter, passes_all
from pipelines.prompts.model_handlers import GroundingModelHandler, SegmentationModelHandler
from pipelines.prompts.model_stage import RunModelStage
from pipelines.prompts.near_duplicates import RejectNearDuplicates, WrittenHashes, uses_hash_keys
from pipelines.prompts.phrase_stage import ExtractPhrases
from pipelines.prompts.score_stage import ComputeScores
from pipelines.staged import Staged, passed
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
    run = {"id": new_run_id(), **(run or {})}
    done_keys = pipeline | "DoneKeys" >> DoneKeys(output_dir) if resume else None
    read = ReadSamples(input_path, input_format, ledger=Ledger(output_dir, run["id"]), done=done_keys,
                       config=config.read)
    filters, reports = config.filters, {}  # reports: what the manifest records of a step (evaluation images)
    rejects: list[beam.PCollection] = []  # every step's, in step order
    samples = passed(pipeline | "Read" >> read | "Check" >> Check(config.phrases.max_caption_chars), rejects)
    if filters.input_rules:
        samples = passed(samples | "Filter" >> Filter(filters.input_rules, filters.missing), rejects)
    unique, key_samples = deduplicate(pipeline, samples, input_path, input_format, config, done_keys)
    samples = passed(unique, rejects)
    if resume:
        samples = passed(skip_written_ids(pipeline, samples, output_dir), rejects)
    if uses_hash_keys(config):
        near, reports = reject_near_duplicates(pipeline, samples, key_samples, config, output_dir, resume)
        samples = passed(near, rejects)
    samples = passed(samples | "Decode" >> Decode(config.decode), rejects)
    if config.scores.enabled:
        scores = ComputeScores(config.scores, config.exclude, config.read, config.decode.max_pixels)
        samples = passed(samples | "Scores" >> scores, rejects)
    if filters.computed_rules:  # rules on computed_* scores: after the stage that computes them
        samples = passed(samples | "FilterScores" >> Filter(filters.computed_rules, filters.missing), rejects)
    items = passed(samples | name_entities(config), rejects)
    items = passed(items | "Ground" >> RunModelStage(GroundingModelHandler(config.grounding)), rejects)
    items = passed(items | "Segment" >> RunModelStage(SegmentationModelHandler(config.segmentation)), rejects)
    rows = passed(items | "Assemble" >> Assemble(config), rejects)
    write = partial(WriteRolling, output_dir, config=config.write, run_id=run["id"],
                    commit_every_s=run.get("commit_every_s") or 0.0)
    shard_files = rows | "WriteShards" >> write(SHARDS_DIR, shard_schema(lineage), counter=metrics.ROWS)
    reject_files = rejects | "AllRejects" >> beam.Flatten() | "WriteRejects" >> write(
        REJECTS_DIR, reject_schema(lineage), counter=metrics.REJECT_ROWS)
    _ = pipeline | "Manifest" >> WriteManifest(output_dir, lineage, run, [shard_files, reject_files], reports)
    return read.plan


def deduplicate(
    pipeline: beam.Pipeline, checked: beam.PCollection, input_path: str, input_format: str, config: PipelineConfig,
    done_keys: Optional[beam.PCollection] = None,
) -> tuple[Staged, beam.PCollection]:
    """Staged(the checked samples with one per id, the rejects of the others; none with method
    "none"), and the key path: the CheckedSamples that the small keys (exact and near-duplicate) are
    computed from. See `unimo_g.pipeline_config.DedupeConfig` for the methods; with "none" and hash
    keys in use, the keys come from the one read (as with "single_read"). `checked` holds only
    inputs that passed the filters; the second read applies the same filters, so a filtered input is
    never the copy an id or a near-duplicate group keeps. `done_keys` are skipped by the second read
    as by the first."""
    method = config.dedupe.method
    if method == "none" and not uses_hash_keys(config):
        return Staged(checked), checked
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
        return Staged(checked), key_samples
    return checked | "Dedupe" >> DedupeById(dedupe_ranks(key_samples)), key_samples


def skip_written_ids(pipeline: beam.Pipeline, samples: beam.PCollection, output_dir: str) -> Staged:
    """Step SkipWrittenIds (--resume): Staged(the samples whose id has no row in `output_dir` yet,
    `dedupe`/`duplicate` rejects of the others)."""
    written_ids = pipeline | "WrittenIds" >> WrittenIds(output_dir)
    return samples | "SkipWrittenIds" >> SkipWrittenIds(written_ids)


def reject_near_duplicates(
    pipeline: beam.Pipeline, samples: beam.PCollection, key_samples: beam.PCollection, config: PipelineConfig,
    output_dir: str, resume: bool,
) -> tuple[Staged, dict]:
    """Step NearDuplicates: Staged(the samples kept, the near-duplicates and evaluation-image copies
    rejected), and the manifest's reports ({"evaluation_images": summary} with `exclude.images`).
    With `resume`, the rows already written in `output_dir` take part, and are always kept."""
    written_hashes = pipeline | "WrittenHashes" >> WrittenHashes(output_dir) if resume else None
    near_duplicates = RejectNearDuplicates(key_samples, config, written_hashes)
    staged = samples | "NearDuplicates" >> near_duplicates
    summary = near_duplicates.evaluation_summary
    return staged, {} if summary is None else {"evaluation_images": summary}


def name_entities(config: PipelineConfig) -> beam.PTransform:
    """The paper's step 1, labelled: "Phrases" (spaCy noun phrases of the cleaned caption) or, with
    `entities.source` mllm / llm, "Entities" (a model names them, `pipelines.prompts.entity_stage`)."""
    if config.entities.source == "spacy":
        return "Phrases" >> ExtractPhrases(config.phrases, config.captions)
    return "Entities" >> ListEntities(config.entities, config.phrases, config.captions)
