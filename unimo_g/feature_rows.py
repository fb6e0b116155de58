"""Feature-file rows read back into typed records: the read side of `unimo_g.features` (feature schema v1).

`feature_rows` reads a table column by column into `FeatureRow`s, the bytes as stored; `decode_features`
turns one into tensors, so that a row whose bytes do not fit the layout fails alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import pyarrow as pa
import torch

from unimo_g.features import FeatureLayout, FeatureSpec, decode_feature_row


@dataclass(frozen=True)
class FeatureRow:
    """A row of `features.FEATURE_FIELDS` as stored: tensors as raw bytes of the spec's storage dtype;
    `hidden` holds `hidden_length` real tokens; the latents are None only in the unconditional row."""

    id: str
    latent_mean: Optional[bytes]
    latent_std: Optional[bytes]
    hidden: bytes
    hidden_length: int


@dataclass(frozen=True)
class FeatureTensors:
    """A decoded `FeatureRow`, float32: `hidden` (T, D); `latent_mean`, `latent_std` (C, h, w), the
    VAE posterior in scaled latent units, None in the unconditional row."""

    id: str
    hidden: torch.Tensor
    latent_mean: Optional[torch.Tensor]
    latent_std: Optional[torch.Tensor]


FEATURE_ROW_COLUMNS = tuple(field.name for field in dataclasses.fields(FeatureRow))


def feature_rows(table: pa.Table) -> list[FeatureRow]:
    """One `FeatureRow` per row of `table` (which holds FEATURE_ROW_COLUMNS)."""
    columns = [table.column(name).to_pylist() for name in FEATURE_ROW_COLUMNS]
    return [FeatureRow(*values) for values in zip(*columns)]


def decode_features(row: FeatureRow, spec: FeatureSpec, layout: FeatureLayout) -> FeatureTensors:
    """The tensors of `row` (decoded by `unimo_g.features.decode_feature_row`, which holds the
    layout arithmetic); ValueError when its bytes do not fit `layout`."""
    tensors = decode_feature_row(dataclasses.asdict(row), spec, layout)
    return FeatureTensors(id=row.id, hidden=tensors["hidden"], latent_mean=tensors.get("latent_mean"),
                          latent_std=tensors.get("latent_std"))
