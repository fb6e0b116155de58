"""Semantic evaluation overlap: inputs whose CLIP image embedding is close to an evaluation image's.

    exclude.images (each path) ─► ReadSamples(count=False) ─► decode ─► RunInference(CLIP image
        embeddings) ─► (name, embedding) ─► side input of ExcludeOverlapFn
    scored samples ─► ExcludeOverlapFn ─► DecodedSample | Reject(exclude, eval_overlap,
        "evaluation image <name>, cosine <c>")

Evaluation sets are small (DreamBench: 158 images, COCO val2017: 5000), so their embeddings travel
as a side input `(N, D)`; an input's check is one `(N, D) @ (D,)` product. The perceptual-hash
exclusion uses the same stage and reason for near-identical copies; this one catches re-renders,
crops and edits whose pixels moved too far for a hash.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from pipelines import metrics
from pipelines.io.sources import ReadSamples
from pipelines.staged import REJECTS
from unimo_g.images.decoding import ImageRejected, decode_image
from unimo_g.pipeline_config import DecodeConfig, ReadConfig
from unimo_g.records import RawSample, Reject

STAGE = "exclude"
REASON = "eval_overlap"
NAMESPACE = "exclude"


def eval_image_name(path: str, raw: RawSample) -> str:
    """How a reject names an evaluation image: the `exclude.images` entry and the image's key in it."""
    return f"{path.rstrip('/')}/{raw.source_key}"


def decode_eval_image(path: str, raw: RawSample, max_pixels: int) -> tuple[str, np.ndarray]:
    """(name, (H, W, 3) uint8 RGB) of one evaluation image, decoded as inputs are (bounded,
    EXIF-transposed) but at any size. ValueError for an image the source or the decoder refused:
    a silently smaller evaluation set would exclude less than the user asked for."""
    name = eval_image_name(path, raw)
    if raw.source_error is not None or raw.image is None:
        raise ValueError(f"exclude.images: cannot read evaluation image {name}: {raw.source_error or 'no image'}")
    limits = DecodeConfig(max_pixels=max_pixels, min_side=1, max_aspect_ratio=float("inf"))
    try:
        return name, decode_image(raw.image, limits).pixels
    except ImageRejected as err:
        raise ValueError(f"exclude.images: evaluation image {name} does not decode: {err.reason} {err.detail}") from err


class EvalImageEmbeddings(beam.PTransform):
    """PBegin -> PCollection[(name, normalised image embedding (D,) float32)] of every image under
    `paths` (folders or manifests, any input format `ReadSamples` reads). `handler` embeds them."""

    def __init__(self, paths: Sequence[str], handler: ModelHandler, read: ReadConfig, max_pixels: int):
        super().__init__()
        self.paths = tuple(paths)
        self.handler = handler
        self.read = read
        self.max_pixels = max_pixels

    def expand(self, pbegin):
        decoded = []
        for index, path in enumerate(self.paths):
            decoded.append(
                pbegin
                | f"Read{index}" >> ReadSamples(path, count=False, config=self.read)
                | f"Decode{index}" >> beam.Map(
                    lambda raw, p=path, m=self.max_pixels: decode_eval_image(p, raw, m))
            )
        return decoded | "AllEvalImages" >> beam.Flatten() | "Embed" >> RunInference(self.handler)


def closest_reference(
    embedding: np.ndarray, references: np.ndarray, names: Sequence[str], threshold: float, decimals: int
) -> Optional[tuple[str, float]]:
    """(name, cosine) of the evaluation image most similar to `embedding` `(D,)` when that cosine,
    rounded to `decimals`, is >= `threshold`; None otherwise. `references` `(N, D)` are normalised,
    so the cosine is a dot product. Ties go to the smallest name (deterministic)."""
    if len(names) == 0:
        return None
    cosines = np.round(references @ embedding.astype(np.float32), decimals)  # (N,)
    best = float(cosines.max())
    if best < threshold:
        return None
    name = min(n for n, c in zip(names, cosines) if c == best)
    return name, best


class ExcludeOverlapFn(beam.DoFn):
    """Scored sample (`.sample`, `.image_embedding`) -> its DecodedSample, or a Reject of stage
    `exclude`, reason `eval_overlap`, detail `evaluation image <name>, cosine <c>` (output `REJECTS`).
    The side input `references` is the list of (name, embedding) of the evaluation images."""

    def __init__(self, threshold: float, decimals: int):
        self.threshold = threshold
        self.decimals = decimals
        self._loaded = False
        self._matrix: Optional[np.ndarray] = None
        self._names: tuple[str, ...] = ()

    def _references(self, references: list) -> tuple[Optional[np.ndarray], tuple[str, ...]]:
        if not self._loaded:  # one global window: the side input is the same for the whole job
            ordered = sorted(references, key=lambda pair: pair[0])
            self._names = tuple(name for name, _ in ordered)
            self._matrix = np.stack([np.asarray(e, dtype=np.float32) for _, e in ordered]) if ordered else None
            self._loaded = True
        return self._matrix, self._names

    def process(self, scored, references: list) -> Iterator:
        matrix, names = self._references(references)
        match = None if matrix is None else closest_reference(
            scored.image_embedding, matrix, names, self.threshold, self.decimals)
        sample = scored.sample
        if match is None:
            yield sample
            return
        Metrics.counter(NAMESPACE, metrics.reject_counter_name(STAGE, REASON)).inc()
        yield beam.pvalue.TaggedOutput(REJECTS, Reject(
            id=sample.id, source=sample.source_key, stage=STAGE, reason=REASON,
            detail=f"evaluation image {match[0]}, cosine {match[1]:.{self.decimals}f}", provenance=sample.provenance))
