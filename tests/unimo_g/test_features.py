"""The feature-file contract: tensor bytes, rows, footer metadata and the spec of a training config."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from unimo_g.config_tools import ConfigError, read_yaml
from unimo_g.features import (
    FEATURE_FIELDS,
    FEATURE_LAYOUT_KEY,
    FEATURE_SPEC_KEY,
    FEATURE_VERSION_KEY,
    LINEAGE_KEY,
    STORAGE_DTYPES,
    UNCONDITIONAL_ID,
    FeatureFormatError,
    FeatureLayout,
    FeatureSpec,
    decode_feature_row,
    feature_row,
    feature_schema,
    is_feature_file,
    read_feature_metadata,
    spec_from_train_config,
    tensor_from_bytes,
    tensor_to_bytes,
)
from unimo_g.models.encoder import EncoderConfig
from unimo_g.schema import shard_schema

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = FeatureLayout((4, 2, 3), 5)


@pytest.mark.parametrize("storage_dtype", sorted(STORAGE_DTYPES))
def test_tensor_bytes_round_trip_in_each_storage_dtype(storage_dtype):
    dtype = STORAGE_DTYPES[storage_dtype]
    tensor = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0)) * 10
    tensor[0, 0, :3] = torch.tensor([0.0, -1.5, 65000.0])  # 65000 is representable (rounded) in all three
    data = tensor_to_bytes(tensor, storage_dtype)
    assert len(data) == tensor.numel() * torch.finfo(dtype).bits // 8
    back = tensor_from_bytes(data, (3, 4, 5), storage_dtype)
    assert back.dtype == torch.float32 and back.shape == (3, 4, 5)
    assert torch.equal(back, tensor.to(dtype).float())  # exact: only the cast to the storage dtype rounds
    if storage_dtype == "fp32":
        assert torch.equal(back, tensor)


def test_tensor_bytes_of_the_wrong_size_or_an_empty_tensor():
    data = tensor_to_bytes(torch.ones(2, 3), "fp16")
    with pytest.raises(ValueError, match="do not hold"):
        tensor_from_bytes(data, (3, 3), "fp16")
    with pytest.raises(ValueError, match="do not hold"):
        tensor_from_bytes(data, (2, 3), "fp32")
    assert tensor_from_bytes(b"", (0, 5), "bf16").shape == (0, 5)


@pytest.mark.parametrize("storage_dtype", ["fp16", "fp32"])
def test_feature_row_round_trip(storage_dtype):
    spec = FeatureSpec(storage_dtype=storage_dtype)
    hidden, mean, std = torch.randn(7, 5), torch.randn(4, 2, 3), torch.rand(4, 2, 3)
    row = feature_row("abc", hidden, storage_dtype, mean, std)
    assert set(row) == {f.name for f in FEATURE_FIELDS} and row["hidden_length"] == 7
    pa.Table.from_pylist([row], schema=feature_schema(spec, LAYOUT))  # the row fits the schema
    out = decode_feature_row(row, spec, LAYOUT)
    assert out["id"] == "abc"
    tolerance = {"atol": 0, "rtol": 0} if storage_dtype == "fp32" else {"atol": 1e-2, "rtol": 1e-3}
    for name, tensor in (("hidden", hidden), ("latent_mean", mean), ("latent_std", std)):
        torch.testing.assert_close(out[name], tensor, **tolerance)


def test_unconditional_row_has_no_latents_and_bad_rows_raise():
    spec = FeatureSpec(storage_dtype="bf16")
    row = feature_row(UNCONDITIONAL_ID, torch.randn(1, 5), "bf16")
    assert row["latent_mean"] is None and row["latent_std"] is None
    assert set(decode_feature_row(row, spec, LAYOUT)) == {"id", "hidden"}
    with pytest.raises(ValueError, match=r"\(T, D\)"):
        feature_row("x", torch.randn(2, 3, 5), "fp16")
    with pytest.raises(ValueError, match="do not hold"):  # hidden width 5 stored, layout says 6
        decode_feature_row(row, spec, FeatureLayout((4, 2, 3), 6))
    full = feature_row("y", torch.randn(2, 5), "bf16", torch.zeros(4, 2, 3), torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match="do not hold"):
        decode_feature_row(full, spec, FeatureLayout((4, 3, 3), 5))


def test_metadata_round_trip():
    spec = FeatureSpec(encoder=EncoderConfig(layer=-1, max_length=77), vae="tiny", resolution=64, storage_dtype="fp32")
    schema = feature_schema(spec, LAYOUT, {"run": 1})
    assert is_feature_file(schema.metadata) and not is_feature_file(shard_schema().metadata)
    assert not is_feature_file(None)
    assert read_feature_metadata(schema.metadata, "f") == (spec, LAYOUT)
    assert json.loads(schema.metadata[LINEAGE_KEY]) == {"run": 1}
    assert LINEAGE_KEY not in feature_schema(spec, LAYOUT).metadata


def _edited(**changes) -> dict:
    """A valid footer with entries replaced (None: removed); keywords version, spec, layout."""
    keys = {"version": FEATURE_VERSION_KEY, "spec": FEATURE_SPEC_KEY, "layout": FEATURE_LAYOUT_KEY}
    metadata = dict(feature_schema(FeatureSpec(), LAYOUT).metadata)
    for name, value in changes.items():
        if value is None:
            metadata.pop(keys[name])
        else:
            metadata[keys[name]] = value
    return metadata


@pytest.mark.parametrize(
    "metadata, message",
    [
        (None, "not a feature file"),
        (shard_schema().metadata, "not a feature file"),
        (_edited(version=b"2"), "version 2 is not supported"),
        (_edited(version=b"0"), "version 0 is not supported"),
        (_edited(version=b"one"), "unreadable"),
        (_edited(spec=None), "bad feature metadata"),
        (_edited(spec=b"{not json"), "bad feature metadata"),
        (_edited(spec=json.dumps({"resolution": 2}).encode()), "bad feature metadata"),
        (_edited(spec=json.dumps({"bogus": 1}).encode()), "bogus"),
        (_edited(layout=json.dumps({"latent_shape": [4, 2], "hidden_size": 5}).encode()), "bad feature layout"),
        (_edited(layout=json.dumps({"latent_shape": [4, 2, 3], "hidden_size": 0}).encode()), "bad feature layout"),
        (_edited(layout=json.dumps({"hidden_size": 5}).encode()), "bad feature metadata"),
    ],
)
def test_unreadable_metadata_raises_naming_the_file(metadata, message):
    with pytest.raises(FeatureFormatError, match=message) as caught:
        read_feature_metadata(metadata, "run/features/part-0.parquet")
    assert "run/features/part-0.parquet" in str(caught.value)


def test_mismatches_name_the_settings_that_differ_except_storage():
    base = FeatureSpec(vae="tiny", resolution=64, storage_dtype="fp16")
    assert base.mismatches(FeatureSpec(vae="tiny", resolution=64, storage_dtype="fp32")) == []
    other = FeatureSpec(encoder=EncoderConfig(layer=-1), vae="sd15", resolution=32, vae_seed=3)
    assert sorted(base.mismatches(other)) == ["encoder.layer", "resolution", "vae", "vae_seed"]


def test_spec_of_the_tiny_training_config():
    spec = spec_from_train_config(read_yaml(ROOT / "configs" / "train_tiny.yaml"), "bf16")
    assert spec.encoder == EncoderConfig(family="llava", model="tiny", seed=0, layer=-2, max_length=256, dtype="fp32")
    assert (spec.vae, spec.vae_subfolder, spec.vae_seed, spec.resolution, spec.storage_dtype) == (
        "tiny", None, 0, 64, "bf16"
    )
    denoiser = spec.denoiser_config()
    assert (denoiser.vae, denoiser.vae_subfolder, denoiser.seed) == ("tiny", None, 0)
    assert spec_from_train_config({}) == FeatureSpec()  # every section defaults


@pytest.mark.parametrize(
    "raw, storage_dtype, named",
    [
        ({"data": [64]}, "fp16", "data"),
        ({"data": {"resolution": 4}}, "fp16", "resolution"),
        ({"data": {"resolution": "big"}}, "fp16", "big"),
        ({"encoder": {"family": "bogus"}}, "fp16", "bogus"),
        ({"encoder": {"nope": 1}}, "fp16", "encoder.nope"),
        ({"denoiser": {"seed": "x"}}, "fp16", "denoiser.seed"),
        ({}, "fp8", "fp8"),
    ],
)
def test_bad_training_configs_raise_config_errors(raw, storage_dtype, named):
    with pytest.raises(ConfigError, match=named):
        spec_from_train_config(raw, storage_dtype)
