"""Smoke test of the benchmark's building blocks on the tiny preset (no assertion on timings)."""

import numpy as np
import pytest
import torch
from PIL import Image

from bench.flops import count_flops, pipeline_flops, utilisation
from bench.inputs import SCALES, make_inputs, sample_photos
from bench.loops import batch_of_one_loop, load_models, plain_loop, prepare_items
from bench.pipeline import PRESETS, format_report, ratios, runtime_overrides
from bench.rss import PeakRss
from bench.runs import run_beam, summarize_shards
from tests.trainers.shard_fixtures import make_row, write_shard
from unimo_g.config_tools import load_config
from unimo_g.pipeline_config import PipelineConfig

N = 6
OVERRIDES = ["grounding.runtime.batch_size=4", "segmentation.runtime.batch_size=3"]  # batches of unequal sizes


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run thousands of small ops: on a CPU shared with other jobs, two OpenMP threads per
    op spin against each other and the module takes minutes instead of seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def config():
    return load_config(PipelineConfig, PRESETS["tiny"], OVERRIDES)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("bench") / "input", N)


@pytest.fixture(scope="module")
def models(config):
    return load_models(config)


@pytest.fixture(scope="module")
def plain(models, inputs, config, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    return plain_loop(models, inputs, out, config), summarize_shards(out)


def test_inputs_are_distinct_resized_copies_of_the_sample(inputs):
    photos = sample_photos()
    images = sorted(inputs.rglob("*.jpg"))
    assert len(images) == N and len(list(inputs.rglob("*.txt"))) == N
    assert len({path.read_bytes() for path in images}) == N
    captions = [path.with_suffix(".txt").read_text(encoding="utf-8").strip() for path in images]
    assert captions == [photos[k % len(photos)][1] for k in range(N)]
    with Image.open(images[0]) as image:
        assert image.size == photos[0][0].size  # the first round keeps scale SCALES[0] == 1
    assert SCALES[0] == 1.0


def test_plain_loop_writes_every_input(plain):
    result, output = plain
    assert result.samples == result.rows == N and result.rejects == 0
    assert output["rows"] == N and output["entities"] == result.entities <= result.boxes
    assert result.boxes > 0  # the tiny preset's thresholds let boxes through: SAM ran
    assert set(result.as_dict()["stage_seconds"]) == {"read", "decode", "scores", "phrases", "ground", "segment",
                                                      "assemble", "write"}
    assert result.stage_seconds["scores"] > 0  # the tiny preset runs the score stage


@pytest.mark.parametrize("sam_prompts", ["per_box", "per_image"])
def test_batch_of_one_writes_the_same_rows(models, inputs, config, plain, tmp_path, sam_prompts):
    result = batch_of_one_loop(models, inputs, tmp_path, config, sam_prompts)
    assert result.rows == N and result.boxes == plain[0].boxes
    # one box per SAM decoder call moves mask edges against all of an image's boxes in one call
    key = "digest" if sam_prompts == "per_image" else "digest_boxes"
    assert summarize_shards(tmp_path)[key] == plain[1][key]


@pytest.mark.time_limit(600)  # waits on the sampler process
def test_beam_run_writes_the_same_rows_as_the_plain_loop(inputs, plain, tmp_path):
    result = run_beam(inputs, tmp_path, PRESETS["tiny"], OVERRIDES)
    assert (result["samples"], result["rows"], result["rejects"]) == (N, N, 0)
    assert result["running_mode"] == "in_memory" and result["seconds"] > 0
    assert summarize_shards(tmp_path)["digest"] == plain[1]["digest"]


def test_flops_per_image_add_up(models, inputs, config):
    items = prepare_items(models, inputs, config, 2)
    flops = pipeline_flops(models, items, config)
    assert flops["images"] == 2 and flops["grounding_per_image"] > 0 and flops["sam_encoder_per_image"] > 0
    assert flops["total_per_image"] == pytest.approx(flops["grounding_per_image"] + flops["sam_per_image"])
    matmul, _ = count_flops(np.matmul, np.ones((2, 2)), np.ones((2, 2)))  # numpy is not torch: not counted
    assert matmul == 0
    assert utilisation(1e12, 2.0, None) is None and utilisation(1e12, 2.0, 4e12) == pytest.approx(0.5)


def test_the_digest_covers_every_column_and_not_the_file_split(tmp_path):
    rows = [make_row(i, num_entities=2) for i in range(3)]
    write_shard(tmp_path / "a" / "shards" / "part-0.parquet", rows)
    write_shard(tmp_path / "b" / "shards" / "part-0.parquet", rows[2:])
    write_shard(tmp_path / "b" / "shards" / "part-1.parquet", rows[:2])
    summary = summarize_shards(tmp_path / "a")
    assert summary["digest"] == summarize_shards(tmp_path / "b")["digest"]
    assert (summary["rows"], summary["entities"]) == (3, 6)
    entity = rows[1]["entities"][1]
    changes = [("mask", {**entity["mask"], "counts": entity["mask"]["counts"] + "0"}), ("mask_score", 0.5),
               ("image", entity["image"] + b"\0")]
    for n, (key, value) in enumerate(changes):
        changed = [*rows[:1], {**rows[1], "entities": [rows[1]["entities"][0], {**entity, key: value}]}, *rows[2:]]
        write_shard(tmp_path / f"c{n}" / "shards" / "part-0.parquet", changed)
        assert summarize_shards(tmp_path / f"c{n}")["digest"] != summary["digest"], key


@pytest.mark.time_limit(120)  # waits on the sampler process
def test_peak_rss_sees_an_allocation():
    with PeakRss(interval_s=0.01) as rss:
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
        block[::4096] = 2
        _ = block.sum()
    assert rss.peak_mib - rss.start_mib > 48


def test_runtime_overrides_and_report():
    assert runtime_overrides("cuda", "bf16", 8, None) == [
        "grounding.runtime.device=cuda", "grounding.runtime.dtype=bf16", "grounding.runtime.batch_size=8",
        "segmentation.runtime.device=cuda", "segmentation.runtime.dtype=bf16",
    ]
    record = {"samples_per_s": 2.0, "steady_seconds": 3.0, "seconds": 4.0, "load_seconds": {"a": 1.0},
              "output": {"rows": 6, "entities": 4, "digest": "x"}, "peak_rss_mib": 700.0}
    best = {"plain": dict(record), "one": dict(record, samples_per_s=1.0), "beam": dict(record, steady_seconds=3.3)}
    figures = ratios(best)
    assert figures["plain_vs_one"] == 2.0 and figures["beam_overhead_pct"] == pytest.approx(10.0)
    assert figures["outputs_agree_beam_plain"] is True
    report = {"preset": "tiny", "config": "configs/tiny.yaml", "n": 6, "dtype": "fp32", "batch_sizes": {},
              "machine": {"device": "cpu", "torch_threads": 2}, "runner": "DirectRunner", "repeats": 1,
              "threads": None, "flops": None, "one_sam": "per_box", "best": best, "ratios": figures}
    text = format_report(report)
    assert "beam overhead over the plain batched loop: +10.0%" in text and "plain" in text
