"""A model step of the pipeline: `RunInference` with one of our handlers, its rejects split off.

    items ─► RunInference(handler) ─► item | Reject ─► SplitRejects ─► Staged(items, rejects)

Items are WorkItems (grounding, segmentation) or the entity stage's requests.

The handlers turn inputs the model cannot process into `model_error` Rejects (see
`pipelines.prompts.model_handlers.run_isolated`), so one bad image does not fail its bundle and the job.
"""

from __future__ import annotations

from typing import Iterator, Union

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference

from pipelines import metrics
from pipelines.prompts.work_item import WorkItem
from pipelines.staged import REJECTS, DoFnStage
from unimo_g.records import Reject


class _SplitRejectsFn(beam.DoFn):
    """An item -> main output; Reject -> output `REJECTS`, counted as `reject.<stage>.<reason>`."""

    def __init__(self, namespace: str):
        self.namespace = namespace

    def process(self, result: Union[WorkItem, Reject]) -> Iterator:
        if isinstance(result, Reject):
            beam.metrics.Metrics.counter(self.namespace, metrics.reject_counter_name(result.stage, result.reason)).inc()
            yield beam.pvalue.TaggedOutput(REJECTS, result)
        else:
            yield result


class RunModelStage(beam.PTransform):
    """PCollection of items -> Staged(the model's results, its `model_error` Rejects)."""

    def __init__(self, handler: ModelHandler):
        super().__init__()
        self.handler = handler

    def expand(self, items):
        return (
            items
            | "RunInference" >> RunInference(self.handler)
            | "SplitRejects" >> DoFnStage(_SplitRejectsFn(self.handler.get_metrics_namespace()))
        )
