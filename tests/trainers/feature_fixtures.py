"""Small, real feature runs for tests: the frozen tiny VAE and encoder of a training config applied to
the rows of prompt shards, written with the feature contract (`unimo_g.features`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from trainers.config import TrainConfig
from unimo_g.checkpoint_format import build_vae
from unimo_g.config_tools import to_dict
from unimo_g.features import (
    FEATURES_DIR,
    UNCONDITIONAL_DIR,
    UNCONDITIONAL_ID,
    FeatureLayout,
    feature_row,
    feature_schema,
    spec_from_train_config,
)
from unimo_g.generation import encode_unconditional
from unimo_g.image_transforms import open_image, transform_image
from unimo_g.models.encoder import build_encoder
from unimo_g.models.vae import encode_moments, vae_scale_factor
from unimo_g.records import PromptPart


def feature_rows(shard: str, config: TrainConfig, encoder, vae, storage_dtype: str) -> list[dict]:
    """Feature rows of a prompt shard's rows, in its order: posterior of the training image and the
    encoder states of the caption alone (real tokens only)."""
    table = pq.read_table(shard, columns=["id", "image", "caption"]).to_pylist()
    pixels = torch.stack(
        [transform_image(open_image(row["image"], config.data.max_pixels), config.data.resolution) for row in table]
    )  # (N, 3, R, R)
    mean, std = encode_moments(vae, pixels)  # (N, C, h, w) each
    with torch.no_grad():
        encoded = encoder([(PromptPart(text=row["caption"]),) for row in table], [[] for _ in table])
    out = []
    for i, row in enumerate(table):
        hidden = encoded.hidden[i, encoded.attention_mask[i]]  # (T_i, D)
        out.append(feature_row(row["id"], hidden, storage_dtype, mean[i], std[i]))
    return out


def write_feature_run(
    root: Path, shards: Sequence[str], config: TrainConfig, storage_dtype: str = "fp32", row_group_size: int = 2
) -> Path:
    """`root/features/part-NNNNN.parquet` (one per shard, same rows in the same order) and
    `root/unconditional/part-00000.parquet`, from `config`'s encoder, VAE and resolution. Returns root."""
    device = torch.device("cpu")
    encoder, vae = build_encoder(config.encoder, device), build_vae(config.denoiser)
    rows = [feature_rows(shard, config, encoder, vae, storage_dtype) for shard in shards]
    side = config.data.resolution // vae_scale_factor(vae)
    layout = FeatureLayout((vae.config.latent_channels, side, side), encoder.hidden_size)
    schema = feature_schema(spec_from_train_config(to_dict(config), storage_dtype), layout, {"test": True})
    for number, file_rows in enumerate(rows):
        write_feature_file(root / FEATURES_DIR / f"part-{number:05d}.parquet", file_rows, schema, row_group_size)
    with torch.no_grad():
        uncond, _ = encode_unconditional(encoder)  # (1, T_u, D)
    unconditional = [feature_row(UNCONDITIONAL_ID, uncond[0], storage_dtype)]
    write_feature_file(root / UNCONDITIONAL_DIR / "part-00000.parquet", unconditional, schema, row_group_size)
    return root


def write_feature_file(path: Path, rows: list[dict], schema: pa.Schema, row_group_size: int = 2) -> str:
    """Write `rows` (`feature_row` dicts) as one feature file with `schema` (`feature_schema`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return str(path)
