"""The README's demo path end to end on real pipeline output: the pipeline on the bundled sample (tiny
preset) -> gallery -> stage 1 -> stage 2 from stage 1 -> generate, each through the job's own entry point
(`main(argv)`, which takes the flags of the `unimo-g` command the README gives, with the README's arguments;
fewer steps), in a fresh folder."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

import beam_runner
from pipelines.outputs import gallery
from trainers import train
from unimo_g.checkpoint_format import read_latest
from unimo_g_apps import generate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
PIPELINE_CONFIG = ROOT / "configs" / "tiny.yaml"
TRAIN_CONFIG = ROOT / "configs" / "train_tiny.yaml"
STEPS = 3  # per stage: the README trains 10 (20 from features); enough here to write checkpoints and meet entity images

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.time_limit(600)]


def _rgb(data: bytes) -> tuple[tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        return rgb.size, rgb.tobytes()


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_pipeline_gallery_stage1_stage2_generate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the README's relative output paths, in a fresh folder

    # 1. python beam_runner.py --input data/sample --output demo_output --config configs/tiny.yaml --runner=DirectRunner
    assert beam_runner.main(["--input", str(SAMPLE), "--output", "demo_output", "--config", str(PIPELINE_CONFIG),
                             "--runner=DirectRunner"]) == 0
    shards = sorted(Path("demo_output/shards").glob("*.parquet"))
    rows = [row for path in shards for row in pq.read_table(path).to_pylist()]
    crops = [entity["image"] for row in rows for entity in row["entities"]]
    assert rows and crops, "the demo's shards must hold rows with entities"

    # 2. python -m pipelines.outputs.gallery demo_output: every row's entity crops, inline
    assert gallery.main(["demo_output"]) == 0
    page = Path("demo_output/gallery.html").read_text(encoding="utf-8")
    for crop in crops:
        assert base64.b64encode(crop).decode("ascii") in page

    # 3. python -m trainers.train --config configs/train_tiny.yaml --stage 1 --data demo_output --output runs/s1
    common = ["--config", str(TRAIN_CONFIG), "--data", "demo_output", "--max-steps", str(STEPS)]
    assert train.main([*common, "--stage", "1", "--output", "runs/s1"]) == 0
    assert read_latest("runs/s1").name == f"step-{STEPS:07d}"
    assert [r["step"] for r in _metrics(Path("runs/s1"))] == list(range(1, STEPS + 1))

    # 4. ... --stage 2 --data demo_output --output runs/s2 --init-from runs/s1 (main() runs exactly this, with no hook)
    seen = []
    args = train.parse_args([*common, "--stage", "2", "--output", "runs/s2", "--init-from", "runs/s1"])
    train.run(args, on_batch=lambda step, batch: seen.extend(i for images in batch.entity_images for i in images))
    assert seen, "stage 2 met no entity image"
    pipeline_crops = {_rgb(crop) for crop in crops}
    for image in seen:  # the pipeline's own crops, substituted at load time
        assert (image.size, image.convert("RGB").tobytes()) in pipeline_crops
    assert read_latest("runs/s2").name == f"step-{STEPS:07d}"
    assert any(r["loss_attn"] > 0 for r in _metrics(Path("runs/s2")))  # the attention loss saw the SAM masks

    # 5. python -m unimo_g_apps.generate --checkpoint runs/s2 --prompt "a <img>...</img> on a sofa" --out ... (a crop of the run)
    Path("cat.png").write_bytes(crops[0])
    assert generate.main(["--checkpoint", "runs/s2", "--prompt", "a <img>cat.png</img> on a sofa",
                          "--out", "cat_on_sofa.png", "--steps", "2", "--guidance", "5.0", "--device", "cpu"]) == 0
    with Image.open("cat_on_sofa.png") as image:
        assert image.format == "PNG" and image.mode == "RGB"
        trained_at = train.load_train_config(args).data.resolution
        assert image.size == (trained_at, trained_at)
