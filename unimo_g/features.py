"""Pre-computed stage-1 training features (feature schema v1): the contract between the feature job
(`features_runner.py`, Beam) and the trainer, which then needs neither the VAE nor the encoder.

A feature run's folder:

    OUTPUT/features/part-*.parquet        one row per sample (`feature_schema`)
    OUTPUT/unconditional/part-*.parquet   one row: the empty prompt's encoding (condition dropout)
    OUTPUT/rejects/part-*.parquet         one row per sample that could not be encoded (reject schema)
    OUTPUT/manifest.json                  counts (inputs = rows + rejects) and lineage

Per row, computed from a prompt shard's (id, image, caption):
- `latent_mean`, `latent_std`: the VAE posterior of the training image (`unimo_g.images.training_geometry`:
  shorter side to R, center crop) in scaled latent units (`unimo_g.models.vae.encode_moments`),
  each (C, h, w) in C order. The trainer draws `mean + std * eps` every step, as it would on the fly.
- `hidden`: the encoder's hidden states of the caption alone (the stage-1 prompt), (T, D) in C
  order, real tokens only; `hidden_length` = T.
Tensors are raw bytes (little-endian, as on every platform torch supports) of
`FeatureSpec.storage_dtype`. The footer metadata holds the feature schema version, the
`FeatureSpec` (what a trainer must match) and the layout (C, h, w, D).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np
import pyarrow as pa
import torch

from unimo_g.config_tools import ConfigError, from_dict, to_dict
from unimo_g.images.training_geometry import DEFAULT_RESOLUTION
from unimo_g.models.denoiser import DenoiserConfig
from unimo_g.models.encoder import EncoderConfig
from unimo_g.schema import LINEAGE_KEY, read_version

FEATURE_SCHEMA_VERSION = 1
FEATURE_VERSION_KEY = b"unimo_g.feature_schema_version"
FEATURE_SPEC_KEY = b"unimo_g.feature_spec"
FEATURE_LAYOUT_KEY = b"unimo_g.feature_layout"

FEATURES_DIR = "features"
UNCONDITIONAL_DIR = "unconditional"
UNCONDITIONAL_ID = "<unconditional>"  # id of the one row of OUTPUT/unconditional

STORAGE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
_SAME_WIDTH_INT = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32}

FEATURE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("latent_mean", pa.binary()),  # null only in the unconditional row
    pa.field("latent_std", pa.binary()),
    pa.field("hidden", pa.binary(), nullable=False),
    pa.field("hidden_length", pa.int32(), nullable=False),
]


class FeatureFormatError(ValueError):
    """A feature file this code cannot read (unknown version, missing or inconsistent metadata)."""


@dataclass(frozen=True)
class FeatureSpec:
    """What the features were computed with; a trainer refuses features whose spec differs from its
    own config (`mismatches`), except `storage_dtype`.

    encoder: the frozen encoder (the training config's `encoder`).
    vae, vae_subfolder, vae_seed: the training config's `denoiser.vae`, `denoiser.vae_subfolder`
      and `denoiser.seed` (the seed of a random-weight VAE builder).
    resolution: side R of the training images (`data.resolution`).
    storage_dtype: "fp16" | "bf16" | "fp32", the precision of the stored tensors.
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    vae: str = "sd15"
    vae_subfolder: Optional[str] = None
    vae_seed: int = 0
    resolution: int = DEFAULT_RESOLUTION
    storage_dtype: str = "fp16"

    def __post_init__(self):
        if self.resolution < 8:
            raise ValueError(f"resolution must be >= 8, got {self.resolution!r}")
        if self.storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage_dtype must be one of {list(STORAGE_DTYPES)}, got {self.storage_dtype!r}")

    def denoiser_config(self) -> DenoiserConfig:
        """A `DenoiserConfig` naming this spec's VAE (for `build_vae`)."""
        return DenoiserConfig(vae=self.vae, vae_subfolder=self.vae_subfolder, seed=self.vae_seed)

    def mismatches(self, other: "FeatureSpec") -> list[str]:
        """Dotted names of the settings that differ from `other`'s (storage precision aside)."""
        mine, theirs = to_dict(self), to_dict(other)
        out = [f"encoder.{k}" for k in mine["encoder"] if mine["encoder"][k] != theirs["encoder"][k]]
        out += [k for k in mine if k not in ("encoder", "storage_dtype") and mine[k] != theirs[k]]
        return out


def spec_from_train_config(raw: Mapping, storage_dtype: str = "fp16") -> FeatureSpec:
    """The `FeatureSpec` of a training config given as a mapping (a training YAML with its overrides
    merged); only its `encoder`, `denoiser` and `data.resolution` are read. Raises `ConfigError`."""
    encoder = from_dict(EncoderConfig, raw.get("encoder") or {}, "encoder.")
    denoiser = from_dict(DenoiserConfig, raw.get("denoiser") or {}, "denoiser.")
    data = raw.get("data") or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"data: expected a mapping, got {data!r}")
    try:
        return FeatureSpec(
            encoder=encoder,
            vae=denoiser.vae,
            vae_subfolder=denoiser.vae_subfolder,
            vae_seed=denoiser.seed,
            resolution=int(data.get("resolution", DEFAULT_RESOLUTION)),
            storage_dtype=storage_dtype,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"features: {err}") from None


@dataclass(frozen=True)
class FeatureLayout:
    """Shapes shared by every row of a feature run: latents (C, h, w), hidden width D."""

    latent_shape: tuple[int, int, int]
    hidden_size: int


def feature_schema(spec: FeatureSpec, layout: FeatureLayout, lineage: Optional[Mapping] = None) -> pa.Schema:
    """The Arrow schema of feature files, with version, spec, layout (and lineage) in its metadata."""
    metadata = {
        FEATURE_VERSION_KEY: str(FEATURE_SCHEMA_VERSION).encode(),
        FEATURE_SPEC_KEY: json.dumps(to_dict(spec), sort_keys=True).encode(),
        FEATURE_LAYOUT_KEY: json.dumps(
            {"latent_shape": list(layout.latent_shape), "hidden_size": layout.hidden_size}
        ).encode(),
    }
    if lineage is not None:
        metadata[LINEAGE_KEY] = json.dumps(lineage, sort_keys=True).encode()
    return pa.schema(FEATURE_FIELDS, metadata=metadata)


def is_feature_file(metadata: Optional[Mapping[bytes, bytes]]) -> bool:
    """Whether Parquet key-value metadata is a feature file's (rather than a sample shard's)."""
    return FEATURE_VERSION_KEY in (metadata or {})


def read_feature_metadata(metadata: Optional[Mapping[bytes, bytes]], where: str) -> tuple[FeatureSpec, FeatureLayout]:
    """The spec and layout of a feature file's footer metadata; raises `FeatureFormatError` naming `where`."""
    metadata = metadata or {}
    read_version(metadata, FEATURE_VERSION_KEY, FEATURE_SCHEMA_VERSION, where, FeatureFormatError,
                 "feature schema", missing="not a feature file")
    try:
        spec = from_dict(FeatureSpec, json.loads(metadata[FEATURE_SPEC_KEY]))
        layout_raw = json.loads(metadata[FEATURE_LAYOUT_KEY])
        layout = FeatureLayout(tuple(int(v) for v in layout_raw["latent_shape"]), int(layout_raw["hidden_size"]))
    except (KeyError, TypeError, ValueError) as err:  # ConfigError and JSONDecodeError are ValueErrors
        raise FeatureFormatError(f"{where}: bad feature metadata: {err}") from None
    if len(layout.latent_shape) != 3 or min(layout.latent_shape) < 1 or layout.hidden_size < 1:
        raise FeatureFormatError(f"{where}: bad feature layout {layout}")
    return spec, layout


def tensor_to_bytes(tensor: torch.Tensor, storage_dtype: str) -> bytes:
    """Raw C-order bytes of `tensor` cast to `storage_dtype` (the shape is kept elsewhere)."""
    dtype = STORAGE_DTYPES[storage_dtype]
    flat = tensor.detach().to("cpu", dtype).contiguous().view(_SAME_WIDTH_INT[dtype])  # numpy has no bfloat16
    return flat.numpy().tobytes()


def tensor_from_bytes(data: bytes, shape: tuple[int, ...], storage_dtype: str) -> torch.Tensor:
    """A float32 tensor of `shape` from `tensor_to_bytes` output; ValueError when the size does not fit."""
    dtype = STORAGE_DTYPES[storage_dtype]
    expected = int(np.prod(shape)) * (torch.finfo(dtype).bits // 8)
    if len(data) != expected:
        raise ValueError(f"{len(data)} bytes do not hold a {storage_dtype} tensor of shape {tuple(shape)}")
    if not expected:
        return torch.zeros(shape)
    return torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape).float()


def feature_row(
    sample_id: str,
    hidden: torch.Tensor,
    storage_dtype: str,
    latent_mean: Optional[torch.Tensor] = None,
    latent_std: Optional[torch.Tensor] = None,
) -> dict:
    """A row of `FEATURE_FIELDS`: `hidden` (T, D) of real tokens only; latents (C, h, w) or None
    (the unconditional row)."""
    if hidden.dim() != 2:
        raise ValueError(f"hidden must be (T, D), got shape {tuple(hidden.shape)}")

    def pack(tensor):
        return None if tensor is None else tensor_to_bytes(tensor, storage_dtype)

    return {
        "id": sample_id,
        "latent_mean": pack(latent_mean),
        "latent_std": pack(latent_std),
        "hidden": tensor_to_bytes(hidden, storage_dtype),
        "hidden_length": int(hidden.shape[0]),
    }


def decode_feature_row(row: Mapping, spec: FeatureSpec, layout: FeatureLayout) -> dict:
    """Tensors of a feature row: "hidden" (T, D) and, when present, "latent_mean" / "latent_std"
    (C, h, w), all float32. Raises ValueError on a row that does not fit the layout."""
    dtype = spec.storage_dtype
    hidden = tensor_from_bytes(row["hidden"], (row["hidden_length"], layout.hidden_size), dtype)  # (T, D)
    out = {"id": row["id"], "hidden": hidden}
    for name in ("latent_mean", "latent_std"):
        if row.get(name) is not None:
            out[name] = tensor_from_bytes(row[name], layout.latent_shape, dtype)
    return out
