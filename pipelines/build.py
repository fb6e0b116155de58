"""The data-construction pipeline as one Beam graph.

    ReadSamples ─► Check ─► DedupeById ─► Decode ─► ExtractPhrases (cleans the caption) ─► RunInference(Grounding DINO)
        ─► RunInference(SAM) ─► Assemble ─► WriteShards
    every stage's rejects (model errors of the two model steps too) ─► Flatten ─► WriteRejects

Every input ends as exactly one row or one reject.
"""

from __future__ import annotations

import apache_beam as beam

from pipelines.assemble import AssembleFn
from pipelines.decode import CheckFn, DecodeFn, DedupeById, dedupe_rank, dedupe_ranks
from pipelines.model_handlers import GroundingModelHandler, SegmentationModelHandler
from pipelines.model_stage import RunModelStage
from pipelines.phrase_stage import ExtractPhrasesFn
from pipelines.sources import ReadSamples
from pipelines.write import WriteRejects, WriteShards
from unimo_g.pipeline_config import PipelineConfig


def build_pipeline(
    pipeline: beam.Pipeline,
    input_path: str,
    output_dir: str,
    config: PipelineConfig,
    input_format: str = "auto",
    lineage: dict | None = None,
) -> None:
    """Add the whole job to `pipeline`: read `input_path`, write shards and rejects under `output_dir`."""
    lineage = lineage or {}
    raw = pipeline | "Read" >> ReadSamples(input_path, input_format, config=config.read)
    checked = raw | "Check" >> beam.ParDo(CheckFn(config.phrases.max_caption_chars)).with_outputs(
        CheckFn.REJECTS, main="samples"
    )
    unique_samples, dedupe_rejects = deduplicate(pipeline, checked.samples, input_path, input_format, config)
    decoded = unique_samples | "Decode" >> beam.ParDo(DecodeFn(config.decode)).with_outputs(
        DecodeFn.REJECTS, main="samples"
    )
    phrased = decoded.samples | "Phrases" >> beam.ParDo(
        ExtractPhrasesFn(config.phrases, config.captions)
    ).with_outputs(ExtractPhrasesFn.REJECTS, main="items")
    grounded = phrased.items | "Ground" >> RunModelStage(GroundingModelHandler(config.grounding))
    segmented = grounded.items | "Segment" >> RunModelStage(SegmentationModelHandler(config.segmentation))
    rows = segmented.items | "Assemble" >> beam.ParDo(AssembleFn(config))
    rows | "WriteShards" >> WriteShards(output_dir, config.write, lineage)
    (
        (
            checked[CheckFn.REJECTS],
            *dedupe_rejects,
            decoded[DecodeFn.REJECTS],
            phrased[ExtractPhrasesFn.REJECTS],
            grounded.rejects,
            segmented.rejects,
        )
        | "AllRejects" >> beam.Flatten()
        | "WriteRejects" >> WriteRejects(output_dir, lineage)
    )


def deduplicate(
    pipeline: beam.Pipeline, checked: beam.PCollection, input_path: str, input_format: str, config: PipelineConfig
) -> tuple[beam.PCollection, tuple[beam.PCollection, ...]]:
    """The checked samples with one per id, and the rejects of the others (none with method "none");
    see `unimo_g.pipeline_config.DedupeConfig` for the methods."""
    method = config.dedupe.method
    if method == "none":
        return checked, ()
    if method == "reread":  # small keys from a second read (it only hashes): nothing buffers image bytes
        source = pipeline | "ReadForDedupe" >> ReadSamples(input_path, input_format, count=False, config=config.read)
        ranks = dedupe_ranks(source, config.phrases.max_caption_chars)
    else:  # "single_read"
        ranks = checked | "Ranks" >> beam.Map(lambda sample: (sample.id, dedupe_rank(sample)))
    unique = checked | "Dedupe" >> DedupeById(ranks)
    return unique.samples, (unique.rejects,)
