"""Training samples from pre-computed feature runs (`unimo_g.features`, feature schema v1): stage 1
without the VAE or the encoder.

`trainers.data.ShardStream` streams feature files with the same order, sharding and resume as
prompt shards; this module holds what is specific to them: the footer check, one sample per row,
batching, and the run's unconditional encoding (condition dropout).

Rows are read as `unimo_g.feature_rows.FeatureRow`s (bytes as stored); each becomes a
`FeatureSample` and the loader collates them into `FeatureBatch`es, the type `trainers.step`
dispatches on.
"""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass
from typing import Optional, Sequence, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from unimo_g.feature_rows import FEATURE_ROW_COLUMNS, FeatureRow, decode_features, feature_rows
from unimo_g.features import (
    FEATURES_DIR,
    UNCONDITIONAL_DIR,
    UNCONDITIONAL_ID,
    FeatureFormatError,
    FeatureLayout,
    FeatureSpec,
    read_feature_metadata,
)

FEATURE_COLUMNS = list(FEATURE_ROW_COLUMNS)
STAGE2_REFUSED = "feature shards hold stage-1 conditions; train stage 2 from prompt shards"
BatchT = TypeVar("BatchT")


@dataclass(frozen=True)
class FeatureSample:
    """One training sample of a feature row, float32: `latent_mean`, `latent_std` (C, h, w), the VAE
    posterior in scaled latent units; `hidden` (T, D), the caption's encoder states, T >= 1 real tokens."""

    id: str
    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    hidden: torch.Tensor


@dataclass(frozen=True)
class FeatureBatch:
    """`FeatureSample`s collated (`collate_features`): `latent_mean`, `latent_std` (B, C, h, w);
    `hidden` (B, T, D) zero-padded at the end to the batch's longest, `hidden_mask` (B, T) bool True
    at real tokens (as the encoder pads)."""

    ids: list[str]
    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    hidden: torch.Tensor
    hidden_mask: torch.Tensor

    def pin_memory(self) -> FeatureBatch:
        return pin_tensors(self)


def pin_tensors(batch: BatchT) -> BatchT:
    """`batch` (a dataclass) with its tensor fields in pinned memory: what `pin_memory=True` of a
    DataLoader calls through the batch's `pin_memory` method."""
    pinned = {
        field.name: value.pin_memory()
        for field in dataclasses.fields(batch)
        if isinstance(value := getattr(batch, field.name), torch.Tensor)
    }
    return dataclasses.replace(batch, **pinned)


def build_feature_sample(row: FeatureRow, spec: FeatureSpec, layout: FeatureLayout) -> FeatureSample:
    """One training sample from a feature row; ValueError when its bytes do not fit the layout,
    when it holds no latents (the unconditional row) or no token."""
    decoded = decode_features(row, spec, layout)
    if decoded.latent_mean is None or decoded.latent_std is None:
        raise ValueError("the row holds no latents (an unconditional row among the features?)")
    if decoded.hidden.shape[0] < 1:
        raise ValueError("the row holds no hidden state (hidden_length 0)")
    return FeatureSample(id=decoded.id, latent_mean=decoded.latent_mean, latent_std=decoded.latent_std,
                         hidden=decoded.hidden)


def collate_features(samples: Sequence[FeatureSample]) -> FeatureBatch:
    """A `FeatureBatch` of `samples`, hidden states padded as the encoder pads."""
    longest = max(s.hidden.shape[0] for s in samples)
    width = samples[0].hidden.shape[1]
    hidden = torch.zeros(len(samples), longest, width)  # (B, T, D)
    mask = torch.zeros(len(samples), longest, dtype=torch.bool)  # (B, T)
    for b, sample in enumerate(samples):
        length = sample.hidden.shape[0]
        hidden[b, :length] = sample.hidden
        mask[b, :length] = True
    return FeatureBatch(
        ids=[s.id for s in samples],
        latent_mean=torch.stack([s.latent_mean for s in samples]),  # (B, C, h, w)
        latent_std=torch.stack([s.latent_std for s in samples]),
        hidden=hidden,
        hidden_mask=mask,
    )


def feature_run_dir(files: Sequence[str]) -> str:
    """The feature run folder of `files` (local paths or fsspec URLs), all in its `features/`
    folder; ValueError otherwise (the unconditional row lies beside them, in `unconditional/`)."""
    folders = {posixpath.dirname(file.rstrip("/")) for file in files}
    if len(folders) != 1 or posixpath.basename(next(iter(folders))) != FEATURES_DIR:
        shown = ", ".join(sorted(folders)[:2])
        raise ValueError(f"feature files must all lie in one feature run's {FEATURES_DIR}/ folder, not in {shown}")
    return posixpath.dirname(next(iter(folders)))


def read_unconditional(
    run_dir: str, expected: Optional[tuple[FeatureSpec, FeatureLayout]] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The empty prompt's encoding of a feature run: `hidden (1, T_u, D)` float32 and `mask (1, T_u)`
    bool (all True), from the one row of `run_dir/unconditional/*.parquet`.

    `expected`: the (spec, layout) of the run's features, which the file must carry too. Raises
    FileNotFoundError when there is no such file, ValueError (`FeatureFormatError`) when its
    metadata differs, or when it holds not exactly one row with id `UNCONDITIONAL_ID`.
    """
    fs, root = fsspec.core.url_to_fs(run_dir)
    folder = posixpath.join(root, UNCONDITIONAL_DIR)
    paths = sorted(fs.glob(posixpath.join(folder, "*.parquet")))
    if not paths:
        raise FileNotFoundError(f"{run_dir}: no {UNCONDITIONAL_DIR}/*.parquet with the unconditional row")
    rows, footer = [], None
    for path in paths:
        try:
            with fs.open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                meta = read_feature_metadata(parquet.schema_arrow.metadata, path)
                rows += feature_rows(parquet.read(columns=FEATURE_COLUMNS))
        except (pa.ArrowException, OSError) as err:  # corrupt, or without the feature columns
            raise FeatureFormatError(f"{path}: cannot read the unconditional row: {err}") from err
        if expected is not None and meta != expected:
            raise FeatureFormatError(f"{path}: its feature spec or layout differs from the features'")
        footer = meta
    if len(rows) != 1 or rows[0].id != UNCONDITIONAL_ID:
        ids = [row.id for row in rows][:3]
        raise FeatureFormatError(f"{folder}: expected one row with id {UNCONDITIONAL_ID!r}, found {len(rows)} {ids}")
    try:
        hidden = decode_features(rows[0], *footer).hidden  # (T_u, D)
    except ValueError as err:
        raise FeatureFormatError(f"{folder}: the unconditional row: {err}") from None
    if hidden.shape[0] < 1:
        raise FeatureFormatError(f"{folder}: the unconditional row holds no hidden state")
    return hidden[None], torch.ones(1, hidden.shape[0], dtype=torch.bool)
