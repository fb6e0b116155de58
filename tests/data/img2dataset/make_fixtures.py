"""Regenerate the img2dataset fixtures in this folder from a real img2dataset run (1.47).

    python tests/data/img2dataset/make_fixtures.py

Three small images are served as file:// URLs, plus one URL that does not exist (a failed
download that img2dataset records with status != success). Each output format gets its folder. The
URL list carries LAION's metadata columns (`LAION_COLUMNS`, LAION-5B / LAION-Aesthetics spellings),
kept by img2dataset's `--save_additional_columns` as a LAION download keeps them.
"""

import csv
import json
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
LAION_COLUMNS = ["LICENSE", "NSFW", "similarity", "punsafe", "pwatermark", "AESTHETIC_SCORE"]
LAION_VALUES = [  # per URL, in LAION_COLUMNS order; "" is a missing value in the CSV
    ["?", "UNLIKELY", 0.31, 0.02, 0.11, 6.8],
    ["https://creativecommons.org/licenses/by/4.0/", "UNSURE", 0.27, 0.35, 0.92, 5.9],
    ["?", "NSFW", 0.34, 0.97, 0.05, 7.1],
    ["?", "UNLIKELY", 0.29, "", "", ""],
]


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
        writer.writerow(["url", "caption", *LAION_COLUMNS])
        writer.writerows(row + tuple(values) for row, values in zip(rows, LAION_VALUES))
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
            "--save_additional_columns", json.dumps(LAION_COLUMNS),
        ],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    urls = make_sources()
    for fmt in sys.argv[1:] or ["parquet", "webdataset", "files"]:
        run(urls, fmt)
