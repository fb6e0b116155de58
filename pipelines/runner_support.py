"""Beam runners the build refuses, and why: checked before anything is read or written.

A runner is refused when it cannot execute the build's graph correctly, so that a run never writes
output that looks complete and is not. tests/cluster/test_dask.py pins down each reason on a real
cluster and fails when a Beam release removes it.
"""

from __future__ import annotations

from typing import Optional

REFUSED = {
    "DaskRunner": (
        "Beam's DaskRunner cannot run this pipeline: a multi-output step's tagged output carries all of the step's "
        "outputs, only the last branch of the graph is computed (shards, rejects and the manifest are siblings), "
        "and it reports no metrics. Run on the DirectRunner, Dataflow, Spark or Flink (docs/runbooks/dask.md)."),
}


def refusal(runner: str) -> Optional[str]:
    """Why the build refuses `runner` (a Beam runner name or a class's dotted path), or None."""
    return REFUSED.get(runner.rsplit(".", 1)[-1])
