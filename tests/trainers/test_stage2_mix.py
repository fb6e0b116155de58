"""The stage-2 mix as configured: text-only share, at least one entity image otherwise, and the
realised mix in the training log."""

import json
import math
import random
from pathlib import Path

import pytest

from tests.trainers.shard_fixtures import write_dataset
from trainers import train
from trainers.prompts import choose_entities, expected_images, expected_mix

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "train_tiny.yaml")
# The paper's entity counts per prompt (UNIMO-G, section 3.2); ">= 4" drawn as 4 and 5 alike.
PAPER_MIX = {0: 0.16, 1: 0.368, 2: 0.258, 3: 0.123, 4: 0.0455, 5: 0.0455}
DRAWS = 20_000


def _draw(counts: dict, rng: random.Random) -> list[int]:
    population, weights = zip(*counts.items())
    return rng.choices(population, weights, k=DRAWS)


@pytest.mark.parametrize("substitute_prob, text_only_prob, max_entities", [(0.5, 0.1, 3), (0.2, 0.3, 4), (1.0, 0.0, 2)])
def test_realised_mix_matches_the_configuration_on_the_papers_entity_mix(substitute_prob, text_only_prob, max_entities):
    rng = random.Random(7)
    rows = _draw(PAPER_MIX, rng)
    picks = [choose_entities(n, rng, substitute_prob, text_only_prob, max_entities) for n in rows]
    with_entities = [len(p) for n, p in zip(rows, picks) if n > 0]
    text_only_of_entity_rows = sum(k == 0 for k in with_entities) / len(with_entities)
    sigma = math.sqrt(max(text_only_prob * (1 - text_only_prob), 1e-4) / len(with_entities))
    assert abs(text_only_of_entity_rows - text_only_prob) < 4 * sigma
    assert all(1 <= len(p) <= min(n, max_entities) for n, p in zip(rows, picks) if p)
    assert all(p == sorted(set(p)) and all(0 <= k < n for k in p) for n, p in zip(rows, picks))

    expected = expected_mix(PAPER_MIX, substitute_prob, text_only_prob, max_entities)
    realised_text_only = sum(not p for p in picks) / DRAWS
    realised_images = sum(len(p) for p in picks) / DRAWS
    assert realised_text_only == pytest.approx(expected["text_only_share"], abs=0.015)
    assert realised_images == pytest.approx(expected["images_per_sample"], abs=0.03)
    # the old independent draw left a row of n entities without an image with probability 0.5^n:
    # every row with entities that is not text-only now shows at least one
    assert expected["images_per_sample"] >= (1 - text_only_prob) * (1 - PAPER_MIX[0]) - 1e-9


def test_expected_mix_of_the_paper_settings():
    mix = expected_mix(PAPER_MIX, 0.5, 0.1, 3)
    assert mix["text_only_share"] == pytest.approx(0.16 + 0.84 * 0.1)
    # one entity, then each further one with 0.5, at most 3
    assert expected_images(1, 0.5, 3) == 1 and expected_images(2, 0.5, 3) == 1.5
    assert expected_images(4, 0.5, 3) == pytest.approx(0.125 * 1 + 0.375 * 2 + 0.5 * 3)
    with pytest.raises(ValueError, match="sum to 1"):
        expected_mix({1: 0.5}, 0.5, 0.1, 3)


def test_the_training_log_records_the_mix(tmp_path, one_torch_thread):
    data = tmp_path / "data"
    write_dataset(data, [8], num_entities=2)
    output = tmp_path / "run"
    argv = ["--config", TINY, "--stage", "2", "--data", str(data), "--output", str(output), "--max-steps", "4",
            "--set", "data.resolution=32", "--set", "log_every=2", "--set", "batch_size=2",
            "--set", "data.text_only_prob=0.5", "--set", "cond_dropout=0.0"]
    assert train.main(argv) == 0
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    seen_text_only = seen_images = 0.0
    for record in records:
        share, images, active = record["text_only_share"], record["entity_images_per_sample"], record["attn_active_share"]
        assert share in (0.0, 0.25, 0.5, 0.75, 1.0)  # 4 samples per interval
        assert active == pytest.approx(1.0 - share)  # no condition dropout: every sample with an image attends
        assert (1.0 - share) <= images <= 2 * (1.0 - share)
        seen_text_only += share
        seen_images += images
    assert 0 < seen_text_only and 0 < seen_images

    # the attention loss off: the mix is still logged, no sample attends
    argv[argv.index(str(output))] = str(tmp_path / "no_attn")
    assert train.main(argv + ["--set", "lambda_attn=0"]) == 0
    records = [json.loads(line) for line in (tmp_path / "no_attn" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["attn_active_share"] == 0.0 for r in records)
