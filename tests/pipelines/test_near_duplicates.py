"""Near-duplicates and evaluation-image exclusion: the hash, the keep rule, the bucket bound, and
real DirectRunner runs (accounting, resume, bad evaluation paths)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import beam_runner
from bench.near_duplicates import TRANSFORMS, make_set, pair_stats
from pipelines.outputs.verify import verify
from pipelines.prompts.decode import CheckedSample, decode_checked
from pipelines.prompts.near_duplicates import (
    EvaluationHashes,
    _BucketEdgesFn,
    _written_hashes,
    band_values,
    hash_bits,
    hash_value,
    mirrored_hash,
    resolve,
)
from unimo_g.images.decoding import ImageRejected, hash_distance, perceptual_hash
from unimo_g.pipeline_config import DecodeConfig, ExcludeConfig, NearDuplicateConfig, PipelineConfig

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = sorted((ROOT / "data" / "sample" / "00000").glob("*.jpg"))
TINY = str(ROOT / "configs" / "tiny.yaml")
DECODE = DecodeConfig(min_side=16)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# ---------------------------------------------------------------- the hash


def test_hash_is_bounded_like_decoding_and_survives_re_encoding():
    photo = Image.open(PHOTOS[0]).convert("RGB")
    original = perceptual_hash(PHOTOS[0].read_bytes(), DECODE)
    assert len(original) == 16 and int(original, 16) >= 0
    assert hash_distance(original, perceptual_hash(_encode(photo, "PNG"), DECODE)) <= 2
    small = photo.resize((photo.width // 2, photo.height // 2))
    assert hash_distance(original, perceptual_hash(_encode(small, "JPEG", quality=60), DECODE)) <= 2
    with pytest.raises(ImageRejected, match="too_many_pixels"):  # from the header, before any pixel
        perceptual_hash(PHOTOS[0].read_bytes(), DecodeConfig(max_pixels=1000, min_side=16))
    with pytest.raises(ImageRejected, match="not_an_image"):
        perceptual_hash(b"not an image at all", DECODE)
    with pytest.raises(ImageRejected, match="empty_file"):
        perceptual_hash(b"", DECODE)


def test_hash_sees_the_upright_image_on_white():
    photo = Image.open(PHOTOS[1]).convert("RGB")
    rotated = photo.transpose(Image.Transpose.ROTATE_90)  # stored sideways; EXIF orientation 6 turns it upright
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged = _encode(rotated, "JPEG", quality=95, exif=exif.tobytes())
    upright = perceptual_hash(_encode(photo, "JPEG", quality=95), DECODE)
    assert hash_distance(upright, perceptual_hash(tagged, DECODE)) <= 2
    assert hash_distance(upright, perceptual_hash(_encode(rotated, "JPEG", quality=95), DECODE)) > 12
    clear = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # transparent black composites to white
    assert perceptual_hash(_encode(clear, "PNG"), DECODE) == perceptual_hash(
        _encode(Image.new("RGB", (64, 64), "white"), "PNG"), DECODE)


# ---------------------------------------------------------------- keep rule and buckets


def _node(order: int, name: str, written: bool = False) -> tuple:
    return ((0, name) if written else (1, (f"{order:03d}",)), name, written)


def test_keep_rule_rejects_only_within_distance_of_a_kept_row_and_never_a_written_one():
    a, b, c, w = _node(1, "a"), _node(2, "b"), _node(3, "c"), _node(0, "w", written=True)
    # a~b (3), b~c (4), a and c further apart: connected components would drop c too
    verdicts = dict(resolve([("pair", a, b, 3), ("pair", b, c, 4)]))
    assert set(verdicts) == {"b"} and verdicts["b"].detail == "kept a, distance 3"
    assert verdicts["b"].stage == "dedupe" and verdicts["b"].reason == "near_duplicate"
    # a written row is kept whatever comes before it, and a new input near it goes
    verdicts = dict(resolve([("pair", w, a, 5), ("pair", a, b, 1)]))
    assert set(verdicts) == {"a"} and verdicts["a"].detail == "kept w, distance 5"
    # same hash as a leader: rejected naming it when kept, sharing its fate when it goes; written aliases stay
    verdicts = dict(resolve([("pair", a, b, 2), ("alias", "b2", False, "b"), ("alias", "a2", False, "a"),
                             ("alias", "a3", True, "a")]))
    assert {k: v.detail for k, v in verdicts.items()} == {
        "b": "kept a, distance 2", "b2": "kept a, distance 2", "a2": "kept a, distance 0"}


def _members(hashes: list[int]) -> list[tuple]:
    return [((1, (f"{i:05d}",)), f"id{i}", hash_value(f"{value:016x}"), False) for i, value in enumerate(hashes)]


def test_hash_values_are_signed_64_bit_ints_with_the_hashs_bits():
    for hex_hash in ("0000000000000000", "7fffffffffffffff", "8000000000000000", "bb8320376c0f3637", "ffffffffffffffff"):
        value = hash_value(hex_hash)
        assert -(1 << 63) <= value < 1 << 63  # what Beam's VarIntCoder takes
        assert int(hash_bits([value])[0]) == int(hex_hash, 16)
        assert band_values(value, 8) == band_values(int(hex_hash, 16), 8)
    assert int(np.bitwise_count(hash_bits([hash_value("ffffffffffffffff")]) ^ hash_bits([0]))[0]) == 64


def test_a_crowded_bucket_is_bounded_and_identical_hashes_cost_no_pairs():
    bucket = (0, 0)
    blank = 0x8000000000000000
    edges = list(_BucketEdgesFn(bands=8, max_distance=10, max_bucket=3).process((bucket, _members([blank] * 500))))
    assert len(edges) == 499 and all(edge[0] == "alias" and edge[3] == "id0" for edge in edges)
    # 6 distinct hashes 1 bit apart in one bucket, max_bucket 3: the last 3 meet only the first 3
    hashes = [1 << (58 + i) for i in range(6)]  # the last two >= 2**63: negative as hash values
    edges = list(_BucketEdgesFn(bands=8, max_distance=10, max_bucket=3).process((bucket, _members(hashes))))
    pairs = {(e[1][1], e[2][1]) for e in edges}
    assert len(pairs) == 3 + 3 * 3 and ("id3", "id4") not in pairs and ("id0", "id5") in pairs
    # a pair found in several bands is emitted by the first band they agree on only
    assert not list(_BucketEdgesFn(8, 10, 1000).process(((3, 0), _members([1 << 56, 1 << 57]))))


def test_near_duplicate_config_is_validated():
    for key, value in (("max_distance", 65), ("bands", 0), ("bands", 65), ("max_bucket", 0), ("enabled", "yes")):
        with pytest.raises(ValueError, match=f"near_duplicates.{key}"):
            NearDuplicateConfig(**{key: value})


def test_bands_cover_the_hash():
    value = 0xFEDCBA9876543210
    for bands in (1, 3, 8, 11):
        values = band_values(value, bands)
        widths = [64 // bands + (b < 64 % bands) for b in range(bands)]
        assert sum(widths) == 64 and sum(v << sum(widths[:b]) for b, v in enumerate(values)) == value


# ---------------------------------------------------------------- measured quality (bench/near_duplicates.py)


# copies of the first 3 bundled photos found at either default threshold (python -m bench.near_duplicates --photos 3)
MEASURED_FOUND_OF_3 = {"resize_0.5": 3, "crop_90": 1, "jpeg_q30": 3, "png": 3, "brightness_+10": 3, "text_overlay": 3,
                       "flip": 0, "rotate_5": 1, "rotate_90": 0}
# ... and as evaluation images, whose mirror image's hash is compared too (exclude.phash_distance)
MEASURED_EVAL_FOUND_OF_3 = {**MEASURED_FOUND_OF_3, "flip": 3, "rotate_5": 2}


def test_detection_quality_holds_at_the_measured_figures():
    """BENCHMARKS.md, near-duplicates: recall per transform at both default thresholds, no unrelated
    pair within either, and every pair within `max_distance` shares an LSH band."""
    images = make_set(num_photos=3)
    config = PipelineConfig()
    stats = pair_stats(images, config)
    assert stats["unrelated_pairs_within"] == {str(config.near_duplicates.max_distance): 0,
                                               str(config.exclude.phash_distance): 0}
    assert stats["smallest_unrelated_distance"] >= 20
    assert stats["of_which_share_a_band"] == stats["related_pairs_within_max_distance"]
    hashes = {image.key: perceptual_hash(image.data, config.decode) for image in images}
    for threshold in (config.near_duplicates.max_distance, config.exclude.phash_distance):
        found = {name: sum(hash_distance(hashes[f"a{p:02d}"], hashes[f"b{p:02d}-{name}"]) <= threshold
                           for p in range(3)) for name in TRANSFORMS}
        assert all(found[name] >= MEASURED_FOUND_OF_3[name] for name in TRANSFORMS), (threshold, found)
    threshold = config.exclude.phash_distance
    mirrored = {i.photo: mirrored_hash(i.data, config) for i in images if i.kind == "original"}
    found = {name: sum(min(hash_distance(hashes[f"a{p:02d}"], hashes[f"b{p:02d}-{name}"]),
                           hash_distance(mirrored[p], hashes[f"b{p:02d}-{name}"])) <= threshold for p in range(3))
             for name in TRANSFORMS}
    assert all(found[name] >= MEASURED_EVAL_FOUND_OF_3[name] for name in TRANSFORMS), found
    assert stats["mirrored_unrelated_pairs_within_phash_distance"] == 0


def test_the_mirror_images_hash_is_the_hash_of_a_flipped_copy():
    """A flip moves a DCT hash ~32 bits (the odd horizontal frequencies change sign); the hash of
    the mirrored evaluation image lies within a few bits of a flipped copy's."""
    for path in PHOTOS[:4]:
        data = path.read_bytes()
        flipped = _encode(Image.open(path).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG",
                          quality=90)
        assert hash_distance(perceptual_hash(data, DECODE), perceptual_hash(flipped, DECODE)) >= 24
        assert hash_distance(mirrored_hash(data, PipelineConfig()), perceptual_hash(flipped, DECODE)) <= 4


# ---------------------------------------------------------------- through the pipeline


def _copy(photo: Path, folder: Path, key: str, caption: str, data: bytes | None = None) -> None:
    (folder / f"{key}.jpg").write_bytes(data if data is not None else photo.read_bytes())
    (folder / f"{key}.txt").write_text(caption)


def _run(*args: str) -> int:
    return beam_runner.main([*args, "--config", TINY, "--progress-interval", "0"])


def _outputs(out: Path) -> tuple[dict, dict]:
    rows = {}
    for path in (out / "shards").glob("*.parquet"):
        table = pq.read_table(path, columns=["id", "source_key", "phash"])
        rows.update({r["source_key"]: r for r in table.to_pylist()})
    rejects = {}
    for path in (out / "rejects").glob("*.parquet"):
        rejects.update({r["source"]: r for r in pq.read_table(path, columns=["id", "source", "stage", "reason",
                                                                            "detail"]).to_pylist()})
    return rows, rejects


@pytest.fixture(scope="module")
def near_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("near")
    folder, evaluation, out = root / "in", root / "eval", root / "out"
    folder.mkdir()
    evaluation.mkdir()
    photo = Image.open(PHOTOS[0]).convert("RGB")
    _copy(PHOTOS[0], folder, "p0", "a photo")
    _copy(PHOTOS[0], folder, "p0-resized", "the same photo, smaller",
          _encode(photo.resize((photo.width // 2, photo.height // 2)), "PNG"))
    _copy(PHOTOS[0], folder, "p0-caption", "the same bytes, another caption")
    _copy(PHOTOS[0], folder, "p0-exact", "a photo")  # exact duplicate of p0: stays a `duplicate`
    _copy(PHOTOS[1], folder, "p1", "another photo")
    _copy(PHOTOS[2], folder, "p2", "a third photo")
    _copy(PHOTOS[2], folder, "p2-q30", "the third one, low quality",
          _encode(Image.open(PHOTOS[2]).convert("RGB"), "JPEG", quality=30))
    _copy(PHOTOS[2], folder, "p2-flipped", "the third one, mirrored (a common augmentation)",
          _encode(Image.open(PHOTOS[2]).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=90))
    (evaluation / "benchmark.png").write_bytes(_encode(Image.open(PHOTOS[2]).convert("RGB"), "PNG"))
    (evaluation / "prompts.txt").write_text("not an image: skipped")
    # Every hash is >= 2**63 as an unsigned int (real photos: the first bit is the DC term's), so each
    # hash that crosses a Beam boundary would overflow Beam's int coder if it travelled unsigned.
    hashes = [perceptual_hash(path.read_bytes(), DECODE) for path in [*folder.glob("*.jpg"), *evaluation.glob("*.png")]]
    assert all(int(h, 16) >= 1 << 63 for h in hashes), hashes
    assert _run("--input", str(folder), "--output", str(out), "--set", f"exclude.images={evaluation}") == 0
    return folder, evaluation, out


def test_near_duplicates_and_evaluation_images_become_rejects_before_decode(near_run):
    folder, evaluation, out = near_run
    rows, rejects = _outputs(out)
    assert sorted(rows) == ["p0", "p1"]
    kept = rows["p0"]["id"]
    assert {k: (r["stage"], r["reason"]) for k, r in rejects.items()} == {
        "p0-resized": ("dedupe", "near_duplicate"), "p0-caption": ("dedupe", "near_duplicate"),
        "p0-exact": ("dedupe", "duplicate"),
        "p2": ("exclude", "eval_overlap"), "p2-q30": ("exclude", "eval_overlap"),
        "p2-flipped": ("exclude", "eval_overlap")}
    assert rejects["p0-caption"]["detail"] == f"kept {kept}, distance 0"
    assert rejects["p0-resized"]["detail"].startswith(f"kept {kept}, distance ")
    assert rejects["p2"]["detail"].startswith(f"evaluation image {evaluation}/benchmark, distance ")
    assert rejects["p2-flipped"]["detail"].startswith(f"evaluation image {evaluation}/benchmark (mirrored), distance ")
    # the row's hash is the one the keys compared (the same function at decode)
    assert rows["p0"]["phash"] == perceptual_hash((folder / "p0.jpg").read_bytes(), DecodeConfig())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["inputs"] == 8 == manifest["counts"]["rows"] + manifest["counts"]["rejects"]
    assert manifest["counts"]["rejects_by_reason"]["dedupe"] == {"duplicate": 1, "near_duplicate": 2}
    assert manifest["counts"]["rejects_by_reason"]["exclude"] == {"eval_overlap": 3}
    # how many evaluation images were hashed, from which paths (prompts.txt skipped, not an error)
    assert manifest["runs"][manifest["run_id"]]["evaluation_images"] == {
        "hashed": 1, "hashes": 2,
        "paths": {str(evaluation): {"hashed": 1, "skipped_non_images": 1, "unreadable": 0, "unusable": 0}}}
    assert verify(str(out))[0] == 0


@pytest.mark.parametrize("runner", [
    ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"],
], ids=["multi_processing", "portable"])
def test_other_runners_find_the_same_near_duplicates_and_evaluation_images(near_run, tmp_path, runner):
    folder, evaluation, out = near_run
    other = tmp_path / "out"
    assert _run("--input", str(folder), "--output", str(other), "--set", f"exclude.images={evaluation}", *runner) == 0
    assert _outputs(other) == _outputs(out)


def test_single_read_and_none_find_the_same_near_duplicates(near_run, tmp_path):
    folder, evaluation, out = near_run
    expected = _outputs(out)
    for method in ("single_read", "none"):
        other = tmp_path / method
        assert _run("--input", str(folder), "--output", str(other), "--set", f"exclude.images={evaluation}",
                    "--set", f"dedupe.method={method}") == 0
        rows, rejects = _outputs(other)
        wanted = {k: r["reason"] for k, r in expected[1].items()}
        if method == "none":  # no exact de-duplication: inputs of one id (one hash node) are all kept
            del wanted["p0-exact"]
        assert sorted(rows) == sorted([*expected[0], *(["p0-exact"] if method == "none" else [])])
        assert {k: r["reason"] for k, r in rejects.items()} == wanted


def test_resume_compares_new_inputs_with_written_rows(tmp_path, caplog):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    _copy(PHOTOS[0], folder, "p0", "a photo")
    _copy(PHOTOS[1], folder, "p1", "another photo")
    assert _run("--input", str(folder), "--output", str(out)) == 0
    written, _ = _outputs(out)
    photo = Image.open(PHOTOS[0]).convert("RGB")
    # new inputs: a copy of a written row (rejected), and "a0" ranks before p0 but p0 is written: p0 stays
    _copy(PHOTOS[0], folder, "a0", "the same photo, re-encoded", _encode(photo, "JPEG", quality=40))
    _copy(PHOTOS[3], folder, "p3", "a new photo")
    assert _run("--input", str(folder), "--output", str(out), "--resume") == 0
    rows, rejects = _outputs(out)
    assert sorted(rows) == ["p0", "p1", "p3"]
    assert rejects["a0"]["reason"] == "near_duplicate" and rejects["a0"]["detail"].startswith(
        f"kept {written['p0']['id']}, distance ")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["inputs"] == 4 == manifest["counts"]["rows"] + manifest["counts"]["rejects"]


def test_shards_without_phash_are_skipped_with_a_warning(tmp_path, caplog):
    old = tmp_path / "old.parquet"
    pq.write_table(pa.table({"id": ["x"], "source_key": ["k"]}), old)
    new = tmp_path / "new.parquet"
    pq.write_table(pa.table({"id": ["y", "z"], "phash": ["00000000000000ff", None]}), new)
    with caplog.at_level(logging.WARNING):
        assert list(_written_hashes(str(old))) == []
    assert "no phash column" in caplog.text
    [(sample_id, node)] = list(_written_hashes(str(new)))
    assert sample_id == "y" and node.phash == 0xFF and node.written


def test_an_unreadable_evaluation_path_is_a_usage_error(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _copy(PHOTOS[0], folder, "p0", "a photo")
    code = _run("--input", str(folder), "--output", str(tmp_path / "out"), "--set",
                f"exclude.images={tmp_path / 'missing'}")
    assert code == 2
    err = capsys.readouterr().err
    assert "exclude.images" in err and "missing" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("fmt, mode", [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("WEBP", "RGB"),
                                       ("GIF", "P"), ("BMP", "RGB"), ("JPEG", "RGB"), ("JPEG", "CMYK")])
def test_the_rows_hash_is_the_key_paths_hash_in_every_format(fmt, mode):
    # photo 3: its JPEG draft decode moves 2 bits of the hash, so the JPEG rows must hash the bytes again
    photo = Image.open(PHOTOS[3]).convert(mode)
    buffer = io.BytesIO()
    photo.save(buffer, fmt)
    data = buffer.getvalue()
    decoded = decode_checked(CheckedSample(id="i", source_key="k", url=None, image=data, caption="c"), DECODE)
    assert decoded.phash == perceptual_hash(data, DECODE)


def test_evaluation_hashes_count_what_was_hashed_and_skip_files_without_an_image(tmp_path, caplog):
    """Each evaluation image gives two hashes (itself, its mirror image); a folder's prompt lists
    and notes are skipped without a warning; a file that does not decode is counted and named."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    first, second = tmp_path / "dreambench", tmp_path / "multibench"
    for folder, photos in ((first, PHOTOS[:2]), (second, PHOTOS[2:3])):
        folder.mkdir()
        for photo in photos:
            (folder / photo.name).write_bytes(photo.read_bytes())
    (first / "prompts_and_classes.txt").write_text("subject_name,class")
    (second / "prompt_templates.txt").write_text("2 subjects:")
    (second / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    config = PipelineConfig(exclude=ExcludeConfig(images=(str(first), str(second))))
    transform = EvaluationHashes(config)
    expected = []
    for folder, photos in ((first, PHOTOS[:2]), (second, PHOTOS[2:3])):
        for photo in photos:
            data = photo.read_bytes()
            expected += [(f"{folder}/{photo.stem}", hash_value(perceptual_hash(data, config.decode))),
                         (f"{folder}/{photo.stem} (mirrored)", hash_value(mirrored_hash(data, config)))]
    caplog.set_level(logging.INFO)
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        hashes = pipeline | transform
        assert_that(hashes, equal_to(expected), label="Hashes")
        assert_that(transform.summary, equal_to([{
            "hashed": 3, "hashes": 6, "paths": {
                str(first): {"hashed": 2, "skipped_non_images": 1, "unreadable": 0, "unusable": 0},
                str(second): {"hashed": 1, "skipped_non_images": 1, "unreadable": 0, "unusable": 1}}}]),
            label="Summary")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any("could not be read" in w for w in warnings), warnings
    assert any("broken is not usable" in w for w in warnings)
    assert any(f"2 evaluation images hashed (with their mirror images) from {first}" in r.getMessage()
               for r in caplog.records)


def test_the_bundled_photos_excluded_as_their_own_evaluation_set(tmp_path, capsys):
    """`unimo-g build --input data/sample ... --set exclude.images=data/sample`: real photos, every hash
    >= 2**63, read as img2dataset output on both sides (captions, metadata and stats files beside them)."""
    sample = ROOT / "data" / "sample"
    out = tmp_path / "out"
    assert _run("--input", str(sample), "--output", str(out), "--set", f"exclude.images={sample}") == 0
    rows, rejects = _outputs(out)
    assert rows == {} and len(rejects) == 10
    assert {(r["stage"], r["reason"]) for r in rejects.values()} == {("exclude", "eval_overlap")}
    assert all(r["detail"] == f"evaluation image {sample}/{key}, distance 0" for key, r in rejects.items())
    log = capsys.readouterr().err
    assert "every input became a reject" in log and "(top reasons: exclude/eval_overlap 10)" in log
