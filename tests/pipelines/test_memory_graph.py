"""No runner holds image bytes: no grouping, flatten or side input of the pipeline job carries them.

On the DirectRunner a GroupByKey, or a Flatten of a shuffled branch with the main stream, buffers its
whole input, and a side input is materialised whole: memory stays flat only if none of them carries
image data. The graph `pipelines.prompts.graph.build_pipeline` builds is walked for every GroupByKey and Flatten
(CoGroupByKey, Reshuffle and CombinePerKey expand to them) and every side input; each of those inputs
gets a probe branch, and the job runs on a few sample photos. A probe records the largest image-sized
value in any element: bytes, arrays, tensors or images of at least `IMAGE_SIZED` bytes anywhere in
records, dicts, tuples and Arrow tables. The photos' encoded bytes, their decoded pixels and entity
crops all are; ids, dedupe ranks, rejects and written file names are not. A control probe on the rows
going into `WriteShards` shows that the probes see image bytes where they are.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import torch
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor
from PIL import Image

from pipelines.io.write import WriteRolling
from pipelines.prompts.graph import build_pipeline
from unimo_g.config_tools import load_config
from unimo_g.pipeline_config import PipelineConfig

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "00000"
TINY = ROOT / "configs" / "tiny.yaml"
PHOTOS = 3  # and one repeat of the first: the dedupe stage sees a duplicate
IMAGE_SIZED = 1024  # bytes; the sample photos are tens of KiB, entity crops and decoded pixels more than 1 KiB
PROBES = "memory_graph_probes"
CONTROL = "control: rows into WriteShards"

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.time_limit(600)]


def largest_blob(value, depth: int = 0) -> int:
    """Size in bytes of the largest bytes / array / tensor / image anywhere in `value`."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if isinstance(value, (pa.Table, pa.RecordBatch)):  # rows batched for a Parquet writer
        return largest_blob(value.to_pylist(), depth)
    if depth > 8 or isinstance(value, (str, int, float, bool, type(None))):
        return 0
    if isinstance(value, dict):
        parts = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        parts = list(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts = [getattr(value, field.name) for field in dataclasses.fields(value)]
    elif hasattr(value, "__dict__"):
        parts = list(vars(value).values())
    else:
        return 0
    return max((largest_blob(part, depth + 1) for part in parts), default=0)


class RecordLargestBlob(beam.DoFn):
    """Probe: a distribution of `largest_blob` over the elements of one PCollection."""

    def __init__(self, name: str):
        self.name = name
        self.largest = Metrics.distribution(PROBES, name)

    def process(self, element):
        self.largest.update(largest_blob(element))


class HoldingPoints(PipelineVisitor):
    """The PCollections a runner may hold whole: inputs of GroupByKey and Flatten, side inputs; and
    the control, the rows going into WriteShards."""

    def __init__(self):
        self.held: dict[str, beam.PCollection] = {}
        self.control = None

    def enter_composite_transform(self, node):
        if isinstance(node.transform, WriteRolling) and node.full_label.endswith("WriteShards"):
            (self.control,) = node.inputs

    def visit_transform(self, node):
        if isinstance(node.transform, (beam.GroupByKey, beam.Flatten)):
            for n, pcoll in enumerate(node.inputs):
                self.held[f"{type(node.transform).__name__} {node.full_label} input {n}"] = pcoll
        for n, side in enumerate(node.side_inputs):
            self.held[f"side input {n} of {node.full_label}"] = side.pvalue


def _inputs(folder: Path) -> Path:
    """A folder of `<key>.jpg` + `<key>.txt`: the first PHOTOS sample photos and a repeat of the first."""
    folder.mkdir()
    keys = sorted(path.stem for path in SAMPLE.glob("*.jpg"))[:PHOTOS]
    for key in keys:
        for suffix in (".jpg", ".txt"):
            shutil.copy(SAMPLE / f"{key}{suffix}", folder / f"{key}{suffix}")
    for suffix in (".jpg", ".txt"):
        shutil.copy(SAMPLE / f"{keys[0]}{suffix}", folder / f"repeat{suffix}")
    return folder


def _largest_by_probe(tmp_path: Path, overrides: list[str]) -> tuple[dict[str, tuple[int, int]], tuple[int, int]]:
    """Build the job, probe its holding points, run it: {holding point: (elements, largest blob)} and
    the control's (elements, largest blob)."""
    config = load_config(PipelineConfig, TINY, overrides)
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
    build_pipeline(pipeline, str(_inputs(tmp_path / "input")), str(tmp_path / "out"), config)
    points = HoldingPoints()
    pipeline.visit(points)
    assert points.held and points.control is not None
    probes = {**points.held, CONTROL: points.control}
    for n, (name, pcoll) in enumerate(probes.items()):
        _ = pcoll | f"MemoryProbe{n}" >> beam.ParDo(RecordLargestBlob(name))
    result = pipeline.run()
    result.wait_until_finish()
    seen = {}
    for record in result.metrics().query(MetricsFilter().with_namespace(PROBES))["distributions"]:
        value = record.committed if record.committed is not None else record.attempted
        seen[record.key.metric.name] = (value.count, value.max)
    return {name: seen.get(name, (0, 0)) for name in points.held}, seen[CONTROL]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param([], id="default-dedupe"),
        pytest.param(["dedupe.method=single_read"], id="single-read-dedupe"),
        pytest.param(["write.rows_per_file=2"], id="small-files"),
    ],
)
def test_no_grouping_flatten_or_side_input_carries_image_bytes(tmp_path, overrides):
    held, (rows, largest_row_blob) = _largest_by_probe(tmp_path, overrides)
    assert rows >= 1 and largest_row_blob >= IMAGE_SIZED  # the probes see image bytes where they are
    assert sum(count for count, _ in held.values()) > 0  # and the holding points carried elements
    carrying = {name: largest for name, (_, largest) in held.items() if largest >= IMAGE_SIZED}
    assert not carrying, f"image-sized values (bytes) held by the runner at: {carrying}"
