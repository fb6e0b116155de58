"""Pre-computed features for the training benchmark, made in this process from the benchmarked
state's own encoder and VAE with the feature job's batch functions (`pipelines.features.handlers`,
`pipelines.features.stages`), so that a random full-size encoder no config can name gets features
too. The folder has the layout of a feature run (`unimo_g.features`) and passes the trainer's checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipelines.features.handlers import caption_states, latent_moments, unconditional_states
from pipelines.features.stages import FeatureItem, finish_item, prepare_input
from trainers.step import TrainState
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

STORAGE_DTYPE = "bf16"  # the range of fp32: random full-size encoders make large activations
ROW_GROUP_ROWS = 64


def _encoded(state: TrainState, items: list[FeatureItem]) -> tuple[list[dict], tuple[int, ...]]:
    """Feature rows of a batch of prepared items (VAE moments, then caption states), and the
    latent shape (C, h, w)."""
    moments = latent_moments(state.vae, torch.stack([item.pixel_values for item in items]))  # (B, 3, R, R)
    hidden = caption_states(state.encoder, [item.caption for item in items])
    rows = []
    for item, (mean, std), states in zip(items, moments, hidden):
        done = FeatureItem(id=item.id, caption=item.caption, latent_mean=mean, latent_std=std, hidden=states)
        row = finish_item(done, STORAGE_DTYPE)
        if isinstance(row, dict):  # a Reject (a value beyond the storage range) is left out
            rows.append(row)
    return rows, tuple(moments[0][0].shape)


def write_feature_run(state: TrainState, shard_files: Sequence[str], out_dir: Path, batch_size: int) -> Path:
    """A feature run folder under `out_dir` for every usable row of `shard_files`, computed with
    `state.encoder` and `state.vae` at the config's resolution; returns the folder."""
    config = state.config
    spec = spec_from_train_config(to_dict(config), STORAGE_DTYPE)
    rows, pending, latent_shape = [], [], None
    for file in shard_files:
        for row in pq.read_table(file, columns=["id", "image", "caption"]).to_pylist():
            item = prepare_input({**row, "source": file}, spec.resolution, config.data.max_pixels)
            if isinstance(item, FeatureItem):
                pending.append(item)
            if len(pending) == batch_size:
                encoded, latent_shape = _encoded(state, pending)
                rows, pending = rows + encoded, []
    if pending:
        encoded, latent_shape = _encoded(state, pending)
        rows += encoded
    if not rows:
        raise ValueError(f"no row of {list(shard_files)} could be encoded")
    layout = FeatureLayout(latent_shape, state.encoder.hidden_size)
    schema = feature_schema(spec, layout, {"made_by": "bench.train_features"})
    out_dir = Path(out_dir)
    (out_dir / FEATURES_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / UNCONDITIONAL_DIR).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out_dir / FEATURES_DIR / "part-00000.parquet",
                   row_group_size=ROW_GROUP_ROWS)
    uncond = feature_row(UNCONDITIONAL_ID, unconditional_states(state.encoder), STORAGE_DTYPE)
    pq.write_table(pa.Table.from_pylist([uncond], schema=schema), out_dir / UNCONDITIONAL_DIR / "part-00000.parquet")
    return out_dir
