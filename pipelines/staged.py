"""What every stage of the two Beam jobs returns: what passed it, and what it rejected.

    PCollection ─► stage ─► Staged(samples: what the next stage takes, rejects: (PCollection[Reject], ...))

A stage's DoFn yields what passes to its main output and each Reject to the output tagged `REJECTS`;
`Staged.from_outputs` reads such a ParDo's outputs, and `DoFnStage` is the stage that is one such
DoFn. A job applies its stages in order and collects their rejects in one list with `passed`, then
flattens that list into one reject writer: every input ends as exactly one row or one reject.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
from apache_beam.pvalue import DoOutputsTuple

REJECTS = "rejects"  # tag of every stage DoFn's rejects output
SAMPLES = "samples"  # tag of its main output: what passes


class Staged(NamedTuple):
    """A stage's outputs: `samples`, the elements that go on (samples, work items or rows), and
    `rejects`, the PCollections of its Rejects (none for a stage that rejects nothing).

    A NamedTuple, so that a PTransform's `expand` may return it: Beam takes the PCollections in it
    for the transform's outputs."""

    samples: beam.PCollection
    rejects: tuple[beam.PCollection, ...] = ()

    @classmethod
    def from_outputs(cls, outputs: DoOutputsTuple) -> Staged:
        """The Staged of `ParDo(fn).with_outputs(REJECTS, main=SAMPLES)`: its main output and its rejects."""
        return cls(outputs[SAMPLES], (outputs[REJECTS],))


class DoFnStage(beam.PTransform):
    """A stage that is one DoFn yielding what passes and, tagged `REJECTS`, Rejects:
    PCollection -> Staged(what passed, (the Rejects,)). `side_inputs` go to the ParDo by keyword."""

    def __init__(self, fn: beam.DoFn, **side_inputs):
        super().__init__()
        self._fn = fn
        self._side_inputs = side_inputs  # not `side_inputs`: PTransform has an attribute of that name

    def expand(self, pcoll):
        outputs = pcoll | beam.ParDo(self._fn, **self._side_inputs).with_outputs(REJECTS, main=SAMPLES)
        return Staged.from_outputs(outputs)


def passed(staged: Staged, rejects: list[beam.PCollection]) -> beam.PCollection:
    """What passed a stage, `staged.samples`; the stage's rejects are appended to `rejects`, the
    job's one list of them."""
    rejects.extend(staged.rejects)
    return staged.samples
