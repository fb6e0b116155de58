"""The paper's evaluation on a generated miniature DreamBench and a custom benchmark, with tiny
models, and the metrics on hand-made cases. (MultiBench: test_evaluate_multibench.py; subsets:
test_evaluate_subset.py; FID: test_evaluate_fid.py.)"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.unimo_g_apps.evaluation.evaluation_helpers import TINY, write_photo, write_tiny_model
from unimo_g_apps.evaluation import evaluate
from unimo_g_apps.evaluation.benchmarks import BenchmarkError, read_benchmark
from unimo_g_apps.evaluation.evaluate import MetricModelsConfig
from unimo_g_apps.evaluation.metrics import build_metric_models, mean_cosine, paired_cosine
from unimo_g_apps.evaluation.paper_results import paper_tables
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


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def dreambench(tmp_path_factory) -> Path:
    bench = tmp_path_factory.mktemp("dreambench")
    (bench / "dataset").mkdir()
    (bench / "dataset" / "prompts_and_classes.txt").write_text(PROMPTS_AND_CLASSES)
    for name, colour in (("backpack", (200, 30, 30)), ("dog", (120, 90, 40))):
        for k in range(2):
            write_photo(bench / "dataset" / name / f"0{k}.jpg", [c + 20 * k for c in colour])
    return bench


@pytest.fixture(scope="module")
def custom(tmp_path_factory) -> Path:
    bench = tmp_path_factory.mktemp("custom")
    spec = {"entities": {"cat": {"class": "cat"}, "vase": {"class": "vase"}},
            "prompts": [{"entities": ["cat", "vase"], "template": "a {0} next to a {1} on a table"},
                        {"entities": ["vase"], "template": "a {0} in the snow"}]}
    (bench / "benchmark.json").write_text(json.dumps(spec))
    write_photo(bench / "entities" / "cat" / "a.png", (90, 90, 90))
    write_photo(bench / "entities" / "vase" / "a.png", (30, 60, 200), size=(20, 50))
    return bench


def test_dreambench_layout_is_read_as_the_original_file_lists_it(dreambench):
    cases = read_benchmark(dreambench)
    assert [c.key for c in cases] == ["backpack-000", "backpack-001", "dog-000", "dog-001", "dog-002"]
    backpack, dog = cases[0], cases[2]  # objects take the object prompts, live subjects the live ones
    assert backpack.text() == "a backpack in the jungle" and dog.text() == "a dog in the snow"
    photo = dreambench / "dataset" / "dog" / "00.jpg"
    assert dog.prompt() == f"a <img>{photo}</img> in the snow"
    assert backpack.template_name == "a {0} {1} in the jungle"  # the prompt as the file writes it
    assert dog.prompt(compose="append") == f"a dog <img>{photo}</img> in the snow"
    with pytest.raises(BenchmarkError, match="prompt_templates.txt .MultiBench.*prompts_and_classes.txt"):
        read_benchmark(dreambench / "dataset" / "dog")


def test_evaluate_dreambench_end_to_end_and_resume(model, dreambench, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["--model", str(model), "--bench", str(dreambench), "--out", str(out), "--device", "cpu", *TINY]
    assert evaluate.main(argv) == 0
    assert "(10 images generated now)" in capsys.readouterr().out
    images = sorted(out.glob("images/*/*.png"))
    assert len(images) == 10  # 5 prompts x 2 images
    results = json.loads((out / "results.json").read_text())
    subjects = results["groups"]["subject"]
    assert set(subjects) == {"backpack", "dog"} and results["overall"]["prompts"] == 5
    assert subjects["dog"]["prompts"] == 3 and results["weights"] == "raw"
    for row in (*subjects.values(), results["overall"]):
        assert all(-1.0 <= row[m] <= 1.0 for m in ("dino", "clip_i", "clip_t"))
    expected = (2 * subjects["backpack"]["dino"] + 3 * subjects["dog"]["dino"]) / 5
    assert results["overall"]["dino"] == pytest.approx(expected)
    # the paper's Table 2 beside ours, from the shipped data
    assert results["paper"] == paper_tables()["dreambench"].to_dict()
    assert results["selection"] == {"cases": 5, "of": 5, "subjects": None, "prompts_per_subject": None,
                                    "sample": None, "seed": None, "limit": None}
    table = (out / "results.md").read_text()
    assert "| dog | 3 |" in table and "| **this run** | 5 |" in table and "n/a" not in table
    assert "| **UNIMO-G** (zero-shot), paper | | 0.668 | 0.841 | 0.329 | 0.613 |" in table
    assert "| KOSMOS-G (zero-shot), paper | | 0.694 | 0.847 | 0.287 | 0.609 |" in table
    assert "| DreamBooth (fine-tuning), paper | | 0.668 | 0.803 | 0.305 | 0.592 |" in table
    assert "Weili-NLP/UNIMO-G" in table and "Subset" not in table

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


def test_evaluate_a_custom_benchmark(model, custom, tmp_path, capsys):
    """benchmark.json: entities and prompts of one's own; no paper values to compare with."""
    out = tmp_path / "eval"
    argv = ["--model", str(model), "--bench", str(custom), "--out", str(out), "--device", "cpu", *TINY]
    assert evaluate.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["layout"] == "custom" and set(results["groups"]["subject"]) == {"cat+vase", "vase"}
    assert results["paper"] is None and set(results["groups"]["entities"]) == {"1", "2"}
    assert set(results["groups"]["entity"]) == {"cat", "vase"} and results["groups"]["entity"]["vase"]["prompts"] == 2
    page = (out / "results.md").read_text()
    assert "## By number of entities" in page and ", paper |" not in page
    assert evaluate.main(["--model", str(model), "--bench", str(tmp_path), "--out", str(out)]) == 2
    assert "benchmark.json (custom benchmark)" in capsys.readouterr().err


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
    assert all(row["dino"] == pytest.approx(1.0, abs=1e-4) for row in scores.values())
    assert all(row["clip_i"] == pytest.approx(1.0, abs=1e-4) for row in scores.values())


def test_the_papers_tables_ship_as_data():
    """The values of the paper's Tables 1-3 (the authors' figures) and their source."""
    tables = paper_tables()
    values = {bench: {(row.method, row.group): row.values for row in table.rows} for bench, table in tables.items()}
    assert values["dreambench"][("UNIMO-G", "zero-shot")] == {"dino": 0.668, "clip_i": 0.841, "clip_t": 0.329}
    assert values["dreambench"][("UNIMO-G w/o instruction tuning", "zero-shot")] == {
        "dino": 0.371, "clip_i": 0.717, "clip_t": 0.306}
    assert values["dreambench"][("BLIP-Diffusion", "fine-tuning")] == {"dino": 0.670, "clip_i": 0.805, "clip_t": 0.302}
    assert values["dreambench"][("Textual Inversion", "fine-tuning")]["clip_t"] == 0.255
    assert values["multibench"][("UNIMO-G", "zero-shot")] == {"dino": 0.436, "clip_i": 0.665, "clip_t": 0.298}
    assert values["multibench"][("UNIMO-G w/o visual enhancement", "zero-shot")]["clip_t"] == 0.276
    assert values["coco"][("UNIMO-G", "VL2I")] == {"fid": 8.36} and values["coco"][("Imagen", "T2I")] == {"fid": 7.27}
    assert len(tables["dreambench"].rows) == 9 and len(tables["multibench"].rows) == 5 and len(tables["coco"].rows) == 9
    assert all(t.reference.method == "UNIMO-G" and "Weili-NLP/UNIMO-G" in t.source for t in tables.values())


def test_sampling_precision_is_a_setting_of_the_images(model, custom, tmp_path, capsys):
    """bf16 autocast (the CUDA default) runs on the CPU too; fp16 needs CUDA; images made in one
    precision are not mixed with another's."""
    out = tmp_path / "eval"
    argv = ["--model", str(model), "--bench", str(custom), "--out", str(out), "--device", "cpu", *TINY,
            "--set", "images_per_prompt=1"]
    assert evaluate.main(argv + ["--set", "precision=bf16"]) == 0
    assert json.loads((out / "evaluation.json").read_text())["precision"] == "bf16"
    assert "bf16 sampling" in (out / "results.md").read_text()
    assert evaluate.main(argv) == 2  # auto on the CPU is fp32
    assert "other settings (precision)" in capsys.readouterr().err
    assert evaluate.main(argv + ["--set", "precision=fp16"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
