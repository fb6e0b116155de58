"""The paper's evaluation on a generated miniature DreamBench and MultiBench, with tiny models, and
the metrics on hand-made cases."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unimo_g import evaluate
from unimo_g.checkpoint_format import CHECKPOINTS_DIR, DENOISER_DIR, ModelSpec, write_latest, write_model_spec
from unimo_g.evaluation_bench import BenchmarkError, read_benchmark
from unimo_g.evaluate import MetricModelsConfig
from unimo_g.evaluation_metrics import build_metric_models, mean_cosine, paired_cosine
from unimo_g.models.denoiser import DenoiserConfig, build_denoiser, save_denoiser
from unimo_g.models.encoder import EncoderConfig

SPEC = ModelSpec(encoder=EncoderConfig(family="llava"), denoiser=DenoiserConfig(size="tiny", vae="tiny"),
                 resolution=32)
TINY = ["--set", "metrics.dino=tiny", "--set", "metrics.clip=tiny", "--set", "images_per_prompt=2",
        "--set", "steps=2", "--set", "batch_size=3"]
PROMPTS_AND_CLASSES = """Classes
subject_name,class
backpack,backpack
dog,dog

Prompts
Object Prompts
prompt_list = [
'a {0} {1} in the jungle'.format(unique_token, class_token),
'a {0} {1} on top of a wooden floor'.format(unique_token, class_token),
]

Live Subject Prompts
prompt_list = [
'a {0} {1} in the snow'.format(unique_token, class_token),
'a {0} {1} wearing a red hat'.format(unique_token, class_token),
'a {0} {1} on a beach'.format(unique_token, class_token),
]
"""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photo(path: Path, colour, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:] = colour
    pixels[5:20, 8:30] = (255 - np.array(colour)).astype(np.uint8)  # some structure
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    checkpoint = root / CHECKPOINTS_DIR / "step-0000001"
    save_denoiser(build_denoiser(SPEC.denoiser, 32), checkpoint / DENOISER_DIR, SPEC.denoiser)
    write_model_spec(checkpoint, SPEC)
    write_latest(root, checkpoint.name)
    return root


@pytest.fixture(scope="module")
def dreambench(tmp_path_factory) -> Path:
    bench = tmp_path_factory.mktemp("dreambench")
    (bench / "dataset").mkdir()
    (bench / "dataset" / "prompts_and_classes.txt").write_text(PROMPTS_AND_CLASSES)
    for name, colour in (("backpack", (200, 30, 30)), ("dog", (120, 90, 40))):
        for k in range(2):
            _photo(bench / "dataset" / name / f"0{k}.jpg", [c + 20 * k for c in colour])
    return bench


@pytest.fixture(scope="module")
def multibench(tmp_path_factory) -> Path:
    bench = tmp_path_factory.mktemp("multibench")
    spec = {"entities": {"cat": {"class": "cat"}, "vase": {"class": "vase"}},
            "prompts": [{"entities": ["cat", "vase"], "template": "a {0} next to a {1} on a table"},
                        {"entities": ["vase"], "template": "a {0} in the snow"}]}
    (bench / "multibench.json").write_text(json.dumps(spec))
    _photo(bench / "entities" / "cat" / "a.png", (90, 90, 90))
    _photo(bench / "entities" / "vase" / "a.png", (30, 60, 200), size=(20, 50))
    return bench


def test_dreambench_layout_is_read_as_the_original_file_lists_it(dreambench):
    cases = read_benchmark(dreambench)
    assert [c.key for c in cases] == ["backpack-000", "backpack-001", "dog-000", "dog-001", "dog-002"]
    backpack, dog = cases[0], cases[2]  # objects take the object prompts, live subjects the live ones
    assert backpack.text() == "a backpack in the jungle" and dog.text() == "a dog in the snow"
    photo = dreambench / "dataset" / "dog" / "00.jpg"
    assert dog.prompt() == f"a <img>{photo}</img> in the snow"
    with pytest.raises(BenchmarkError, match="neither"):
        read_benchmark(dreambench / "dataset" / "dog")


def test_evaluate_dreambench_end_to_end_and_resume(model, dreambench, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["--model", str(model), "--bench", str(dreambench), "--out", str(out), "--device", "cpu", *TINY]
    assert evaluate.main(argv) == 0
    assert "(10 images generated now)" in capsys.readouterr().out
    images = sorted(out.glob("images/*/*.png"))
    assert len(images) == 10  # 5 prompts x 2 images
    results = json.loads((out / "results.json").read_text())
    assert set(results["subjects"]) == {"backpack", "dog"} and results["overall"]["prompts"] == 5
    assert results["subjects"]["dog"]["prompts"] == 3 and results["weights"] == "raw"
    for row in (*results["subjects"].values(), results["overall"]):
        assert all(-1.0 <= row[m] <= 1.0 for m in ("dino", "clip_i", "clip_t"))
    expected = (2 * results["subjects"]["backpack"]["dino"] + 3 * results["subjects"]["dog"]["dino"]) / 5
    assert results["overall"]["dino"] == pytest.approx(expected)
    table = (out / "results.md").read_text()
    assert "| dog | 3 |" in table and "**overall**" in table and "paper (reported)" in table and "n/a" in table

    # resumable: only the missing image is made again, and seeded alone it equals its batched self
    missing = out / "images" / "dog-001" / "1.png"
    before = np.asarray(Image.open(missing)).astype(int)
    missing.unlink()
    assert evaluate.main(argv + ["--set", "batch_size=1"]) == 0
    assert "(1 images generated now)" in capsys.readouterr().out
    assert np.abs(np.asarray(Image.open(missing)).astype(int) - before).max() <= 1
    # other generation settings are refused for the same folder
    assert evaluate.main(argv + ["--set", "seed=1"]) == 2
    assert "other settings (seed)" in capsys.readouterr().err


def test_evaluate_multibench_with_paper_values(model, multibench, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["--model", str(model), "--bench", str(multibench), "--out", str(out), "--device", "cpu", *TINY,
            "--set", "paper.multibench.dino=0.5"]
    assert evaluate.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["layout"] == "multibench" and set(results["subjects"]) == {"cat+vase", "vase"}
    assert results["paper"] == {"dino": 0.5, "clip_i": None, "clip_t": None}
    assert "| 0.500 | n/a | n/a |" in (out / "results.md").read_text()
    assert evaluate.main(["--model", str(model), "--bench", str(tmp_path), "--out", str(out)]) == 2
    assert "neither" in capsys.readouterr().err


def test_metrics_on_hand_made_cases(dreambench, tmp_path):
    metric_models = build_metric_models(MetricModelsConfig(dino="tiny", clip="tiny"))
    photo = Image.open(dreambench / "dataset" / "dog" / "00.jpg")
    other = Image.open(dreambench / "dataset" / "backpack" / "00.jpg")
    same = metric_models.dino_images([photo, photo])
    assert mean_cosine(same, same) == pytest.approx(1.0, abs=1e-6)  # identical images: DINO 1.0
    clip = metric_models.clip_images([photo])
    assert mean_cosine(clip, clip) == pytest.approx(1.0, abs=1e-6)
    assert mean_cosine(metric_models.dino_images([other]), same) < 0.999
    e = torch.eye(3)
    assert mean_cosine(e[:1], e[1:]) == 0.0 and paired_cosine(e, -e) == -1.0
    assert mean_cosine(e, e) == pytest.approx(1 / 3)  # all pairs: 3 matches of 9

    # a benchmark whose "generated" images are its reference photo scores DINO and CLIP-I 1.0
    config = evaluate.EvaluationConfig(images_per_prompt=2, metrics=MetricModelsConfig(dino="tiny", clip="tiny"))
    bench = tmp_path / "bench"
    shutil.copytree(dreambench, bench)
    for k in (1,):
        for name in ("dog", "backpack"):
            (bench / "dataset" / name / f"0{k}.jpg").unlink()  # one reference photo per subject
    cases = read_benchmark(bench)
    for case in cases:
        for k in range(2):
            target = tmp_path / "images" / case.key / f"{k}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.open(case.entities[0].images[0]).save(target)
    scores = evaluate.score(cases, config, tmp_path / "images", metric_models)
    assert scores["overall"]["dino"] == pytest.approx(1.0, abs=1e-4)
    assert scores["overall"]["clip_i"] == pytest.approx(1.0, abs=1e-4)
