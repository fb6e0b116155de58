"""Beam `ModelHandler`s for Grounding DINO and SAM: thin shells over `grounding` and `segmentation`.

`RunInference` gives batching (`BatchElements`), one model per worker process loaded in
`load_model`, and inference metrics. Collation of ragged inputs (images of different sizes,
different phrase and box counts) happens in `ground_batch` / `segment_batch`, which are
batch-invariant: a row's result does not depend on the batch it lands in.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from grounding.detect import ground_batch_with_reasons
from grounding.models import load_grounding_model
from pipelines.work_item import WorkItem
from segmentation.models import load_segmentation_model
from segmentation.segment import segment_batch
from unimo_g.pipeline_config import GroundingConfig, ModelRuntimeConfig, SegmentationConfig


def _batch_kwargs(runtime: ModelRuntimeConfig) -> dict:
    upper = runtime.max_batch_size or runtime.batch_size
    return {"min_batch_size": min(runtime.batch_size, upper), "max_batch_size": upper}


class GroundingModelHandler(ModelHandler[WorkItem, WorkItem, Any]):
    """WorkItem with phrases -> WorkItem with `groundings` (boxes per phrase)."""

    def __init__(self, config: GroundingConfig):
        self._config = config

    def load_model(self):
        return load_grounding_model(self._config)

    def run_inference(
        self, batch: Sequence[WorkItem], model, inference_args: Optional[dict] = None
    ) -> Iterable[WorkItem]:
        results = ground_batch_with_reasons(
            model,
            [item.sample.pixels for item in batch],
            [item.phrases for item in batch],
            [item.plural for item in batch],
            self._config,
        )
        return [
            replace(item, groundings=tuple(found), phrase_reasons=tuple(reasons.items()))
            for item, (found, reasons) in zip(batch, results)
        ]

    def get_num_bytes(self, batch: Sequence[WorkItem]) -> int:
        return sum(item.sample.pixels.nbytes for item in batch)

    def batch_elements_kwargs(self) -> dict:
        return _batch_kwargs(self._config.runtime)

    def get_metrics_namespace(self) -> str:
        return "unimo_g.grounding"


class SegmentationModelHandler(ModelHandler[WorkItem, WorkItem, Any]):
    """WorkItem with groundings -> WorkItem with one SAM mask per grounding."""

    def __init__(self, config: SegmentationConfig):
        self._config = config

    def load_model(self):
        return load_segmentation_model(self._config)

    def run_inference(
        self, batch: Sequence[WorkItem], model, inference_args: Optional[dict] = None
    ) -> Iterable[WorkItem]:
        boxes = [
            np.asarray([g.box for g in item.groundings], dtype=np.float32).reshape(-1, 4) for item in batch
        ]
        results = segment_batch(model, [item.sample.pixels for item in batch], boxes, self._config)
        return [replace(item, masks=tuple(masks)) for item, masks in zip(batch, results)]

    def get_num_bytes(self, batch: Sequence[WorkItem]) -> int:
        return sum(item.sample.pixels.nbytes for item in batch)

    def batch_elements_kwargs(self) -> dict:
        return _batch_kwargs(self._config.runtime)

    def get_metrics_namespace(self) -> str:
        return "unimo_g.segmentation"
