"""Fault isolation in the model steps: an input the model code cannot process becomes a
`model_error` reject of its stage; the other inputs of its batch are rows, as if it were not there.

The poison is a real failure of the real model code: an image so thin that the processors resize
its short side to 0 pixels (`unimo_g.images.model_batches.batch_images` raises ValueError). At 16 x 8000 it
fails Grounding DINO's preprocessing (canvas 192); at 16 x 5000 Grounding DINO still runs (192 x
0.6 rounds to 1) and finds boxes, and SAM's preprocessing fails (canvas 128: 0.4 rounds to 0).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.prompts.decode import CheckedSample, decode_checked
from pipelines.prompts.model_handlers import GroundingModelHandler, SegmentationModelHandler
from pipelines.prompts.phrase_stage import ExtractPhrasesFn
from pipelines.prompts.work_item import WorkItem
from tests.pipelines.test_end_to_end import run_job
from tests.run_outputs import ROOT, read_rows
from unimo_g.config_tools import load_config
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.records import Reject

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ROOT / "configs" / "tiny.yaml"
# Let the thin images through decode and their boxes through the box filter, so the model code meets them.
THIN_OK = ["decode.max_aspect_ratio=1000", "grounding.max_box_aspect_ratio=100000"]


def _png(width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


GOOD = {f"good{k}": (_png(96 + 8 * k, 64, k), f"a red dog next to a small cat number {k}") for k in range(3)}
POISON = {
    "thin_for_grounding": (_png(8000, 16, 10), "a long train on a bridge"),
    "thin_for_segmentation": (_png(5000, 16, 11), "a long train on a bridge"),
}


def _config() -> PipelineConfig:
    return load_config(PipelineConfig, TINY, THIN_OK)


def _items(samples: dict, config: PipelineConfig) -> list[WorkItem]:
    phrases = ExtractPhrasesFn(config.phrases)
    phrases.setup()
    items = []
    for key, (image, caption) in samples.items():
        checked = CheckedSample(id=key, source_key=key, url=None, image=image, caption=caption)
        items.extend(phrases.process(decode_checked(checked, config.decode)))
    return items


def test_a_failing_batch_is_retried_one_by_one_and_only_the_bad_item_is_rejected():
    config = _config()
    items = _items({**GOOD, **POISON}, config)  # goods first: the poison is in the same batch
    handler = GroundingModelHandler(config.grounding)
    model = handler.load_model()
    results = list(handler.run_inference(items, model))
    assert [type(r).__name__ for r in results] == ["WorkItem"] * 3 + ["Reject", "WorkItem"]
    reject = results[3]
    assert (reject.id, reject.source, reject.stage, reject.reason) == (
        "thin_for_grounding", "thin_for_grounding", "grounding", "model_error")
    assert reject.detail.startswith("ValueError: image 0: resized size (0, 192)")
    alone = [handler.run_inference([item], model)[0] for item in items if item.sample.id != "thin_for_grounding"]
    kept = [r for r in results if isinstance(r, WorkItem)]
    assert [r.groundings for r in kept] == [r.groundings for r in alone]
    assert results[4].groundings, "the 16 x 5000 image must reach SAM with boxes"

    segmenter = SegmentationModelHandler(config.segmentation)
    masks = list(segmenter.run_inference(kept, segmenter.load_model()))
    assert [(r.id, r.stage, r.reason) for r in masks if isinstance(r, Reject)] == [
        ("thin_for_segmentation", "segmentation", "model_error")]


def _write_folder(folder: Path, samples: dict) -> Path:
    folder.mkdir(parents=True)
    for key, (image, caption) in samples.items():
        (folder / f"{key}.png").write_bytes(image)
        (folder / f"{key}.txt").write_text(caption)
    return folder


def _rejects(out: Path) -> list[dict]:
    return [row for path in sorted((out / "rejects").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_model_errors_become_rejects_and_the_job_completes(tmp_path):
    sets = [f"--set={item}" for item in THIN_OK]
    poisoned = run_job(tmp_path, "poisoned", *sets, input_path=_write_folder(tmp_path / "all", {**GOOD, **POISON}))
    clean = run_job(tmp_path, "clean", *sets, input_path=_write_folder(tmp_path / "good", GOOD))

    rejects = _rejects(poisoned)
    assert sorted((r["source"], r["stage"], r["reason"]) for r in rejects) == [
        ("thin_for_grounding", "grounding", "model_error"),
        ("thin_for_segmentation", "segmentation", "model_error"),
    ]
    assert all(r["detail"].startswith("ValueError: ") for r in rejects)
    assert read_rows(poisoned) == read_rows(clean)
    counts = json.loads((poisoned / "manifest.json").read_text())["counts"]
    assert (counts["inputs"], counts["rows"], counts["rejects"], counts["accounted"]) == (5, 3, 2, True)


def test_isolation_holds_through_a_process_shared_model():
    """With `runtime.share_model` the handler gets a proxy of the model's runner (Beam's
    MultiProcessShared): the batch and its results cross a process boundary, and the model's
    exception comes back as itself, so the same element is rejected."""
    import uuid

    from apache_beam.utils.multi_process_shared import MultiProcessShared

    config = _config()
    items = _items({**GOOD, **POISON}, config)
    handler = GroundingModelHandler(config.grounding)
    proxy = MultiProcessShared(handler.load_model, tag=f"unimo-g-test-{uuid.uuid4().hex}", always_proxy=True).acquire()
    results = list(handler.run_inference(items, proxy))
    local = list(handler.run_inference(items, handler.load_model()))
    assert [(r.id, r.reason) for r in results if isinstance(r, Reject)] == [("thin_for_grounding", "model_error")]
    assert [r.groundings for r in results if isinstance(r, WorkItem)] == [
        r.groundings for r in local if isinstance(r, WorkItem)]
