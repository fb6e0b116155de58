"""Regenerate the bundled sample `data/sample/` with img2dataset itself.

The sample is ten real, permissively licensed photos (data/README.md lists each licence and source):
eight that scikit-image ships in `skimage/data/` and the two sample images scikit-learn ships in
`sklearn/datasets/images/`. This script "downloads" those files through img2dataset 1.47 from
`file://` URLs, so `data/sample/` is genuine img2dataset `files` output:

    data/sample/00000/<key>.jpg   re-encoded image (JPEG quality 85, long side <= 512 px)
    data/sample/00000/<key>.txt   caption
    data/sample/00000/<key>.json  img2dataset's per-sample metadata (+ licence, source, credit)
    data/sample/00000.parquet     the same metadata, one row per input
    data/sample/00000_stats.json  img2dataset's shard statistics

img2dataset records the URL it fetched, which is an absolute path of this machine. After the run,
every `url` field (in the .json files and the .parquet) is rewritten to `sample://<file name>` so
that no local path is bundled; nothing else img2dataset wrote is changed.

Needs (for regeneration only; neither is a dependency of the project):
    pip install scikit-image img2dataset
and scikit-learn's two images: either scikit-learn installed, or `--sklearn-images DIR` pointing at
a folder holding `china.jpg` and `flower.jpg` (e.g. unzipped from a scikit-learn wheel:
`pip download --no-deps scikit-learn` then `unzip -j <wheel> 'sklearn/datasets/images/*.jpg'`).

Usage:
    WANDB_MODE=disabled NO_ALBUMENTATIONS_UPDATE=1 python data/make_sample.py [--out data/sample]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE_URL_SCHEME = "sample://"

# img2dataset settings: small JPEGs that still show every object clearly.
IMAGE_SIZE = 512  # long side cap; smaller images are kept at their size
ENCODE_QUALITY = 85


@dataclass(frozen=True)
class Photo:
    package: str  # "skimage" or "sklearn": where the file is shipped
    file: str  # file name inside the package's image folder
    caption: str
    license: str
    source: str
    credit: str


PHOTOS = (
    Photo(
        "skimage",
        "astronaut.png",
        "a smiling woman in an orange spacesuit standing between an American flag, a space shuttle model "
        "and a black helmet",
        "Public domain (NASA; 'No known copyright restrictions, released into the public domain')",
        "NASA Great Images database, https://flic.kr/p/r9qvLn",
        "NASA (portrait of astronaut Eileen Collins)",
    ),
    Photo(
        "skimage",
        "chelsea.png",
        "a close-up of a tabby cat with green eyes and long white whiskers",
        "CC0 ('No copyright restrictions. CC0 by the photographer')",
        "scikit-image sample data (skimage.data.chelsea)",
        "Stefan van der Walt",
    ),
    Photo(
        "skimage",
        "coffee.png",
        "a cup of espresso on a red saucer with a metal spoon on a wooden table",
        "CC0 ('No copyright restrictions. CC0 by the photographer')",
        "scikit-image sample data (skimage.data.coffee), courtesy of Pikolo Espresso Bar",
        "Rachel Michetti",
    ),
    Photo(
        "skimage",
        "rocket.jpg",
        "a white rocket on a launch pad between tall lattice towers under a dusk sky with bright lights",
        "Public domain (released into the public domain by SpaceX)",
        "SpaceX Photos, https://www.flickr.com/photos/spacexphotos/16511594820/",
        "SpaceX (Falcon 9 carrying DSCOVR, Cape Canaveral Launch Complex 40)",
    ),
    Photo(
        "skimage",
        "camera.png",
        "a black and white photo of a man in a dark coat looking through a camera on a tripod in a grassy "
        "field with buildings behind",
        "CC0 ('No copyright restrictions. CC0 by the photographer')",
        "scikit-image sample data (skimage.data.camera)",
        "Lav Varshney",
    ),
    Photo(
        "skimage",
        "coins.png",
        "a black and white photo of rows of ancient coins with heads and figures on a dark background",
        "No known copyright restrictions (Brooklyn Museum Collection)",
        "Brooklyn Museum Collection, https://www.brooklynmuseum.org/opencollection/archives/image/51611",
        "Brooklyn Museum (Greek coins from Pompeii)",
    ),
    Photo(
        "skimage",
        "clock_motion.png",
        "a motion-blurred round wall clock on a grey wall",
        "Public domain ('Released into the public domain by the photographer')",
        "scikit-image sample data (skimage.data.clock)",
        "Stefan van der Walt",
    ),
    Photo(
        "skimage",
        "hubble_deep_field.jpg",
        "countless small galaxies and a few bright stars on a black sky",
        "Public domain (NASA; 'may be freely used in the public domain')",
        "HubbleSite, http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/",
        "NASA (Hubble eXtreme Deep Field)",
    ),
    Photo(
        "sklearn",
        "china.jpg",
        "a tall Chinese pagoda with orange tiled roofs among green trees above a wide lake with an island",
        "CC BY 2.0, https://creativecommons.org/licenses/by/2.0/",
        "https://www.flickr.com/photos/danielbuechele/6061409035/",
        "danielbuechele (Flickr), via scikit-learn sample images",
    ),
    Photo(
        "sklearn",
        "flower.jpg",
        "an orange dahlia flower in front of dark green leaves with a second dahlia at the bottom",
        "CC BY 2.0, https://creativecommons.org/licenses/by/2.0/",
        "https://www.flickr.com/photos/vultilion/6056698931/",
        "vultilion (Flickr; scikit-learn's README credits 'danielbuechele'), via scikit-learn sample images",
    ),
)


# scikit-learn ships no registry: the sha256 of the files these captions and licences describe.
SKLEARN_SHA256 = {
    "china.jpg": "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
    "flower.jpg": "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638",
}


def _skimage_dir() -> Path:
    import skimage.data  # noqa: F401  (only to find the shipped folder)

    return Path(skimage.data.__file__).parent


def _skimage_registry() -> dict:
    """scikit-image's own sha256 of each shipped file: `{"data/<file>": hex}`."""
    from skimage.data._registry import registry

    return registry


def _sklearn_dir(override: str | None) -> Path:
    if override:
        return Path(override)
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing scipy & co.
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-learn's images are needed: install scikit-learn or pass --sklearn-images DIR")
    return Path(spec.origin).parent / "datasets" / "images"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def collect_sources(sklearn_images: str | None) -> list[tuple[Photo, Path]]:
    """The shipped file of each photo, checked against its known sha256."""
    sk_dir, sk_registry, skl_dir = _skimage_dir(), _skimage_registry(), _sklearn_dir(sklearn_images)
    sources = []
    for photo in PHOTOS:
        path = (sk_dir if photo.package == "skimage" else skl_dir) / photo.file
        if not path.is_file():
            raise SystemExit(f"missing {path}")
        expected = sk_registry[f"data/{photo.file}"] if photo.package == "skimage" else SKLEARN_SHA256[photo.file]
        if _sha256(path) != expected:
            raise SystemExit(f"{path}: sha256 differs from the known file; its caption and licence may not apply")
        sources.append((photo, path))
    return sources


def run_img2dataset(sources: list[tuple[Photo, Path]], work: Path) -> Path:
    """Run img2dataset on file:// URLs of `sources`; returns its output folder."""
    from img2dataset import download

    table = pa.table(
        {
            "url": [path.resolve().as_uri() for _, path in sources],
            "caption": [photo.caption for photo, _ in sources],
            "license": [photo.license for photo, _ in sources],
            "source": [photo.source for photo, _ in sources],
            "credit": [photo.credit for photo, _ in sources],
        }
    )
    url_list = work / "input.parquet"
    pq.write_table(table, url_list)
    out = work / "out"
    download(
        url_list=str(url_list),
        input_format="parquet",
        url_col="url",
        caption_col="caption",
        save_additional_columns=["license", "source", "credit"],
        output_folder=str(out),
        output_format="files",
        image_size=IMAGE_SIZE,
        resize_mode="keep_ratio_largest",
        resize_only_if_bigger=True,
        encode_quality=ENCODE_QUALITY,
        encode_format="jpg",
        processes_count=1,
        thread_count=2,
        number_sample_per_shard=10_000,
        timeout=30,
        enable_wandb=False,
        distributor="multiprocessing",
    )
    return out


def scrub_urls(out: Path, url_map: dict[str, str]) -> None:
    """Rewrite every `url` img2dataset recorded (per-sample .json and shard .parquet) via `url_map`."""
    for meta_path in sorted(out.glob("*/*.json")):
        meta = json.loads(meta_path.read_text())
        meta["url"] = url_map[meta["url"]]
        meta_path.write_text(json.dumps(meta, indent=4))  # img2dataset's own formatting
    for shard in sorted(out.glob("*.parquet")):
        table = pq.read_table(shard)
        urls = pa.array([url_map[u] for u in table.column("url").to_pylist()], type=pa.string())
        table = table.set_column(table.schema.get_field_index("url"), "url", urls)
        pq.write_table(table, shard)


def check_no_local_paths(out: Path, needles: list[str]) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                if needle.encode() in data:
                    raise SystemExit(f"{path} still holds the local path {needle!r}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "sample"), help="sample folder to (re)write")
    parser.add_argument("--sklearn-images", default=None, help="folder with scikit-learn's china.jpg, flower.jpg")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

    sources = collect_sources(args.sklearn_images)
    url_map = {path.resolve().as_uri(): SAMPLE_URL_SCHEME + photo.file for photo, path in sources}
    with tempfile.TemporaryDirectory() as tmp:
        out = run_img2dataset(sources, Path(tmp))
        for leftover in out.glob("_*"):  # img2dataset's scratch folders (e.g. _tmp), not part of its output
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        scrub_urls(out, url_map)
        local_dirs = sorted({str(path.resolve().parent) for _, path in sources} | {tmp})
        check_no_local_paths(out, local_dirs)
        target = Path(args.out)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(out, target)
    total = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"wrote {target} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
