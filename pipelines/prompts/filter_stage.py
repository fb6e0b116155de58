"""The `filters` config as a Beam step: elements that fail a rule become Reject(stage="filter").

`Filter` (the stage over `FilterFn`; it returns a `pipelines.staged.Staged`) works on any element
with `.id`, `.source_key`, `.provenance` and, for rules on scores, the `computed_*` attributes: the
pipeline runs it on checked samples with `config.filters.input_rules` before de-duplication and
decoding (a filtered input costs no decode or model time; step `Filter`), and again with
`config.filters.computed_rules` on decoded samples once their scores are computed (step
`FilterScores`, which follows the score stage).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import apache_beam as beam

from pipelines import metrics
from pipelines.staged import REJECTS, DoFnStage
from unimo_g.filters import Rule, failure_detail, first_failure
from unimo_g.records import Reject

STAGE = "filter"


def filter_reject(element, rule: Rule, value, default_missing: str) -> Reject:
    """The Reject of `element` for failing `rule` with `value`."""
    return Reject(id=element.id, source=element.source_key, stage=STAGE, reason=rule.token,
                  detail=failure_detail(rule, value, default_missing), provenance=element.provenance)


def passes_all(element, rules: Sequence[Rule], default_missing: str) -> bool:
    """Whether `element` passes every rule (what `FilterFn` lets through)."""
    return first_failure(element, rules, default_missing) is None


class FilterFn(beam.DoFn):
    """Element -> itself (main output) when it passes every rule, else its Reject (tagged `REJECTS`).

    Counters: `filter/passed`, `filter/reject.filter.<rule token>`.
    """

    def __init__(self, rules: Sequence[Rule], default_missing: str = "keep"):
        self.rules = tuple(rules)
        self.default_missing = default_missing

    def setup(self):
        self.passed = beam.metrics.Metrics.counter(metrics.FILTER, metrics.PASSED)

    def process(self, element) -> Iterator:
        failure = first_failure(element, self.rules, self.default_missing)
        if failure is None:
            self.passed.inc()
            yield element
            return
        rule, value = failure
        beam.metrics.Metrics.counter(metrics.FILTER, metrics.reject_counter_name(STAGE, rule.token)).inc()
        yield beam.pvalue.TaggedOutput(REJECTS, filter_reject(element, rule, value, self.default_missing))


class Filter(DoFnStage):
    """PCollection of elements -> Staged(those that pass every rule, the `filter` Rejects of the others)."""

    def __init__(self, rules: Sequence[Rule], default_missing: str = "keep"):
        super().__init__(FilterFn(rules, default_missing))
