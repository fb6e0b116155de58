"""The score stage: CLIP image-caption similarity and an optional aesthetic score per decoded sample.

    DecodedSample ─► RunInference(ScoreModelHandler) ─► Scored | Reject(scores, model_error)
        ─► ExcludeEvalOverlap (side input: evaluation-image embeddings; without `exclude.clip_cosine`
           a plain Unwrap) ─► DecodedSample with computed_* set | Reject(exclude, eval_overlap)

`ComputeScores` returns a `pipelines.staged.Staged`: the scored DecodedSamples (`dataclasses.replace`
of the input, so any step written for DecodedSamples, such as a filter on `computed_*`, can follow)
and the stage's rejects.
The math lives in `unimo_g.models.clip_scorer` / `aesthetic_head`; the semantic evaluation overlap
in `pipelines.prompts.eval_overlap_clip`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from pipelines.prompts.decode import DecodedSample
from pipelines.prompts.eval_overlap_clip import EvalImageEmbeddings, ExcludeOverlapFn
from pipelines.prompts.model_handlers import RuntimeHandler, record_load, run_isolated
from pipelines.prompts.model_stage import RunModelStage
from pipelines.staged import DoFnStage, Staged
from unimo_g.models.aesthetic_head import HeadError, head_layout, load_head, load_state
from unimo_g.models.clip_scorer import embed_images, load_clip_scorer, score_batch
from unimo_g.pipeline_config import ExcludeConfig, ReadConfig, ScoresConfig

STAGE = "scores"


@dataclass(frozen=True, eq=False)
class Scored:
    """A sample with its scores set, and its L2-normalised CLIP image embedding `(D,)` float32
    (for the evaluation-overlap check; it does not reach the rows)."""

    sample: DecodedSample
    image_embedding: np.ndarray


def read_head_bytes(path: str) -> bytes:
    """The aesthetic head file, local or on an object store Beam reads (ValueError when it cannot be read)."""
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            return handle.read()
    except OSError as err:  # local files raise FileNotFoundError, Beam's object stores BeamIOError (an IOError)
        raise ValueError(f"scores.aesthetic_head: cannot read {path!r}: {err}") from err


class ScoreRunner:
    """A loaded CLIP model (and head) with the calls RunInference makes (callable through a proxy)."""

    def __init__(self, config: ScoresConfig):
        started = time.perf_counter()
        self._config = config
        self._scorer = load_clip_scorer(config)
        self._head = None
        if config.aesthetic_head:
            self._head = load_head(read_head_bytes(config.aesthetic_head), self._scorer.embed_dim)
            self._head.to(self._scorer.device)
        record_load(STAGE, config.model, config.runtime.device, time.perf_counter() - started)

    def score(self, images: list[np.ndarray], captions: list[str]) -> tuple:
        """`clip_scorer.score_batch`: similarities `(B,)`, aesthetic scores `(B,)` or None, embeddings `(B, D)`."""
        return score_batch(self._scorer, images, captions, self._head, self._config.forward)

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """L2-normalised image embeddings `(B, D)` float32."""
        return embed_images(self._scorer, images, self._config.forward).cpu().numpy()


def _rounded(value: Optional[float], decimals: int) -> Optional[float]:
    return None if value is None else round(float(value), decimals)


def score_samples(runner: ScoreRunner, samples: Sequence[DecodedSample], decimals: int) -> list[Scored]:
    """The samples with `computed_similarity` (and `computed_aesthetic` with a head) set, rounded to
    `decimals`, each with its image embedding."""
    similarity, aesthetic, embeddings = runner.score([s.pixels for s in samples], [s.caption for s in samples])
    return [
        Scored(
            sample=replace(sample, computed_similarity=_rounded(similarity[i], decimals),
                           computed_aesthetic=None if aesthetic is None else _rounded(aesthetic[i], decimals)),
            image_embedding=embeddings[i],
        )
        for i, sample in enumerate(samples)
    ]


class _ScoreHandlerBase(RuntimeHandler):
    stage = STAGE

    def load_model(self) -> ScoreRunner:
        return ScoreRunner(self._config)


class ScoreModelHandler(_ScoreHandlerBase):
    """DecodedSample -> `Scored` (computed_similarity, and computed_aesthetic with a head, rounded to
    `score_decimals`), or a `model_error` Reject of stage `scores` (see `run_isolated`)."""

    def run_inference(
        self, batch: Sequence[DecodedSample], model, inference_args: Optional[dict] = None
    ) -> Iterable[Union[Scored, Any]]:
        return run_isolated(batch, lambda samples: self._infer(samples, model), STAGE)

    def _infer(self, batch: Sequence[DecodedSample], model) -> list[Scored]:
        return score_samples(model, batch, self._config.score_decimals)

    def get_num_bytes(self, batch: Sequence[DecodedSample]) -> int:
        return sum(sample.pixels.nbytes for sample in batch)


class ImageEmbeddingHandler(_ScoreHandlerBase):
    """(name, (H, W, 3) uint8 pixels) -> (name, normalised CLIP image embedding `(D,)` float32).
    Errors raise: an evaluation set that cannot be embedded fails the job rather than exclude less."""

    def run_inference(self, batch: Sequence[tuple[str, np.ndarray]], model, inference_args: Optional[dict] = None):
        embeddings = model.embed([pixels for _, pixels in batch])
        return [(name, embeddings[i]) for i, (name, _) in enumerate(batch)]

    def get_num_bytes(self, batch: Sequence[tuple[str, np.ndarray]]) -> int:
        return sum(pixels.nbytes for _, pixels in batch)


class _UnwrapFn(beam.DoFn):
    def process(self, scored: Scored) -> Iterator[DecodedSample]:
        yield scored.sample


class ComputeScores(beam.PTransform):
    """PCollection[DecodedSample] -> Staged(DecodedSamples with computed_* set, Rejects: model errors
    and, with `exclude.images` and `exclude.clip_cosine`, the inputs whose image is a semantic copy
    of an evaluation image)."""

    def __init__(self, config: ScoresConfig, exclude: ExcludeConfig = ExcludeConfig(),
                 read: ReadConfig = ReadConfig(), max_pixels: int = 64_000_000):
        super().__init__()
        if config.aesthetic_head:  # a missing file or an unknown layout fails here, before the job starts
            try:
                head_layout(load_state(read_head_bytes(config.aesthetic_head)))
            except HeadError as err:
                raise HeadError(f"scores.aesthetic_head {config.aesthetic_head!r}: {err}") from err
        self.config = config
        self.exclude = exclude
        self.read = read
        self.max_pixels = max_pixels

    def expand(self, samples):
        scored = samples | "Score" >> RunModelStage(ScoreModelHandler(self.config))
        if not self.exclude.images or self.exclude.clip_cosine is None:
            return Staged(scored.samples | "Unwrap" >> beam.ParDo(_UnwrapFn()), scored.rejects)
        references = samples.pipeline | "EvalEmbeddings" >> EvalImageEmbeddings(
            self.exclude.images, ImageEmbeddingHandler(self.config), self.read, self.max_pixels)
        kept = scored.samples | "ExcludeEvalOverlap" >> DoFnStage(
            ExcludeOverlapFn(self.exclude.clip_cosine, self.config.score_decimals),
            references=beam.pvalue.AsList(references))
        return Staged(kept.samples, scored.rejects + kept.rejects)
