"""A trained denoiser as a folder that diffusers loads alone, and reading such a folder back.

    EXPORT/
      model_index.json                     StableDiffusionPipeline: unet, vae, scheduler (no text encoder)
      unet/                                UNet2DConditionModel; the condition projection is its own
                                           `encoder_hid_proj` ("text_proj", encoder width -> cross-attention)
      vae/                                 AutoencoderKL the model was trained with
      scheduler/                           DDIMScheduler over the training noise schedule
      negative_prompt_embeds.safetensors   the empty prompt's conditions (classifier-free guidance)
      unimo_g.json                         ModelSpec (encoder, layer, resolution, entity images, noise),
                                           which weights, the condition normalisation
      README.md                            model card: encoder, layer, prompt format, how to sample

The trainer's projection is LayerNorm then Linear (`ConditionProjection`). The export folds the
LayerNorm's affine part into the Linear (W' = W diag(gamma), b' = W beta + b), so the UNet's
`encoder_hid_proj` holds all the weights and the conditions diffusers takes are the encoder's hidden
states of the configured layer under a parameter-free layer norm,
`torch.nn.functional.layer_norm(hidden, (D,), eps=EPS)`. A denoiser without a projection (encoder
width = cross-attention width) takes the hidden states as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import diffusers
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from torch import nn

from unimo_g.checkpoint_format import ModelSpec
from unimo_g.config_tools import ConfigError, from_dict, to_dict
from unimo_g.diffusion.schedule import make_sampler_scheduler
from unimo_g.models.denoiser import ConditionNormalization, ConditionProjection, Denoiser

EXPORT_FORMAT = 1
EXPORT_SPEC = "unimo_g.json"
NEGATIVE_EMBEDS = "negative_prompt_embeds.safetensors"
MODEL_CARD = "README.md"
MODEL_INDEX = "model_index.json"
PIPELINE_CLASS = "StableDiffusionPipeline"
# StableDiffusionPipeline's components that an export leaves out (conditions come from the MLLM)
ABSENT_COMPONENTS = ("text_encoder", "tokenizer", "safety_checker", "feature_extractor", "image_encoder")
PLACEHOLDERS = {"llava": "<image>", "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>", "idefics3": "<image>"}


class ExportError(ValueError):
    """A folder that is not a readable export; the message names it."""


@dataclass(frozen=True)
class ExportedModel:
    """What an export folder holds for sampling: the spec, the denoiser (CPU, eval mode, taking the
    encoder's raw hidden states), the VAE, and which weights were exported ("ema" | "raw")."""

    spec: ModelSpec
    denoiser: Denoiser
    vae: AutoencoderKL
    weights: str


def is_export(path: str | Path) -> bool:
    return (Path(path) / EXPORT_SPEC).is_file()


@torch.no_grad()
def fold_projection(denoiser: Denoiser) -> tuple[UNet2DConditionModel, Optional[float]]:
    """A copy of the denoiser's UNet that projects the conditions itself (`encoder_hid_proj`), and
    the eps of the parameter-free layer norm its conditions need (None: no projection; the UNet
    takes the hidden states as they are)."""
    proj = denoiser.projection.proj
    if isinstance(proj, nn.Identity):
        unet = UNet2DConditionModel.from_config(denoiser.unet.config)
        unet.load_state_dict(denoiser.unet.state_dict())
        return unet.to(denoiser.unet.dtype).eval(), None
    norm, linear = proj
    unet = UNet2DConditionModel.from_config(
        denoiser.unet.config, encoder_hid_dim=denoiser.encoder_width, encoder_hid_dim_type="text_proj"
    )
    weight = linear.weight.double() * norm.weight.double()[None, :]  # (out, in): W diag(gamma)
    bias = linear.weight.double() @ norm.bias.double() + linear.bias.double()  # (out,): W beta + b
    state = dict(denoiser.unet.state_dict())
    state["encoder_hid_proj.weight"] = weight.to(linear.weight.dtype)
    state["encoder_hid_proj.bias"] = bias.to(linear.bias.dtype)
    unet.load_state_dict(state)  # strict: every tensor of the trained UNet, and the projection
    return unet.to(denoiser.unet.dtype).eval(), float(norm.eps)


def normalize_conditions(hidden: torch.Tensor, eps: Optional[float]) -> torch.Tensor:
    """The conditions an exported UNet takes from hidden states `(B, T, D)` (see the module docstring)."""
    return hidden if eps is None else nn.functional.layer_norm(hidden, (hidden.shape[-1],), eps=eps)


def write_export(
    out_dir: str | Path,
    spec: ModelSpec,
    denoiser: Denoiser,
    vae: AutoencoderKL,
    weights: str,
    uncond: tuple[torch.Tensor, torch.Tensor],
) -> Path:
    """Write the export folder (layout in the module docstring). `uncond`: the empty prompt's
    encoding `(1, T_u, D)`, `(1, T_u)` (`unimo_g.inference.encode_unconditional`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unet, eps = fold_projection(denoiser)
    unet.save_pretrained(out_dir / "unet", safe_serialization=True)
    vae.save_pretrained(out_dir / "vae", safe_serialization=True)
    make_sampler_scheduler(spec.noise).save_pretrained(out_dir / "scheduler")
    index = {"_class_name": PIPELINE_CLASS, "_diffusers_version": diffusers.__version__,
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "scheduler": ["diffusers", "DDIMScheduler"], **{name: [None, None] for name in ABSENT_COMPONENTS},
             "requires_safety_checker": False}
    (out_dir / MODEL_INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")
    hidden, mask = uncond
    negative = normalize_conditions(hidden.float().cpu(), eps).contiguous()  # (1, T_u, D)
    save_file({"negative_prompt_embeds": negative, "attention_mask": mask.cpu().to(torch.int64).contiguous()},
              out_dir / NEGATIVE_EMBEDS)
    meta = {"format_version": EXPORT_FORMAT, "weights": weights, "model": to_dict(spec),
            "condition": {"width": denoiser.encoder_width, "layer_norm_eps": eps}}
    (out_dir / EXPORT_SPEC).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    (out_dir / MODEL_CARD).write_text(model_card(spec, eps, weights, negative.shape[1]), encoding="utf-8")
    return out_dir


def read_export_spec(path: str | Path) -> ModelSpec:
    """The `ModelSpec` of an export folder."""
    return _read_meta(Path(path))[1]


def _read_meta(path: Path) -> tuple[dict, ModelSpec]:
    try:
        meta = json.loads((path / EXPORT_SPEC).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ExportError(f"{path / EXPORT_SPEC}: cannot read the export spec: {err}") from None
    if meta.get("format_version") != EXPORT_FORMAT:
        raise ExportError(f"{path}: export format {meta.get('format_version')!r} is not supported ({EXPORT_FORMAT})")
    try:
        spec = from_dict(ModelSpec, meta["model"])
    except (ConfigError, KeyError) as err:
        raise ExportError(f"{path / EXPORT_SPEC}: {err}") from None
    return meta, spec


def read_export(path: str | Path) -> ExportedModel:
    """The model of an export folder (diffusers loads its parts; this adds the normalisation)."""
    path = Path(path)
    meta, spec = _read_meta(path)
    unet = UNet2DConditionModel.from_pretrained(path / "unet")
    width, eps = meta["condition"]["width"], meta["condition"]["layer_norm_eps"]
    projection = ConditionProjection(width, width) if eps is None else ConditionNormalization(width, eps)
    vae = AutoencoderKL.from_pretrained(path / "vae")
    return ExportedModel(spec, Denoiser(projection, unet).eval(), vae, meta["weights"])


def read_negative_embeds(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The export's empty-prompt conditions `(1, T_u, D)` (normalised) and mask `(1, T_u)` bool."""
    tensors = load_file(Path(path) / NEGATIVE_EMBEDS)
    return tensors["negative_prompt_embeds"], tensors["attention_mask"].bool()


def model_card(spec: ModelSpec, eps: Optional[float], weights: str, uncond_tokens: int) -> str:
    """The README of an export: what conditions the UNet, the prompt format, and how to sample."""
    encoder = spec.encoder
    revision = f" (revision {encoder.revision})" if encoder.revision else ""
    placeholder = PLACEHOLDERS.get(encoder.family, "<image>")
    size, fmt = spec.entity_image.size, spec.entity_image.format
    if eps is None:
        condition = "the hidden states themselves (the UNet's cross-attention has the encoder's width)"
        normalise = "prompt_embeds = hidden"
    else:
        condition = (f"`torch.nn.functional.layer_norm(hidden, (D,), eps={eps})` of them, without affine parameters "
                     "(the affine part and the projection are the UNet's `encoder_hid_proj`)")
        normalise = f"prompt_embeds = torch.nn.functional.layer_norm(hidden, (hidden.shape[-1],), eps={eps})"
    random_note = ""
    if encoder.model == "tiny" or spec.denoiser.vae == "tiny":
        random_note = "\n**Random-weight tiny models**: this export is for tests and smoke runs only.\n"
    return f"""# UNIMO-G denoiser (diffusers export)
{random_note}
A latent-diffusion UNet trained with the unimo-g toolkit ({weights} weights), conditioned on a frozen
multimodal LLM that reads interleaved prompts.

- **Encoder**: `{encoder.model}`{revision}, family `{encoder.family}`, hidden states of layer
  `{encoder.layer}` (index into the language model's `hidden_states`; 0 = embeddings), at most
  {encoder.max_length} tokens, padding on the right.
- **Conditions** (`encoder_hidden_states`): {condition}.
- **Prompt format**: the caption with each entity phrase replaced by its image, written as the
  encoder's image placeholder `{placeholder}` and passed to its processor with the images in order,
  e.g. `{placeholder} sleeping on a {placeholder}`. Entity images are the entity on white, centred on a
  white square and resized to {size}x{size} ({fmt}), as in training.
- **Images**: {spec.resolution}x{spec.resolution}; DDIM (`scheduler/`, the training noise schedule),
  50 steps, classifier-free guidance 5.0 against `negative_prompt_embeds.safetensors` (the empty
  prompt, {uncond_tokens} token(s), normalised already).

```python
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

pipe = StableDiffusionPipeline.from_pretrained(EXPORT_DIR, text_encoder=None, tokenizer=None,
                                               safety_checker=None, feature_extractor=None, image_encoder=None)
# hidden: (1, T, D) float32 hidden states of layer {encoder.layer} of {encoder.model} for the prompt
{normalise}
negative = load_file(f"{{EXPORT_DIR}}/negative_prompt_embeds.safetensors")["negative_prompt_embeds"]
# one empty-prompt token repeated T times attends exactly like the single token
negative = negative.expand(1, prompt_embeds.shape[1], -1) if negative.shape[1] == 1 else negative
image = pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative, num_inference_steps=50,
             guidance_scale=5.0, height={spec.resolution}, width={spec.resolution}).images[0]
```

With batches of prompts of different lengths, pass `encoder_attention_mask` to the UNet (the pipeline
does not), or padded tokens take attention. `python -m unimo_g_apps.generate --checkpoint EXPORT_DIR ...`
samples from this folder with the encoder named above.
"""
