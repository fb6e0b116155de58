"""MultiBench read from a miniature folder in the authors' published layout (Weili-NLP/UNIMO-G,
`Multibench/`: `prompt_templates.txt` and `<category>/<name>.<ext>` photos in JPEG, RGBA PNG, WebP
and MPO), and evaluated end to end with tiny models."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.unimo_g_apps.evaluation.evaluation_helpers import TINY, photo_pixels, write_photo, write_tiny_model
from unimo_g.inference import load_entity_image
from unimo_g_apps.evaluation import evaluate
from unimo_g_apps.evaluation.benchmarks import BenchmarkError, detect_layout, read_benchmark
from unimo_g_apps.evaluation.multibench import derived_noun, format_template, read_multibench, shipped_nouns

# The published file, byte for byte (no newline at its end)
TEMPLATES = """Multimodal Prompts Templates

2 subjects:
a {living object} wearing {wearing object}
a {living object} is playing with {toy object}
a {living object} is eating {food object}

3 subjects:
a {living object} wearing {wearing object} is playing with {toy object}
a {living object} wearing {wearing object} is eating {food object}"""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rgba_cap(path: Path) -> None:
    """A cap on a transparent background, as the published PNGs are: the RGB under alpha 0 is black."""
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[5:25, 10:30] = (200, 20, 20, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)


def _mpo(path: Path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    first, second = Image.fromarray(photo_pixels(colour)), Image.fromarray(photo_pixels((0, 0, 0)))
    first.save(path, format="MPO", save_all=True, append_images=[second])


@pytest.fixture(scope="module")
def multibench(tmp_path_factory) -> Path:
    """A clone of the authors' repository: Multibench/ under its root, two photos per category."""
    root = tmp_path_factory.mktemp("UNIMO-G")
    bench = root / "Multibench"
    bench.mkdir()
    (bench / "prompt_templates.txt").write_text(TEMPLATES)
    write_photo(bench / "living" / "dog.jpg", (120, 90, 40), format="JPEG")
    write_photo(bench / "living" / "einstein.png", (90, 90, 90))
    _rgba_cap(bench / "wearing" / "cap2.png")
    write_photo(bench / "wearing" / "suit3.webp", (20, 20, 60), format="WEBP")
    _mpo(bench / "toy" / "bear_plushie.jpg", (150, 110, 70))
    write_photo(bench / "toy" / "Basketball.jpeg", (230, 120, 20), format="JPEG")
    write_photo(bench / "food" / "hanberger.jpeg", (160, 100, 50), format="JPEG")
    write_photo(bench / "food" / "ice_cream2.jpeg", (240, 230, 200), format="JPEG")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("run"))


def test_the_published_layout_is_read_as_is(multibench):
    assert detect_layout(multibench) == "multibench" == detect_layout(multibench / "Multibench")
    cases = read_benchmark(multibench)
    # every combination: 3 two-slot templates x 2 x 2 + 2 three-slot templates x 2 x 2 x 2
    assert len(cases) == 3 * 2 * 2 + 2 * 2 * 2 * 2 == 28 and len({c.key for c in cases}) == 28
    assert [c.key for c in cases[:2]] == ["t0-living.dog+wearing.cap2", "t0-living.dog+wearing.suit3"]
    assert read_benchmark(multibench) == cases  # a stable order
    first = cases[0]
    photo = multibench / "Multibench" / "living" / "dog.jpg"
    cap = multibench / "Multibench" / "wearing" / "cap2.png"
    assert first.prompt() == f"a <img>{photo}</img> wearing <img>{cap}</img>"
    assert first.prompt(compose="append") == f"a dog <img>{photo}</img> wearing cap <img>{cap}</img>"
    assert first.text() == "a dog wearing cap" and first.subject == "living/dog"
    assert first.template_name == "a {living object} wearing {wearing object}"
    last = cases[-1]
    assert last.text() == "a man wearing suit is eating ice cream" and len(last.entities) == 3
    nouns = {e.name: e.class_name for c in cases for e in c.entities}
    assert nouns == {"living/dog": "dog", "living/einstein": "man", "wearing/cap2": "cap", "wearing/suit3": "suit",
                     "toy/Basketball": "basketball", "toy/bear_plushie": "bear plushie",
                     "food/hanberger": "hamburger", "food/ice_cream2": "ice cream"}
    counts = {t: sum(c.template_name == t for c in cases) for t in {c.template_name for c in cases}}
    assert sorted(counts.values()) == [4, 4, 4, 8, 8]


def test_the_published_counts_and_nouns():
    """10 photos per category give the paper's 2,300 prompts; the shipped override file names the
    people and the misspelt hamburger; other nouns come from the file names."""
    assert 3 * 10 * 10 + 2 * 10 * 10 * 10 == 2300
    assert shipped_nouns() == {"bengio": "man", "einstein": "man", "hinton": "man", "musk": "man",
                               "yann-lecun": "man", "hanberger": "hamburger"}
    assert [derived_noun(s) for s in ("cap2", "backpack1", "grey_sloth_plushie", "Basketball", "suit3")] == [
        "cap", "backpack", "grey sloth plushie", "basketball", "suit"]
    assert format_template("a {living object} {x} is eating {food object}") == "a {0} {{x}} is eating {1}"


def test_photos_with_alpha_mpo_and_webp_are_read_upright_on_white(multibench):
    bench = multibench / "Multibench"
    assert Image.open(bench / "toy" / "bear_plushie.jpg").format == "MPO"
    cap = np.asarray(load_entity_image(bench / "wearing" / "cap2.png"))
    assert cap.shape == (30, 40, 3) and (cap[0, 0] == 255).all() and tuple(cap[10, 15]) == (200, 20, 20)
    bear = np.asarray(load_entity_image(bench / "toy" / "bear_plushie.jpg"))  # the first picture of the MPO
    assert abs(int(bear[0, 0, 0]) - 150) <= 8
    assert np.asarray(load_entity_image(bench / "wearing" / "suit3.webp")).shape == (30, 40, 3)


def test_a_local_nouns_file_overrides_and_errors_name_the_file(multibench, tmp_path):
    import shutil

    copy = tmp_path / "Multibench"
    shutil.copytree(multibench / "Multibench", copy)
    (copy / "class_nouns.json").write_text(json.dumps({"nouns": {"dog": "puppy"}}))
    assert read_multibench(copy)[0].text() == "a puppy wearing cap"
    (copy / "prompt_templates.txt").write_text("2 subjects:\na {living object} wearing {hat object}\n")
    with pytest.raises(BenchmarkError, match="hat object.*no folder"):
        read_multibench(copy)
    (copy / "prompt_templates.txt").write_text("3 subjects:\na {living object} wearing {wearing object}\n")
    with pytest.raises(BenchmarkError, match="2 slots under a '3 subjects' header"):
        read_multibench(copy)


def test_evaluate_multibench_end_to_end_beside_table_3(model, multibench, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["--model", str(model), "--bench", str(multibench), "--out", str(out), "--device", "cpu", *TINY,
            "--set", "images_per_prompt=1", "--set", "batch_size=8"]
    assert evaluate.main(argv) == 0
    assert "28 of 28 prompts (28 images generated now)" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    groups = results["groups"]
    assert results["layout"] == "multibench" and results["overall"]["prompts"] == 28
    assert {k: v["prompts"] for k, v in groups["entities"].items()} == {"2": 12, "3": 16}
    assert len(groups["template"]) == 5 and groups["entity"]["living/dog"]["prompts"] == 14
    assert groups["entity"]["food/hanberger"]["prompts"] == 2 + 4
    case = results["cases"]["t3-living.einstein+wearing.suit3+toy.Basketball"]
    assert case["text"] == "a man wearing suit is playing with basketball"
    assert case["dino"] == pytest.approx(sum(v["dino"] for v in case["per_entity"].values()) / 3)
    page = (out / "results.md").read_text()
    assert "| **UNIMO-G** (zero-shot), paper | | 0.436 | 0.665 | 0.298 | 0.466 |" in page
    assert "| KOSMOS-G (zero-shot), paper | | 0.419 | 0.671 | 0.283 | 0.458 |" in page
    assert "| 2-subject prompts | 12 |" in page and "| 3-subject prompts | 16 |" in page
    assert "| `a {living object} is eating {food object}` | 4 |" in page and "| food/hanberger | 6 |" in page

    # a subset reuses the images already made, and says it is one
    assert evaluate.main(argv + ["--sample", "5", "--seed", "1"]) == 0
    assert "5 of 28 prompts (0 images generated now)" in capsys.readouterr().out
    assert "**Subset**: 5 of 28 prompts (sample 5, seed 1)" in (out / "results.md").read_text()
