"""The trainable denoiser: a condition projection and a latent-diffusion UNet (diffusers).

The frozen multimodal encoder's hidden states `(B, T, D)` condition every cross-attention of the UNet.
`DENOISER_BUILDERS` maps a size name to `(cross_attention_dim) -> UNet2DConditionModel`:
- "sd15": the exact Stable Diffusion 1.5 UNet layout (~859M parameters at cross_attention_dim 768);
- "tiny": a two-level UNet that trains a few steps on a CPU in about a second (tests, smoke runs).

Starting from an SD-1.5 checkpoint either keeps its 768-wide cross-attention and projects the encoder
states to 768 (`cross_attention_dim: 768`, every weight loads), or widens the cross-attention to the
encoder width (`cross_attention_dim: null`) and re-initialises the attn2 key/value projections.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file
from torch import nn

LOGGER = logging.getLogger(__name__)

UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
UNET_WEIGHTS_INDEX = "diffusion_pytorch_model.safetensors.index.json"
PROJECTION_WEIGHTS = "projection.safetensors"
DENOISER_META = "denoiser.json"
# The projection's layout, in denoiser.json: LayerNorm then Linear. Denoisers written before it
# carried none and used Linear then LayerNorm, which no longer loads.
PROJECTION_LAYOUT = "norm_linear"


def unet_tiny(cross_attention_dim: int) -> UNet2DConditionModel:
    """Two levels (32, 64 channels), cross-attention at both (feature maps 16 and 8 at 16x16 latents)."""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=2,  # diffusers reads this as the number of heads
        cross_attention_dim=cross_attention_dim,
    )


def unet_sd15(cross_attention_dim: int) -> UNet2DConditionModel:
    """The Stable Diffusion 1.5 UNet layout (64x64 latents, 320/640/1280/1280 channels, 8 heads)."""
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        norm_num_groups=32,
        attention_head_dim=8,
        cross_attention_dim=cross_attention_dim,
        flip_sin_to_cos=True,
        freq_shift=0,
    )


DENOISER_BUILDERS: dict[str, Callable[[int], UNet2DConditionModel]] = {"tiny": unet_tiny, "sd15": unet_sd15}


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
    """Which denoiser to build and how to start it.

    size: a key of `DENOISER_BUILDERS`.
    vae: a key of `unimo_g.models.vae.VAE_BUILDERS` (random weights) or a local folder / hub id for
        `AutoencoderKL.from_pretrained`; vae_subfolder e.g. "vae" for a full Stable Diffusion folder.
    init_from: a diffusers SD-1.5-layout folder (with `unet/`) or a UNet folder; None trains from scratch.
    cross_attention_dim: the UNet's cross-attention width; None means the encoder width (no projection).
    capture_resolutions: feature-map side lengths (at the UNet's sample_size) whose cross-attention maps
        feed the attention loss; "sd15" has 64/32/16/8, "tiny" has 16/8.
    """

    size: str = "sd15"
    vae: str = "sd15"
    vae_subfolder: str | None = None
    init_from: str | None = None
    cross_attention_dim: int | None = None
    seed: int = 0
    gradient_checkpointing: bool = False
    capture_resolutions: tuple[int, ...] = (16, 32)

    def __post_init__(self) -> None:
        if self.size not in DENOISER_BUILDERS:
            raise ValueError(f"denoiser size must be one of {sorted(DENOISER_BUILDERS)}, got {self.size!r}")
        if not self.vae:
            raise ValueError("vae must name a VAE builder or a pretrained VAE, got an empty string")
        if self.init_from is not None and not self.init_from:
            raise ValueError("init_from must be a path or null, got an empty string")
        if self.cross_attention_dim is not None and self.cross_attention_dim <= 0:
            raise ValueError(f"cross_attention_dim must be positive or null, got {self.cross_attention_dim}")
        bad = [r for r in self.capture_resolutions if r <= 0]
        if bad or len(set(self.capture_resolutions)) != len(self.capture_resolutions):
            raise ValueError(f"capture_resolutions must be distinct positive ints, got {self.capture_resolutions}")


class ConditionProjection(nn.Module):
    """Encoder width -> the UNet's cross-attention width: LayerNorm, then Linear; identity when equal.

    The normalisation comes first (as in Lumina-Next's caption embedder, RMSNorm then Linear): an
    LLM's hidden states carry a few huge activations, and a per-token normalisation before the
    projection tames them. It also lets an export fold the LayerNorm's affine part into the Linear,
    which diffusers holds as the UNet's own `encoder_hid_proj` (`unimo_g.export_format`), leaving only a
    parameter-free layer norm on the encoder side.
    """

    def __init__(self, in_dim: int, out_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        if in_dim == out_dim:
            self.proj: nn.Module = nn.Identity()
        else:
            self.proj = nn.Sequential(nn.LayerNorm(in_dim, eps=eps), nn.Linear(in_dim, out_dim))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.proj(cond)  # (B, T, in_dim) -> (B, T, out_dim)


class ConditionNormalization(nn.Module):
    """The encoder-side part of an exported projection: a layer norm without affine parameters over
    the last axis, `(B, T, D) -> (B, T, D)` (the affine part and the Linear live in the exported
    UNet's `encoder_hid_proj`)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.in_dim = self.out_dim = dim
        self.eps = eps

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(cond, (self.in_dim,), eps=self.eps)


def unet_condition_width(unet: UNet2DConditionModel) -> int:
    """The width of the conditions a UNet takes: its `encoder_hid_dim` when it projects them itself
    (diffusers' "text_proj"), else its cross-attention width."""
    return unet.config.encoder_hid_dim or unet.config.cross_attention_dim


class Denoiser(nn.Module):
    """ε-prediction: `forward(noisy_latents (B,C,h,w), timesteps (B,), cond (B,T,D), cond_mask (B,T) bool)`.

    Returns `(B, C, h, w)` in the UNet's dtype (or the autocast dtype).

    Padded condition positions (`cond_mask` False) get no attention: the mask is passed to every
    cross-attention as `encoder_attention_mask`.
    """

    def __init__(self, projection: nn.Module, unet: UNet2DConditionModel) -> None:
        super().__init__()
        if projection.out_dim != unet_condition_width(unet):
            raise ValueError(
                f"projection width {projection.out_dim} != the width the unet takes, {unet_condition_width(unet)}"
            )
        self.projection = projection
        self.unet = unet

    @property
    def encoder_width(self) -> int:
        return self.projection.in_dim

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
    ) -> torch.Tensor:
        if cond.shape[:2] != cond_mask.shape or cond.shape[-1] != self.encoder_width:
            raise ValueError(
                f"cond {tuple(cond.shape)} / cond_mask {tuple(cond_mask.shape)} do not match (B, T, {self.encoder_width})"
            )
        dtype = self.unet.dtype  # inputs follow the weights (fp32 under autocast, or bf16 weights)
        states = self.projection(cond.to(dtype))  # (B, T, cross_attention_dim)
        return self.unet(
            noisy_latents.to(dtype),
            timesteps,
            encoder_hidden_states=states,
            encoder_attention_mask=cond_mask,
        ).sample  # (B, C, h, w)


def _unet_dir(path: Path) -> Path:
    """`path/unet` for a full diffusers folder, else `path` itself."""
    return path / "unet" if (path / "unet").is_dir() else path


def read_unet_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The safetensors state dict of a diffusers UNet folder (single file or sharded index)."""
    folder = _unet_dir(Path(path))
    if (folder / UNET_WEIGHTS).is_file():
        return load_file(folder / UNET_WEIGHTS)
    if (folder / UNET_WEIGHTS_INDEX).is_file():
        index = json.loads((folder / UNET_WEIGHTS_INDEX).read_text())
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_file(folder / shard))
        return state
    raise FileNotFoundError(f"no {UNET_WEIGHTS} or {UNET_WEIGHTS_INDEX} in {folder}")


def load_sd15_unet_weights(unet: UNet2DConditionModel, path: str | Path) -> list[str]:
    """Copy a diffusers UNet checkpoint's tensors into `unet` where shapes match; return the skipped keys.

    `path`: a diffusers folder with `unet/`, or a UNet folder. A different cross_attention_dim skips only
    the attn2 `to_k`/`to_v` weights (they stay as initialised). A checkpoint of another layout (keys
    missing or extra) raises rather than loading a fraction of it.
    """
    source = read_unet_state_dict(path)
    target = unet.state_dict()
    missing = sorted(set(target) - set(source))
    extra = sorted(set(source) - set(target))
    if missing or extra:
        raise ValueError(
            f"checkpoint {path} does not have this unet's layout: {len(missing)} keys missing "
            f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})"
        )
    skipped = sorted(key for key, value in source.items() if value.shape != target[key].shape)
    with torch.no_grad():
        for key, value in source.items():
            if key not in skipped:
                target[key].copy_(value.to(target[key].dtype))
    return skipped


def build_denoiser(config: DenoiserConfig, encoder_width: int) -> Denoiser:
    """A fresh denoiser (random from `config.seed`, then `init_from` weights if given) in train mode."""
    cross_dim = config.cross_attention_dim or encoder_width
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = DENOISER_BUILDERS[config.size](cross_dim)
        projection = ConditionProjection(encoder_width, cross_dim)
    if config.init_from is not None:
        skipped = load_sd15_unet_weights(unet, config.init_from)
        LOGGER.info("loaded %s; %d tensors left as initialised: %s", config.init_from, len(skipped), skipped)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return Denoiser(projection, unet).train()


def save_denoiser(denoiser: Denoiser, directory: str | Path, config: DenoiserConfig | None = None) -> Path:
    """Write `directory/unet` (diffusers `save_pretrained`, loadable by diffusers alone), the projection
    (`projection.safetensors`) and `denoiser.json` (widths, and `config` when given). Returns `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    denoiser.unet.save_pretrained(directory / "unet", safe_serialization=True)
    weights = {k: v.detach().contiguous() for k, v in denoiser.projection.state_dict().items()}
    save_file(weights, directory / PROJECTION_WEIGHTS)
    meta = {
        "projection": PROJECTION_LAYOUT,
        "encoder_width": denoiser.projection.in_dim,
        "cross_attention_dim": denoiser.projection.out_dim,
        "config": dataclasses.asdict(config) if config is not None else None,
    }
    (directory / DENOISER_META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return directory


def load_denoiser(directory: str | Path) -> Denoiser:
    """The denoiser written by `save_denoiser` (CPU, the saved dtype, eval mode)."""
    directory = Path(directory)
    meta = json.loads((directory / DENOISER_META).read_text())
    check_projection_layout(meta, directory)
    unet = UNet2DConditionModel.from_pretrained(directory / "unet")
    projection = ConditionProjection(meta["encoder_width"], meta["cross_attention_dim"])
    projection.load_state_dict(load_file(directory / PROJECTION_WEIGHTS))
    return Denoiser(projection.to(unet.dtype), unet).eval()


def check_projection_layout(meta: dict, directory: str | Path) -> None:
    """Refuse a denoiser whose projection has another layout than `ConditionProjection`'s (an
    identity projection has no weights and always fits)."""
    if meta["encoder_width"] != meta["cross_attention_dim"] and meta.get("projection") != PROJECTION_LAYOUT:
        raise ValueError(
            f"{directory}: its condition projection has the layout {meta.get('projection', 'linear_norm')!r}; "
            f"this code reads {PROJECTION_LAYOUT!r} (LayerNorm then Linear): retrain or convert it"
        )
