"""The feature contract's read side: typed rows read column by column, decoded one at a time."""

import dataclasses

import pyarrow as pa
import pytest
import torch

from unimo_g.feature_rows import FEATURE_ROW_COLUMNS, FeatureRow, decode_features, feature_rows
from unimo_g.features import FEATURE_FIELDS, UNCONDITIONAL_ID, FeatureLayout, FeatureSpec, feature_row, feature_schema

LAYOUT = FeatureLayout((4, 2, 3), 5)
SPEC = FeatureSpec(storage_dtype="fp32")


def test_feature_row_fields_are_the_contract_columns():
    assert list(FEATURE_ROW_COLUMNS) == [field.name for field in FEATURE_FIELDS]


def test_rows_read_and_decode_to_their_tensors():
    hidden, mean, std = torch.randn(7, 5), torch.randn(4, 2, 3), torch.rand(4, 2, 3)
    written = [feature_row("abc", hidden, "fp32", mean, std), feature_row(UNCONDITIONAL_ID, hidden[:2], "fp32")]
    rows = feature_rows(pa.Table.from_pylist(written, schema=feature_schema(SPEC, LAYOUT)))
    assert rows == [FeatureRow(**row) for row in written]
    decoded = decode_features(rows[0], SPEC, LAYOUT)
    assert decoded.id == "abc"
    for got, tensor in ((decoded.hidden, hidden), (decoded.latent_mean, mean), (decoded.latent_std, std)):
        assert torch.equal(got, tensor)
    unconditional = decode_features(rows[1], SPEC, LAYOUT)
    assert unconditional.latent_mean is None and unconditional.latent_std is None
    assert torch.equal(unconditional.hidden, hidden[:2])


def test_bytes_that_do_not_fit_the_layout_raise():
    row = FeatureRow(**feature_row("x", torch.zeros(2, 5), "fp32", torch.zeros(4, 2, 3), torch.zeros(4, 2, 3)))
    with pytest.raises(ValueError, match="do not hold"):
        decode_features(row, SPEC, FeatureLayout((4, 2, 3), 6))
    with pytest.raises(ValueError, match="do not hold"):
        decode_features(dataclasses.replace(row, latent_std=row.latent_std[:-4]), SPEC, LAYOUT)
