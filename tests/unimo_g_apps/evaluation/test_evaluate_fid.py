"""Zero-shot FID on MS-COCO captions (the paper's Table 1), end to end on a miniature COCO layout
(captions_val2014.json + val2014/), with a tiny model and random-weight feature extractors: the
built-in tiny CNN, and a TorchScript module loaded from a local path as the real Inception is."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.unimo_g_apps.evaluation.evaluation_helpers import write_photo, write_tiny_model
from unimo_g.usage import UsageError
from unimo_g_apps.evaluation import evaluate
from unimo_g_apps.evaluation.coco_captions import read_captions, sample_captions
from unimo_g_apps.evaluation.coco_fid import fid_of_folders
from unimo_g_apps.evaluation.evaluate import FidConfig, parse_args
from unimo_g_apps.evaluation.fid import TinyFeatureExtractor, fid_pixels, load_feature_extractor

pytestmark = pytest.mark.usefixtures("one_torch_thread")
COLOURS = [(200, 30, 30), (30, 160, 60), (40, 60, 200)]


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("coco")
    images = [{"id": 10 + i, "file_name": f"COCO_val2014_{10 + i:012d}.jpg", "width": 40, "height": 30}
              for i in range(3)]
    annotations = [{"id": 100 + k, "image_id": 10 + k % 3, "caption": f"A photo  of thing {{{k}}}.\n"}
                   for k in range(7)]
    captions = root / "annotations" / "captions_val2014.json"
    captions.parent.mkdir()
    captions.write_text(json.dumps({"images": images, "annotations": annotations}))
    for image, colour in zip(images, COLOURS):
        write_photo(root / "val2014" / image["file_name"], colour, format="JPEG")
    return captions, root / "val2014"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("run"))


class _ScriptedExtractor(torch.nn.Module):
    """The TorchScript FID Inception's call signature, with random weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 8, stride=8)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x.float(), size=(64, 64), mode="bilinear", align_corners=False)
        return self.conv((x - 128) / 128).mean(dim=(2, 3))


def test_captions_are_read_and_sampled_with_a_seed(coco):
    captions_file, _ = coco
    captions = read_captions(captions_file)
    assert [c.caption_id for c in captions] == list(range(100, 107))
    assert captions[1].caption == "A photo of thing {1}." and captions[1].file_name == "COCO_val2014_000000000011.jpg"
    sample = sample_captions(captions, 4, seed=0)
    assert len(sample) == 4 and sample == sample_captions(captions, 4, seed=0)
    assert [c.caption_id for c in sample] == sorted(c.caption_id for c in sample)
    assert sample_captions(captions, 30_000, seed=0) == captions  # fewer captions than asked: all
    assert captions[1].case().prompt() == "A photo of thing {1}."  # braces stay text


def test_fid_images_are_centre_cropped_and_resized(tmp_path):
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:, :5] = 255  # only the left margin is white: the centre crop drops it
    square = fid_pixels(Image.fromarray(pixels), size=256)
    assert square.shape == (256, 256, 3) and square.max() == 0


def test_fid_from_a_torchscript_file_is_zero_for_one_set_and_positive_between_two(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(_ScriptedExtractor()).save(str(path))
    extractor, about = load_feature_extractor(str(path))
    assert about["published_weights"] is False and len(about["sha256"]) == 64
    folders = {}
    for name, colours in (("a", COLOURS), ("b", [(255 - r, g, 255 - b) for r, g, b in COLOURS])):
        folders[name] = []
        for k, colour in enumerate(colours):
            folders[name].append(tmp_path / name / f"{k}.png")
            write_photo(folders[name][-1], colour, size=(32, 32))
    config = FidConfig(size=64, inception=str(path), batch_size=2)
    same, _ = fid_of_folders(folders["a"], folders["a"], config, "cpu")
    other, _ = fid_of_folders(folders["b"], folders["a"], config, "cpu", extractor=TinyFeatureExtractor())
    assert abs(same) < 1e-3 and other > 1e-3
    with pytest.raises(OSError, match="no file"):
        load_feature_extractor(str(tmp_path / "missing.pt"))


def test_fid_30k_protocol_end_to_end_on_a_miniature_coco(model, coco, tmp_path, capsys):
    captions_file, images = coco
    out = tmp_path / "fid"
    argv = ["--model", str(model), "--bench", "coco", "--captions", str(captions_file), "--images", str(images),
            "--out", str(out), "--device", "cpu", "--sample", "4", "--set", "fid.inception=tiny",
            "--set", "steps=2", "--set", "batch_size=4"]
    assert evaluate.main(argv) == 0
    assert "(4 images generated now" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    fid = results["fid"]
    sampled = {c.caption_id: c for c in sample_captions(read_captions(captions_file), 4, seed=0)}
    assert sorted(results["captions"]) == sorted(f"coco-{i}" for i in sampled)
    assert fid["generated"] == 4 and fid["real"] == len({c.image_id for c in sampled.values()})
    assert fid["of"] == 7 and fid["size"] == 256 and fid["generated_size"] == 32 and 0 < fid["fid"] < 1e6
    assert "torchmetrics" in fid["implementation"] and "PIL bicubic" in fid["implementation"]
    assert sorted(p.relative_to(out / "images").as_posix() for p in out.glob("images/*/*.png")) == sorted(
        f"coco-{i}/0.png" for i in sampled)  # one image per caption
    assert Image.open(next(out.glob("images/*/0.png"))).size == (32, 32)  # the model's size
    page = (out / "results.md").read_text()
    assert "| **UNIMO-G** (VL2I), paper | 8.36 |" in page and "| SDXL (T2I), paper | 11.93 |" in page
    assert "**FID-4, not FID-30K**" in page and "| **this run** |" in page
    # resumable; every real image (fid.reference=all) is another reference set, not other images
    assert evaluate.main(argv + ["--set", "fid.reference=all"]) == 0
    assert "(0 images generated now" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["fid"]["real"] == 3


def test_coco_arguments_are_checked_before_anything_loads(coco, model, tmp_path, capsys):
    base = ["--model", "m", "--out", "o"]
    with pytest.raises(UsageError, match="--bench coco needs --captions"):
        parse_args(base + ["--bench", "coco", "--captions", "c.json"])
    with pytest.raises(UsageError, match="go with --bench coco"):
        parse_args(base + ["--bench", "b", "--images", "val2014"])
    with pytest.raises(UsageError, match="not --subjects"):
        parse_args(base + ["--bench", "coco", "--captions", "c", "--images", "i", "--subjects", "3"])
    captions_file, _ = coco
    argv = ["--model", str(model), "--bench", "coco", "--captions", str(captions_file), "--images",
            str(tmp_path), "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert evaluate.main(argv) == 2
    assert "3 of 3 COCO images missing, e.g. COCO_val2014_000000000010.jpg" in capsys.readouterr().err
