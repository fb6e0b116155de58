"""Regenerate the img2dataset fixtures in this folder from a real img2dataset run (1.47).

    python tests/data/img2dataset/make_fixtures.py

Three small images are served as file:// URLs, plus one URL that does not exist (a failed
download that img2dataset records with status != success). Each output format gets its folder.
"""

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SOURCE = Path(tempfile.gettempdir()) / "unimo_g_img2dataset_source"
CAPTIONS = ["a red square on a table", "a green field under a blue sky", "ein kleiner Hund im Schnee"]


def make_sources() -> Path:
    shutil.rmtree(SOURCE, ignore_errors=True)
    SOURCE.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for index, caption in enumerate(CAPTIONS):
        pixels = rng.integers(0, 256, size=(24 + 8 * index, 32, 3), dtype=np.uint8)
        path = SOURCE / f"img{index}.png"
        Image.fromarray(pixels).save(path)
        rows.append((f"file://{path}", caption))
    rows.append((f"file://{SOURCE}/does_not_exist.jpg", "a photo that was never downloaded"))
    with open(SOURCE / "urls.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "caption"])
        writer.writerows(rows)
    return SOURCE / "urls.csv"


def run(url_list: Path, output_format: str) -> None:
    out = HERE / output_format
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1")
    subprocess.run(
        [
            "img2dataset", "--url_list", str(url_list), "--input_format", "csv", "--url_col", "url",
            "--caption_col", "caption", "--output_format", output_format, "--output_folder", str(out),
            "--processes_count", "1", "--thread_count", "2", "--resize_mode", "no", "--enable_wandb", "False",
        ],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    urls = make_sources()
    for fmt in sys.argv[1:] or ["parquet", "webdataset", "files"]:
        run(urls, fmt)
