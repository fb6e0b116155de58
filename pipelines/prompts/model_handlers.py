"""Beam `ModelHandler`s for Grounding DINO and SAM: thin shells over `grounding` and `segmentation`.

`RunInference` gives batching (`BatchElements`), model loading in `load_model`, and inference
metrics. Collation of ragged inputs (images of different sizes, different phrase and box counts)
happens in `ground_batch` / `segment_batch`, which are batch-invariant: a row's result does not
depend on the batch it lands in.

Fault isolation: a batch whose inference raises one of `MODEL_ERRORS` is run again one element at
a time; an element that still raises becomes a `Reject` (stage `grounding` / `segmentation`,
reason `model_error`) in the handler's output instead of failing the bundle. `pipelines.prompts.model_stage`
splits those rejects off.

Model sharing: with `runtime.shares_model` (the default on a GPU), Beam loads `runtime.model_copies`
copies per worker machine in one process and every SDK process of the machine calls them through a
proxy. A proxy forwards method calls only, so `load_model` returns a runner object whose one method
runs a whole batch (`GroundingRunner.ground`, `SegmentationRunner.segment`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from grounding.detect import ground_batch_with_reasons
from grounding.models import load_grounding_model
from pipelines.prompts.work_item import WorkItem
from segmentation.models import load_segmentation_model
from segmentation.segment import segment_batch
from unimo_g.pipeline_config import GroundingConfig, ModelRuntimeConfig, SegmentationConfig
from unimo_g.records import Reject

# What a model step raises for one bad input: torch errors (CUDA out of memory is a RuntimeError),
# shape and size errors of the pre- and post-processing. Anything else is a bug and fails the bundle.
MODEL_ERRORS = (RuntimeError, ValueError, IndexError)
MODEL_ERROR = "model_error"  # reject reason
MAX_DETAIL_CHARS = 500
RETRIED_BATCHES = "batches_retried_one_by_one"  # counter, namespace unimo_g.<stage>
# A file every model load appends one JSON line to ({stage, model, device, pid, seconds}), for
# checking how many copies a worker loaded; unset: nothing is written.
LOAD_LOG_ENV = "UNIMO_G_MODEL_LOAD_LOG"

log = logging.getLogger(__name__)


def _batch_kwargs(runtime: ModelRuntimeConfig) -> dict:
    upper = runtime.max_batch_size or runtime.batch_size
    return {"min_batch_size": min(runtime.batch_size, upper), "max_batch_size": upper}


def model_error_reject(item: Any, stage: str, error: BaseException) -> Reject:
    """The `model_error` Reject of a WorkItem, or of anything with a `sample` (a DecodedSample) or
    that is one."""
    sample = getattr(item, "sample", item)
    detail = f"{type(error).__name__}: {error}"
    return Reject(id=sample.id, source=sample.source_key, stage=stage, reason=MODEL_ERROR,
                  detail=detail[:MAX_DETAIL_CHARS], provenance=sample.provenance)


def _source_key(item: Any) -> str:
    return getattr(item, "sample", item).source_key


def run_isolated(
    batch: Sequence[Any], infer: Callable[[Sequence[Any]], list[Any]], stage: str
) -> list[Any]:
    """`infer(batch)`; when it raises a `MODEL_ERRORS`, `infer([item])` for each item, and a
    `model_error` Reject for each item that still raises. One result per item, in batch order."""
    try:
        return list(infer(batch))
    except MODEL_ERRORS as err:
        if len(batch) == 1:
            log.warning("%s: model error on %s: %s: %s", stage, _source_key(batch[0]), type(err).__name__, err)
            return [model_error_reject(batch[0], stage, err)]
        log.warning("%s: a batch of %d failed (%s: %s); retrying one at a time", stage, len(batch),
                    type(err).__name__, err)
        Metrics.counter(f"unimo_g.{stage}", RETRIED_BATCHES).inc()
    results: list[Union[WorkItem, Reject]] = []
    for item in batch:
        try:
            results.extend(infer([item]))
        except MODEL_ERRORS as err:
            log.warning("%s: model error on %s: %s: %s", stage, _source_key(item), type(err).__name__, err)
            results.append(model_error_reject(item, stage, err))
    return results


def record_load(stage: str, name: str, device: str, seconds: float) -> None:
    log.info("%s: loaded model %s on %s in process %d (%.1f s)", stage, name, device, os.getpid(), seconds)
    path = os.environ.get(LOAD_LOG_ENV)
    if path:
        line = json.dumps({"stage": stage, "model": name, "device": device, "pid": os.getpid(), "seconds": seconds})
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


class GroundingRunner:
    """A loaded Grounding DINO with the one call RunInference makes (callable through a proxy)."""

    def __init__(self, config: GroundingConfig):
        started = time.perf_counter()
        self._config = config
        self._model = load_grounding_model(config)
        record_load("grounding", config.model, config.runtime.device, time.perf_counter() - started)

    def ground(self, images: list[np.ndarray], phrases: list[tuple], plural: list[tuple]) -> list[tuple]:
        """`grounding.detect.ground_batch_with_reasons` on this model: per image, its list of
        `Grounding` and the reason each other phrase did not become an entity."""
        return ground_batch_with_reasons(self._model, images, phrases, plural, self._config)


class SegmentationRunner:
    """A loaded SAM with the one call RunInference makes (callable through a proxy)."""

    def __init__(self, config: SegmentationConfig):
        started = time.perf_counter()
        self._config = config
        self._model = load_segmentation_model(config)
        record_load("segmentation", config.model, config.runtime.device, time.perf_counter() - started)

    def segment(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[list]:
        """`segmentation.segment.segment_batch` on this model: one list of `MaskPrediction` per image."""
        return segment_batch(self._model, images, boxes, self._config)


class RuntimeHandler(ModelHandler):
    """Batching, model sharing and the metrics namespace of RunInference, from `config.runtime`
    (a `ModelRuntimeConfig`) of the stage named `stage`."""

    stage = ""

    def __init__(self, config):
        self._config = config

    def batch_elements_kwargs(self) -> dict:
        return _batch_kwargs(self._config.runtime)

    def share_model_across_processes(self) -> bool:
        return self._config.runtime.shares_model

    def model_copies(self) -> int:
        return self._config.runtime.model_copies

    def get_metrics_namespace(self) -> str:
        return f"unimo_g.{self.stage}"


class IsolatingHandler(RuntimeHandler):
    """A model stage with fault isolation (`run_isolated`) over items that carry their decoded
    `sample`: WorkItems (grounding, segmentation), the entity stage's requests. Subclasses give
    `load_model` and `_infer`."""

    def _infer(self, batch: Sequence[WorkItem], model) -> list[WorkItem]:
        raise NotImplementedError

    def run_inference(
        self, batch: Sequence[WorkItem], model, inference_args: Optional[dict] = None
    ) -> Iterable[Union[WorkItem, Reject]]:
        return run_isolated(batch, lambda items: self._infer(items, model), self.stage)

    def get_num_bytes(self, batch: Sequence[WorkItem]) -> int:
        return sum(item.sample.pixels.nbytes for item in batch)


class GroundingModelHandler(IsolatingHandler):
    """WorkItem with phrases -> WorkItem with `groundings` (boxes per phrase), or a model_error Reject."""

    stage = "grounding"

    def load_model(self) -> GroundingRunner:
        return GroundingRunner(self._config)

    def _infer(self, batch: Sequence[WorkItem], model) -> list[WorkItem]:
        results = model.ground(
            [item.sample.pixels for item in batch], [item.phrases for item in batch], [item.plural for item in batch]
        )
        return [
            replace(item, groundings=tuple(found), phrase_reasons=tuple(reasons.items()))
            for item, (found, reasons) in zip(batch, results, strict=True)
        ]


class SegmentationModelHandler(IsolatingHandler):
    """WorkItem with groundings -> WorkItem with one SAM mask per grounding, or a model_error Reject."""

    stage = "segmentation"

    def load_model(self) -> SegmentationRunner:
        return SegmentationRunner(self._config)

    def _infer(self, batch: Sequence[WorkItem], model) -> list[WorkItem]:
        boxes = [
            np.asarray([g.box for g in item.groundings], dtype=np.float32).reshape(-1, 4) for item in batch
        ]
        results = model.segment([item.sample.pixels for item in batch], boxes)
        return [replace(item, masks=tuple(masks)) for item, masks in zip(batch, results, strict=True)]
