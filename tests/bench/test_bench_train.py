"""The training benchmark's parts at a tiny size: input shards, FLOP counting, the full-size encoder
count, options, and one end-to-end run of both stages (no timing assertions)."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench import train as bench
from bench.train_features import write_feature_run
from bench.train_flops import build_random_llava, count_flops, full_encoder_flops
from bench.train_inputs import replicate_rows, rows_needed
from bench.train_loops import time_frozen, time_trainer
from trainers import train
from tests.trainers.shard_fixtures import write_dataset
from trainers.data import SampleBatch, ShardStream, list_shards
from trainers.distributed import DistInfo
from unimo_g.models.encoder import EncoderConfig
from unimo_g.records import PromptPart
from unimo_g.schema import VERSION_KEY

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The LLaVA layout at a test size: 28-px entity images in 14-px patches give 4 visual tokens each.
SMALL_VISION = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
SMALL_VISION.update(image_size=28, patch_size=14, projection_dim=16)
SMALL_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
SMALL_TEXT.update(num_key_value_heads=4)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    write_dataset(root, [3, 2], num_entities=2)
    return root


def test_replicated_rows_are_new_samples_of_the_same_content(shards, tmp_path):
    source = list_shards(str(shards))
    out = replicate_rows(source, tmp_path / "part-00000.parquet", rows=12, row_group_rows=4)
    table = pq.read_table(out)
    original = pq.read_table(source[0])
    ids = table.column("id").to_pylist()
    assert table.num_rows == 12 and len(set(ids)) == 12
    assert table.schema.metadata[VERSION_KEY] == original.schema.metadata[VERSION_KEY]
    first = original.column("id").to_pylist()
    assert ids[: len(first)] == first  # the originals keep their ids
    assert table.column("image")[5].as_py() == table.column("image")[0].as_py()  # copy 1 of row 0 (5 source rows)
    assert pq.ParquetFile(out).metadata.num_row_groups == 3


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_rows_needed_give_every_batch_in_one_epoch(shards, tmp_path, workers):
    config = train.load_train_config(
        train.parse_args(
            [
                "--config",
                str(bench.PRESETS["tiny"]),
                "--stage",
                "1",
                "--data",
                "x",
                "--output",
                "x",
                "--set",
                f"data.num_workers={workers}",
                "--set",
                "batch_size=3",
            ]
        )
    )
    rows = rows_needed(7, config.batch_size, workers)
    for group_rows in (64, config.batch_size):  # "rows" assignment, then "row_groups" (the bench's layout)
        path = replicate_rows(list_shards(str(shards)), tmp_path / f"p{group_rows}.parquet", rows, group_rows)
        stream = ShardStream([path], config.data, stage=1)
        assert stream.steps_per_epoch(config.batch_size) >= 7


def test_count_flops_counts_cpu_attention():
    q, k, v = (torch.randn(2, 4, 16, 8) for _ in range(3))
    flops, out = count_flops(F.scaled_dot_product_attention, q, k, v)
    assert out.shape == (2, 4, 16, 8)
    assert flops == 2 * (2 * 2 * 4 * 16 * 16 * 8)  # QK^T and PV, 2 FLOPs per multiply-add


def test_random_llava_layout_and_entity_tokens():
    encoder = build_random_llava(EncoderConfig(model="random-full"), torch.device("cpu"), SMALL_VISION, SMALL_TEXT)
    image = Image.new("RGB", (40, 30), (200, 20, 20))
    prompts = [
        [PromptPart(text="a "), PromptPart(entity=0), PromptPart(text=" on a table")],
        [PromptPart(text="a dog")],
    ]
    out = encoder(prompts, [[image], []])
    assert out.hidden.shape[0] == 2 and out.hidden.shape[2] == 32
    assert out.entity_tokens.sum(-1).tolist() == [[4], [0]]  # (28 / 14)^2 visual tokens
    full = build_random_llava(EncoderConfig(model="random-full", dtype="bf16"), torch.device("meta"))
    assert 7.0e9 < sum(p.numel() for p in full.vlm.parameters()) < 7.1e9  # LLaVA-1.5-7B: 7.06B


def test_full_encoder_flops_match_the_7b_layout():
    image = Image.new("RGB", (64, 48), (20, 200, 20))
    side = 8  # only prompts and entity images are counted; the tensors just fill the batch
    batch = SampleBatch(
        ids=["a", "b", "c"],
        captions=["", "", ""],
        pixel_values=torch.zeros(3, 3, side, side),
        prompts=[
            (PromptPart(text="a "), PromptPart(entity=0), PromptPart(text=" in a park")),
            (PromptPart(text="a "), PromptPart(entity=0), PromptPart(text=" in a large green park with old trees")),
            (PromptPart(text="a red cube and a blue ball"),),
        ],
        entity_images=[[image], [image], []],
        entity_masks=torch.zeros(3, 1, side, side),
        entity_valid=torch.tensor([[True], [True], [False]]),
    )
    full = full_encoder_flops([batch], max_length=2048)
    assert full["images_per_sample"] == 2 / 3
    assert full["tokens_per_sample"] > 576 * 2 / 3  # 576 visual tokens per 336-px image
    # grouped by image count: only the shorter one-image prompt is padded (a few text tokens), not
    # the text-only prompt to 576 visual tokens
    assert full["per_sample_unpadded"] < full["per_sample_padded"] < 1.02 * full["per_sample_unpadded"]
    lm_per_token = (full["per_sample_unpadded"] - full["vision_per_image"] * 2 / 3) / full["tokens_per_sample"]
    assert 12.5e9 < lm_per_token < 14e9  # ~2 x 6.5B language-model parameters per token, plus attention
    assert 0.35e12 < full["vision_per_image"] < 0.45e12  # ViT-L/14 at 336 px (577 tokens) + projector


def test_options_defaults_and_refusals():
    options, json_path = bench.parse_args(["--quick"])
    assert options.preset == "tiny" and options.steps == bench.QUICK["steps"] and json_path is None
    assert options.encoder_kind() == "preset" and options.peak_flops() is None
    with pytest.raises(SystemExit):
        bench.parse_args(["--quick", "--preset", "sd15"])
    cpu, _ = bench.parse_args(["--preset", "sd15"])
    cuda, _ = bench.parse_args(["--preset", "sd15", "--device", "cuda", "--dtype", "bf16"])
    assert cpu.encoder_kind() == "tiny" and cuda.encoder_kind() == "random-full"
    assert cuda.peak_flops() == 989e12 and cuda.warmup_steps == 3 and cpu.warmup_steps == 1
    config = train.load_train_config(bench.bench_request(cpu, 2, "unused"))
    assert (config.encoder.model, config.denoiser.vae, config.denoiser.size) == ("tiny", "sd15", "sd15")
    assert config.denoiser.cross_attention_dim == 768 and config.device == "cpu" and config.lambda_attn > 0
    config = train.load_train_config(bench.bench_request(cuda, 2, "unused"))
    assert (config.device, config.mixed_precision, config.encoder.dtype) == ("cuda:0", "bf16", "bf16")


def test_trainer_with_a_random_llava_encoder(shards, tmp_path):
    """The `random-full` path (a LLaVA layout built here) at a test size: the state trains a step."""
    options = bench.BenchOptions(preset="tiny", batch_size=2, resolution=32, encoder="random-full")
    request = bench.bench_request(options, 2, str(shards))
    config = train.load_train_config(request)
    dist = DistInfo(0, 1, 0, torch.device("cpu"))
    encoder = build_random_llava(EncoderConfig(model="random-full"), dist.device, SMALL_VISION, SMALL_TEXT)
    state = train.build_state(request, config, dist, encoder)
    assert state.encoder is encoder and state.denoiser.encoder_width == SMALL_TEXT["hidden_size"]
    feed = train.BatchFeed(train.build_stream(str(shards), config, 2, dist), config.batch_size)
    timing, kept = time_trainer(state, feed, steps=1, warmup=1)
    assert timing["flops_per_step"] > 0 and len(kept) == 1 and state.ema.updates == 2
    frozen = time_frozen(state, kept)
    assert frozen["encoder_flops_per_sample"] > 0 and frozen["vae_flops_per_image"] > 0
    # its features: a feature run the trainer accepts for this config, with the random encoder's width
    config1 = train.load_train_config(bench.bench_request(options, 1, str(shards)))
    run_dir = str(write_feature_run(state, list_shards(str(shards)), tmp_path / "features-run", batch_size=3))
    stream = train.build_stream(run_dir, config1, 1, dist)
    conditions = train.open_features(stream, config1, run_dir)
    assert stream.num_rows == sum(pq.read_metadata(f).num_rows for f in list_shards(str(shards)))
    assert conditions.hidden_size == SMALL_TEXT["hidden_size"] and stream.feature_layout.latent_shape == (4, 8, 8)


def test_end_to_end_tiny_run_reports_both_stages(shards, tmp_path, capsys):
    out = tmp_path / "result.json"
    code = bench.main(
        [
            "--data",
            str(shards),
            "--steps",
            "2",
            "--warmup",
            "1",
            "--batch-size",
            "2",
            "--resolution",
            "32",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert [s["stage"] for s in result["stages"]] == [1, 2]
    stage1, stage2 = result["stages"]
    assert stage2["lambda_attn"] > 0 and stage1["lambda_attn"] == 0
    assert stage2["frozen"]["entity_images_per_sample"] > 0 == stage1["frozen"]["entity_images_per_sample"]
    for stage in result["stages"]:
        assert stage["latent_shape"] == [2, 4, 8, 8]
        assert stage["trainer"]["images"] == 4 and stage["plain"]["images"] == 4
        assert stage["plain"]["flops_per_step"] > 0 and stage["trainer"]["flops_per_step"] > 0
        assert stage["plain"]["cond_tokens"] == round(stage["frozen"]["cond_tokens"])
        assert stage["loader"]["samples_per_s"] > 0 and stage["full_encoder_flops"] is None
        assert "plain_mfu" not in stage["derived"]  # no peak on CPU: FLOP/s only
    printed = capsys.readouterr().out
    assert "trainer / plain" in printed and "loader" in printed and "frozen" in printed and "features" in printed
    assert stage1["features"]["trainer"]["images"] == 4 and stage2["features"] is None
    assert stage1["derived"]["features_over_trainer"] > 0


def test_flops_only_budget_adds_up_without_timing(shards, tmp_path):
    out = tmp_path / "budget.json"
    assert (
        bench.main(
            [
                "--data",
                str(shards),
                "--flops-only",
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--resolution",
                "32",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    budget = json.loads(out.read_text())["budget"]
    assert [b["stage"] for b in budget] == [1, 2] and "stages" not in json.loads(out.read_text())
    for b in budget:
        parts = b["unet_train_flops"] + b["vae_encode_flops"] + b["encoder_flops"]
        assert b["total_flops"] == parts and 0 < b["frozen_share"] < 1
    assert budget[1]["cond_tokens"] > budget[0]["cond_tokens"]  # stage 2 adds 16 visual tokens per entity image

