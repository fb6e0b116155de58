"""The frozen multimodal LLM that encodes interleaved prompts into the denoiser's conditions.

UNIMO-G conditions every cross-attention of the denoiser on the hidden states of a frozen MLLM
reading the interleaved prompt (`<img>[dog segment]</img> sleeping on a sofa`). This module wraps
a transformers vision-language model of one family behind one interface:

    encoder = build_encoder(EncoderConfig(family="llava", model="llava-hf/llava-1.5-7b-hf"), device)
    out = encoder(prompts, entity_images)   # out.hidden (B, T, D), out.entity_tokens (B, K, T), ...

Each prompt is a sequence of `PromptPart`; `PromptPart(entity=k)` stands for `entity_images[b][k]`.
An entity becomes the family's image placeholder, which the family's own processor expands into
that image's visual tokens; their positions are then found by the placeholder token id, in order
of appearance. Families: `llava` (LlavaForConditionalGeneration), `qwen2_vl`
(Qwen2VLForConditionalGeneration), `idefics3` (Idefics3ForConditionalGeneration, also SmolVLM).
`model: tiny` builds a random-weight model of the family (`tiny_vlm.py`).

Conventions: right padding (set explicitly; tokenizers do not restore it on reload), so a causal
LM's real tokens never see padding and a prompt's hidden states do not depend on its batch.
Prompts are never truncated before the forward pass (a cut would split an image's tokens); the
output keeps the first `max_length` tokens, which for a causal LM equals truncating the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Optional, Sequence

import torch
from PIL import Image

from unimo_g.devices import check_dtype_name, resolve_device, resolve_dtype
from unimo_g.records import PromptPart

ENCODER_FAMILIES = ("llava", "qwen2_vl", "idefics3")


@dataclass(frozen=True)
class EncoderConfig:
    """Which MLLM encodes prompts, and which of its hidden states condition the denoiser.

    family: "llava" | "qwen2_vl" | "idefics3".
    model: "tiny" (random weights from `seed`), a hub id, or a local directory (e.g. one written
      by `MultimodalEncoder.save_pretrained`).
    revision: hub revision (branch, tag or commit) for a hub id.
    layer: index into the language model's `hidden_states` (0 = embeddings, -1 = last layer after
      the final norm). Default -2, the penultimate layer: the last layer of a decoder LM
      specialises in next-token prediction, and T2I models conditioned on decoder LMs commonly
      take the penultimate (Lumina-Next, HunyuanVideo). The paper does not state its choice.
    max_length: tokens kept per prompt (text and visual tokens together).
    dtype: "fp32" | "bf16" | "fp16" for the model weights; outputs are float32.
    seed: weight seed of the tiny model.
    image_size: side in pixels of the entity images as the vision tower sees them. Builds the tiny
      model for it; for Qwen2-VL it fixes each entity image's pixel budget to image_size**2
      (dynamic resolution: (image_size/28)**2 visual tokens for the 7B model); for LLaVA and
      Idefics3 the tower's input size is fixed by the checkpoint, so it must be None or equal it.
      None: the tiny default (32) or the processor's own setting.
    """

    family: str = "llava"
    model: str = "tiny"
    revision: Optional[str] = None
    layer: int = -2
    max_length: int = 1024
    dtype: str = "fp32"
    seed: int = 0
    image_size: Optional[int] = None

    def __post_init__(self):
        if self.family not in ENCODER_FAMILIES:
            raise ValueError(f"encoder.family must be one of {list(ENCODER_FAMILIES)}, got {self.family!r}")
        if not self.model:
            raise ValueError("encoder.model must be 'tiny', a hub id or a local directory, got an empty string")
        if self.max_length < 1:
            raise ValueError(f"encoder.max_length must be >= 1, got {self.max_length!r}")
        check_dtype_name(self.dtype)
        if self.seed < 0:
            raise ValueError(f"encoder.seed must be >= 0, got {self.seed!r}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"encoder.image_size must be >= 8 or null, got {self.image_size!r}")


@dataclass
class EncodedPrompt:
    """A batch of encoded prompts. K = the most entity images any prompt of the batch has.

    hidden: (B, T, D) float32 hidden states of `EncoderConfig.layer`, zero at padding.
    attention_mask: (B, T) bool, True at real tokens (padding is on the right).
    entity_tokens: (B, K, T) bool, True at the positions of entity k's visual tokens.
    entity_valid: (B, K) bool, True where entity k has visual tokens in the (kept) prompt.
    """

    hidden: torch.Tensor
    attention_mask: torch.Tensor
    entity_tokens: torch.Tensor
    entity_valid: torch.Tensor

    def to(self, device: torch.device | str) -> "EncodedPrompt":
        tensors = (self.hidden, self.attention_mask, self.entity_tokens, self.entity_valid)
        return EncodedPrompt(*(t.to(device) for t in tensors))


class MultimodalEncoder(torch.nn.Module):
    """A frozen vision-language model behind one interface (see the module docstring).

    Subclasses set the family's image placeholder and how many visual tokens each image became.
    `hidden_size` is the language model's width D.
    """

    family: ClassVar[str]
    image_placeholder: ClassVar[str]  # text standing for one image before the processor expands it

    def __init__(self, model, processor, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.vlm = model
        self.processor = processor
        processor.tokenizer.padding_side = "right"
        self.image_token_id = int(processor.image_token_id)
        text_config = model.config.get_text_config()
        self.hidden_size = int(text_config.hidden_size)
        num_states = int(text_config.num_hidden_layers) + 1
        if not -num_states <= config.layer < num_states:
            raise ValueError(
                f"encoder.layer {config.layer} is out of range for a model with {num_states} hidden states"
            )
        added = sorted(processor.tokenizer.get_added_vocab(), key=len, reverse=True)
        # Control tokens typed in a caption must stay text, not become image slots or markers.
        self._control_tokens = re.compile("|".join(re.escape(t) for t in added)) if added else None
        self.vlm.requires_grad_(False)
        self.vlm.eval()

    def train(self, mode: bool = True) -> "MultimodalEncoder":
        """The encoder stays in eval mode whatever its parent module does."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.vlm.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vlm.parameters()).dtype

    def render(self, prompt: Sequence[PromptPart], num_images: int) -> tuple[str, list[int]]:
        """The prompt as processor text, and the entity index of each placeholder in order."""
        pieces, order = [], []
        for part in prompt:
            if part.entity is None:
                pieces.append(self._control_tokens.sub("", part.text) if self._control_tokens else part.text)
                continue
            if not 0 <= part.entity < num_images:
                raise ValueError(f"prompt refers to entity {part.entity} but has {num_images} entity image(s)")
            pieces.append(self.image_placeholder)
            order.append(part.entity)
        return "".join(pieces), order

    def tokens_per_image(self, inputs, input_ids: torch.Tensor, images_per_prompt: list[int]) -> list[list[int]]:
        """Visual tokens each image became, per prompt; default: every image of a prompt alike."""
        counts = []
        for b, num in enumerate(images_per_prompt):
            total = int((input_ids[b] == self.image_token_id).sum())
            if total % num if num else total:
                raise ValueError(f"prompt {b}: {total} image tokens do not split over {num} image(s)")
            counts.append([total // num] * num if num else [])
        return counts

    @torch.no_grad()
    def forward(
        self, prompts: Sequence[Sequence[PromptPart]], entity_images: Sequence[Sequence[Image.Image]]
    ) -> EncodedPrompt:
        """Encode a batch; `prompts[b]` refers to `entity_images[b][k]` by `PromptPart(entity=k)`.

        Prompts are encoded in one call per number of entity images they show: each image adds
        hundreds of visual tokens (576 for LLaVA-1.5), so one call would pad a text-only prompt to
        the length of a three-image one. The result equals one call up to float rounding (right
        padding: real tokens never see padding), zero-padded to the batch's longest prompt.
        """
        if len(prompts) != len(entity_images) or not prompts:
            raise ValueError(
                f"need one entity-image list per prompt, got {len(prompts)} prompts and {len(entity_images)} lists"
            )
        groups: dict[int, list[int]] = {}  # entity images shown -> the prompts showing that many
        for b, (prompt, pool) in enumerate(zip(prompts, entity_images)):
            text, order = self.render(prompt, len(pool))
            if not text.strip() and not order:
                raise ValueError(f"prompt {b} is empty")
            groups.setdefault(len(order), []).append(b)
        if len(groups) == 1:
            return self._encode(prompts, entity_images)
        parts = [
            (members, self._encode([prompts[b] for b in members], [entity_images[b] for b in members]))
            for members in groups.values()
        ]
        return _merge(parts, len(prompts), max(len(pool) for pool in entity_images))

    def _encode(
        self, prompts: Sequence[Sequence[PromptPart]], entity_images: Sequence[Sequence[Image.Image]]
    ) -> EncodedPrompt:
        """One processor call and one forward for the whole batch (see `forward`)."""
        texts, orders, images = [], [], []
        for b, (prompt, pool) in enumerate(zip(prompts, entity_images)):
            text, order = self.render(prompt, len(pool))
            if not text.strip() and not order:
                raise ValueError(f"prompt {b} is empty")
            texts.append(text)
            orders.append(order)
            images.append([pool[k].convert("RGB") for k in order])
        call = dict(text=texts, padding="longest", return_tensors="pt")
        if any(images):
            call["images"] = images
        inputs = self.processor(**call, **self.processor_kwargs())
        input_ids = inputs["input_ids"]  # (B, L)
        counts = self.tokens_per_image(inputs, input_ids, [len(o) for o in orders])

        model_inputs = {
            k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in inputs.items()
            if isinstance(v, torch.Tensor)
        }
        states = self.vlm.model(**model_inputs, output_hidden_states=True, use_cache=False).hidden_states
        attention_mask = inputs["attention_mask"].bool()  # (B, L)
        length = min(int(attention_mask.sum(1).max()), self.config.max_length)
        hidden = states[self.config.layer][:, :length].float()  # (B, T, D)
        attention_mask = attention_mask[:, :length].to(hidden.device)
        hidden = hidden * attention_mask[..., None]

        num_entities = max(len(pool) for pool in entity_images)
        entity_tokens = torch.zeros(len(prompts), num_entities, length, dtype=torch.bool)  # (B, K, T)
        for b, order in enumerate(orders):
            positions = (input_ids[b] == self.image_token_id).nonzero().flatten()
            if len(positions) != sum(counts[b]):
                raise ValueError(f"prompt {b}: found {len(positions)} image tokens, expected {sum(counts[b])}")
            for k, chunk in zip(order, positions.split(counts[b])):
                entity_tokens[b, k, chunk[chunk < length]] = True
        entity_tokens = entity_tokens.to(hidden.device)
        return EncodedPrompt(hidden, attention_mask, entity_tokens, entity_tokens.any(-1))

    def processor_kwargs(self) -> dict:
        """Extra arguments of every processor call."""
        return {}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write model and processor so that `EncoderConfig(model=str(directory))` loads them."""
        self.vlm.save_pretrained(directory)
        self.processor.save_pretrained(directory)


def _merge(parts: Sequence[tuple[list[int], EncodedPrompt]], batch: int, num_entities: int) -> EncodedPrompt:
    """One `EncodedPrompt` of `batch` prompts from encodings of disjoint groups of them (`parts`:
    (the prompts' batch indices, their encoding)), zero-padded to the longest prompt and to
    `num_entities` entity slots."""
    first = parts[0][1]
    length = max(out.hidden.shape[1] for _, out in parts)
    device = first.hidden.device
    hidden = torch.zeros(batch, length, first.hidden.shape[2], dtype=first.hidden.dtype, device=device)  # (B, T, D)
    attention_mask = torch.zeros(batch, length, dtype=torch.bool, device=device)  # (B, T)
    entity_tokens = torch.zeros(batch, num_entities, length, dtype=torch.bool, device=device)  # (B, K, T)
    for members, out in parts:
        index = torch.as_tensor(members, device=device)
        t, k = out.hidden.shape[1], out.entity_tokens.shape[1]
        hidden[index, :t] = out.hidden
        attention_mask[index, :t] = out.attention_mask
        entity_tokens[index, :k, :t] = out.entity_tokens
    return EncodedPrompt(hidden, attention_mask, entity_tokens, entity_tokens.any(-1))


class LlavaEncoder(MultimodalEncoder):
    family = "llava"
    image_placeholder = "<image>"


class Qwen2VLEncoder(MultimodalEncoder):
    family = "qwen2_vl"
    image_placeholder = "<|vision_start|><|image_pad|><|vision_end|>"

    def tokens_per_image(self, inputs, input_ids, images_per_prompt):
        """Dynamic resolution: an image's tokens are its (t, h, w) patch grid over the 2x2 merge."""
        merge = int(self.processor.image_processor.merge_size) ** 2
        flat = [int(n) // merge for n in inputs["image_grid_thw"].prod(-1)] if "image_grid_thw" in inputs else []
        counts, start = [], 0
        for num in images_per_prompt:
            counts.append(flat[start : start + num])
            start += num
        return counts


class Idefics3Encoder(MultimodalEncoder):
    family = "idefics3"
    image_placeholder = "<image>"

    def processor_kwargs(self):
        # One global view per entity segment (no tiling): image_seq_len tokens per image.
        return {"do_image_splitting": False}


def _load_pretrained(config: EncoderConfig, dtype: torch.dtype, model_class, processor_class):
    """Model and processor from a hub id or local directory (safetensors only; no remote code)."""
    common = dict(revision=config.revision, trust_remote_code=False)
    model = model_class.from_pretrained(config.model, dtype=dtype, use_safetensors=True, **common)
    processor = processor_class.from_pretrained(config.model, **common)
    return model.eval(), processor


def _build(
    config: EncoderConfig, device: torch.device, encoder_class, model_class, processor_class
) -> MultimodalEncoder:
    from unimo_g.models.tiny_vlm import TINY_BUILDERS, TINY_IMAGE_SIZE

    dtype = resolve_dtype(config.dtype, device)
    if config.model == "tiny":
        model, processor = TINY_BUILDERS[config.family](config.seed, config.image_size or TINY_IMAGE_SIZE)
    else:
        model, processor = _load_pretrained(config, dtype, model_class, processor_class)
        _apply_image_size(config, model, processor)
    return encoder_class(model.to(device=device, dtype=dtype), processor, config)


def _apply_image_size(config: EncoderConfig, model, processor) -> None:
    if config.image_size is None:
        return
    if config.family == "qwen2_vl":
        pixels = config.image_size**2
        processor.image_processor.size = {"shortest_edge": pixels, "longest_edge": pixels}
        return
    native = model.config.vision_config.image_size
    if config.image_size != native:
        raise ValueError(
            f"encoder.image_size {config.image_size} differs from the {config.family} vision tower's input size "
            f"{native}; leave it null for this checkpoint"
        )


def build_llava(config: EncoderConfig, device: torch.device) -> MultimodalEncoder:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    return _build(config, device, LlavaEncoder, LlavaForConditionalGeneration, AutoProcessor)


def build_qwen2_vl(config: EncoderConfig, device: torch.device) -> MultimodalEncoder:
    from transformers import Qwen2VLForConditionalGeneration

    from unimo_g.models.qwen2_vl_processor import Qwen2VLImageProcessor

    return _build(config, device, Qwen2VLEncoder, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor)


def build_idefics3(config: EncoderConfig, device: torch.device) -> MultimodalEncoder:
    from transformers import AutoProcessor, Idefics3ForConditionalGeneration

    return _build(config, device, Idefics3Encoder, Idefics3ForConditionalGeneration, AutoProcessor)


ENCODER_BUILDERS: dict[str, Callable[[EncoderConfig, torch.device], MultimodalEncoder]] = {
    "llava": build_llava,
    "qwen2_vl": build_qwen2_vl,
    "idefics3": build_idefics3,
}


def build_encoder(config: EncoderConfig, device: torch.device | str = "cpu") -> MultimodalEncoder:
    """The frozen encoder of `config.family` on `device` (a torch.device or a name like "cuda:0")."""
    device = resolve_device(device) if isinstance(device, str) else device
    return ENCODER_BUILDERS[config.family](config, device)
