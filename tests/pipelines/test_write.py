from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.io.ledger import Ledger
from pipelines.io.sources import ReadSamples
from pipelines.io.write import REJECTS_DIR, SHARDS_DIR, WriteParquetRows, WriteRejects, WriteRolling, prepare_output_dir
from pipelines.outputs.manifest import WriteManifest, build_lineage, collect_counts, read_manifest, write_manifest
from pipelines.prompts.decode import Check, Decode
from unimo_g.pipeline_config import DecodeConfig, PipelineConfig, WriteConfig
from unimo_g.records import Entity, Mask, Phrase, PromptPart, Reject, Sample
from unimo_g.schema import SCHEMA_VERSION, check_schema_version, lineage_of, reject_schema, shard_schema

I2D = Path(__file__).resolve().parents[1] / "data" / "img2dataset"
LINEAGE = {"config_hash": "abc", "seed": 3}
RUN = "20260101T000000Z-abcd"


def _pipeline():
    return beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))


def _sample(index: int) -> Sample:
    entity = Entity(
        phrase=0, text="a dog", start=0, end=5, box=(1.0, 2.0, 30.0, 40.0), box_score=0.5,
        mask=Mask(size=(48, 64), counts="abc"), mask_area=100, mask_score=0.75, image=b"png", image_format="PNG",
    )
    return Sample(
        id=f"id{index}", source_key=f"k{index}", url=None, sha256="0" * 64, image=b"img", image_format="JPEG",
        width=64, height=48, caption="a dog", phrases=(Phrase("a dog", 0, 5),), entities=(entity,),
        prompt=(PromptPart(entity=0),), prompt_text="<img>0</img>",
    )


def _lists(value):
    """Sample.to_row keeps tuples; Parquet gives lists back."""
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def _write(out: Path, samples, rejects, config=WriteConfig(row_group_rows=2, rows_per_file=3)):
    """The prompt pipeline's writer: files committed as they fill."""
    with _pipeline() as pipeline:
        _ = pipeline | "Samples" >> beam.Create(samples) | "Rows" >> WriteRolling(
            str(out), SHARDS_DIR, shard_schema(LINEAGE), config, RUN, "rows")
        _ = pipeline | "Rejects" >> beam.Create(rejects) | "Rej" >> WriteRolling(
            str(out), REJECTS_DIR, reject_schema(LINEAGE), config, RUN, "rejects")


def _beam_sink_write(out: Path, samples, rejects, config=WriteConfig(num_shards=1)):
    """The feature job's writers: Beam's file sink."""
    with _pipeline() as pipeline:
        _ = pipeline | "Samples" >> beam.Create(samples) | WriteParquetRows(str(out), SHARDS_DIR, shard_schema(LINEAGE),
                                                                           config)
        _ = pipeline | "Rejects" >> beam.Create(rejects) | WriteRejects(str(out), LINEAGE, config)


def test_rows_and_rejects_round_trip_with_pyarrow_alone(tmp_path):
    samples = [_sample(i) for i in range(5)]
    rejects = [Reject("r1", "k9", "decode", "truncated", "x"), Reject("r2", "k8", "read", "missing_image")]
    _write(tmp_path, samples, rejects)
    files = sorted((tmp_path / "shards").glob("*.parquet"))
    assert all(f.name.startswith(RUN + "_") for f in files)
    parquets = [pq.ParquetFile(f) for f in files]
    assert sorted(p.metadata.num_rows for p in parquets) == [2, 3]  # rows_per_file=3
    assert sorted(p.metadata.num_row_groups for p in parquets) == [1, 2]  # row_group_rows=2: 2 + 1, and 2
    for parquet in parquets:
        assert check_schema_version(parquet.schema_arrow.metadata) == SCHEMA_VERSION
        assert lineage_of(parquet.schema_arrow.metadata) == LINEAGE
    table = pq.read_table(tmp_path / "shards")
    assert table.schema.remove_metadata() == shard_schema().remove_metadata()
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == [_lists(s.to_row()) for s in samples]
    reject_rows = pq.read_table(tmp_path / "rejects").to_pylist()
    assert sorted(reject_rows, key=lambda r: r["id"]) == [r.to_row() for r in rejects]
    counts, runs = collect_counts(str(tmp_path))
    assert {k: counts[k] for k in ("rows", "rejects", "rejects_by_stage", "rejects_by_reason", "shard_files")} == {
        "rows": 5, "rejects": 2, "rejects_by_stage": {"decode": 1, "read": 1},
        "rejects_by_reason": {"decode": {"truncated": 1}, "read": {"missing_image": 1}}, "shard_files": 2}
    assert counts["accounted"] is False and counts["unexpected"] == 7  # no ledger lists these inputs
    assert runs[RUN]["rows"] == 5 and runs[RUN]["rejects"] == 2
    assert not [p for p in tmp_path.rglob("*") if not p.name.endswith(".parquet") and p.is_file()]  # no temp left


def test_rewriting_the_same_rows_replaces_the_same_files(tmp_path):
    """What a runner's retry of a bundle does: the same rows land in the same file names, no copy."""
    _write(tmp_path, [_sample(i) for i in range(4)], [])
    first = sorted(p.name for p in (tmp_path / "shards").glob("*.parquet"))
    _write(tmp_path, [_sample(i) for i in range(4)], [])
    assert sorted(p.name for p in (tmp_path / "shards").glob("*.parquet")) == first
    assert collect_counts(str(tmp_path))[0]["rows"] == 4


def test_empty_collections_write_no_rolling_file_but_beam_sink_files(tmp_path):
    _write(tmp_path / "rolling", [], [])
    assert not list((tmp_path / "rolling").rglob("*.parquet"))
    _beam_sink_write(tmp_path / "sink", [], [], WriteConfig())
    files = list((tmp_path / "sink").rglob("*.parquet"))
    assert len(files) == 2
    for path in files:
        table = pq.read_table(path)
        assert table.num_rows == 0 and check_schema_version(table.schema.metadata) == SCHEMA_VERSION


def test_rerun_replaces_outputs_and_keeps_other_files(tmp_path):
    out = tmp_path / "out"
    prepare_output_dir(str(out))
    _beam_sink_write(out, [_sample(i) for i in range(4)], [Reject("r", "k", "read", "x")], WriteConfig(num_shards=2))
    write_manifest(str(out), {"old": True})
    (out / "notes.txt").write_text("keep me")
    (out / "shards_old").mkdir()
    (out / "shards_old" / "part-0.parquet").write_bytes(b"keep")
    assert len(list((out / "shards").glob("*.parquet"))) == 2

    prepare_output_dir(str(out))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "shards_old"]
    _beam_sink_write(out, [_sample(9)], [], WriteConfig(num_shards=1))
    assert collect_counts(str(out))[0]["rows"] == 1 and collect_counts(str(out))[0]["rejects"] == 0
    assert (out / "notes.txt").read_text() == "keep me"


def test_output_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file.parquet"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        prepare_output_dir(str(path))
    assert path.read_bytes() == b"x"


def _to_sample(decoded) -> Sample:
    return Sample(id=decoded.id, source_key=decoded.source_key, url=decoded.url, sha256=decoded.sha256,
                  image=decoded.image, image_format=decoded.image_format, width=decoded.width,
                  height=decoded.height, caption=decoded.caption)


def test_read_decode_write_and_manifest_account_for_every_input(tmp_path):
    """Read with a ledger, write as the pipeline does, and let the graph's last step write the
    manifest: its counts come from the files alone (no runner metrics are read)."""
    config = PipelineConfig(decode=DecodeConfig(min_side=26))  # the 32x24 fixture image is too small
    lineage = build_lineage(config)
    out = str(tmp_path / "run")
    pipeline = _pipeline()
    checked = (
        pipeline
        | ReadSamples(str(I2D / "webdataset"), ledger=Ledger(out, RUN))
        | Check(config.phrases.max_caption_chars)
    )
    decoded = checked.samples | Decode(config.decode)
    rows = decoded.samples | beam.Map(_to_sample) | "Rows" >> WriteRolling(
        out, SHARDS_DIR, shard_schema(lineage), config.write, RUN, "rows")
    rejects = (*checked.rejects, *decoded.rejects) | beam.Flatten() | "Rej" >> WriteRolling(
        out, REJECTS_DIR, reject_schema(lineage), config.write, RUN, "rejects")
    run = {"id": RUN, "runner": "DirectRunner", "input": {"path": str(I2D / "webdataset"), "format": "auto"}}
    _ = pipeline | WriteManifest(out, lineage, run, [rows, rejects])
    pipeline.run().wait_until_finish()

    manifest = read_manifest(out)
    counts = manifest["counts"]
    assert {k: counts[k] for k in ("inputs", "rows", "rejects", "accounted", "missing", "rejects_by_stage",
                                   "rejects_by_reason")} == {
        "inputs": 4, "rows": 2, "rejects": 2, "accounted": True, "missing": 0,
        "rejects_by_stage": {"decode": 1, "read": 1},
        "rejects_by_reason": {"decode": {"too_small": 1}, "read": {"failed_to_download": 1}},
    }
    assert manifest["runs"][RUN]["inputs_read"] == 4 and manifest["runs"][RUN]["rows"] == 2
    assert manifest["run_id"] == RUN and manifest["runner"] == "DirectRunner"
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["config_hash"] == lineage["config_hash"] and manifest["config"]["decode"]["min_side"] == 26
    assert manifest["models"]["grounding"] == {"id": "IDEA-Research/grounding-dino-tiny", "revision": None,
                                               "backend": "transformers", "seed": 0}
    assert manifest["libraries"]["apache-beam"] == beam.__version__
    assert manifest["random_weights"] is False
    footer = pq.ParquetFile(next((tmp_path / "run" / "shards").glob("*.parquet"))).schema_arrow.metadata
    assert lineage_of(footer)["config_hash"] == lineage["config_hash"]
