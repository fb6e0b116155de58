"""The model that names entities (`entities.source` mllm / llm): loading, and greedy replies.

mllm: `AutoModelForImageTextToText` with its processor (families tested: Qwen2-VL, Qwen2.5-VL, LLaVA,
LLaVA-NeXT, LLaVA-OneVision, Idefics3, SmolVLM); llm: `AutoModelForCausalLM` with its tokenizer
(Qwen2, LLaMA). Prompts are rendered with the checkpoint's own chat template. Qwen2-VL / Qwen2.5-VL
and LLaVA-OneVision load through processor subclasses without the video processor (it needs
torchvision). `random-tiny-<family>` builds a random-weight model (`grounding.tiny_chat_models`).

Replies are greedy (no sampling, one beam) with at most `max_new_tokens`; a batch is left-padded.
With `forward: image` each request runs alone, so a reply does not depend on its batch; `batch`
generates a whole batch at once (faster on a GPU; padding may move the last bits of the logits).
Devices follow `unimo_g.devices`: an absent GPU raises. Remote code is never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from grounding.tiny_chat_models import PREFIX, build_tiny_chat_model
from unimo_g.devices import resolve_device, resolve_dtype
from unimo_g.pipeline_config import EntitiesConfig


@dataclass
class EntityModel:
    """A loaded model with its processor (mllm) or tokenizer (llm), on `device`."""

    model: Any
    processor: Any
    kind: str  # "mllm" | "llm"
    device: torch.device
    name: str

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)


def _processor_class(model_type: str):
    from transformers import AutoProcessor

    from grounding.vlm_processors import LlavaOnevisionImageProcessor
    from unimo_g.models.qwen2_vl_processor import Qwen2VLImageProcessor

    return {"qwen2_vl": Qwen2VLImageProcessor, "qwen2_5_vl": Qwen2VLImageProcessor,
            "llava_onevision": LlavaOnevisionImageProcessor}.get(model_type, AutoProcessor)


def load_entity_model(config: EntitiesConfig) -> EntityModel:
    """Load `config.model_id` for `config.source` (ValueError for `spacy`, which needs no model)."""
    if config.source == "spacy":
        raise ValueError("entities.source spacy loads no model")
    name, kind = config.model_id, config.source
    device = resolve_device(config.runtime.device)
    dtype = resolve_dtype(config.runtime.dtype, device)
    if name.startswith(PREFIX):
        built = build_tiny_chat_model(name, config.seed)
        if built.kind != kind:
            raise ValueError(f"entities.model {name!r} is a {built.kind} build; entities.source {kind} needs a {kind}")
        model, processor = built.model.to(dtype), built.processor
    else:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

        revision = config.revision
        if kind == "mllm":
            model_type = AutoConfig.from_pretrained(name, revision=revision).model_type
            processor = _processor_class(model_type).from_pretrained(name, revision=revision)
            model = AutoModelForImageTextToText.from_pretrained(name, revision=revision, dtype=dtype)
        else:
            processor = AutoTokenizer.from_pretrained(name, revision=revision)
            model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=dtype)
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"  # not restored on reload: set explicitly
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return EntityModel(model=model.to(device).eval(), processor=processor, kind=kind, device=device, name=name)


def fit_image(pixels: np.ndarray, max_side: int) -> Image.Image:
    """(H, W, 3) uint8 RGB -> PIL image, shrunk (Lanczos) so that its longer side is at most `max_side`."""
    image = Image.fromarray(pixels)
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    return image


def _render(loaded: EntityModel, chat: list[dict]) -> str:
    return loaded.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)


@torch.inference_mode()
def _generate(loaded: EntityModel, chats: Sequence[list[dict]], images: Optional[Sequence[Image.Image]],
              max_new_tokens: int) -> list[str]:
    texts = [_render(loaded, chat) for chat in chats]
    if loaded.kind == "mllm":
        inputs = loaded.processor(text=texts, images=[[image] for image in images], padding=True, return_tensors="pt")
    else:
        inputs = loaded.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    inputs = inputs.to(loaded.device)
    floating = {k: v.to(loaded.model.dtype) for k, v in inputs.items() if torch.is_floating_point(v)}
    tokenizer = loaded.tokenizer
    output = loaded.model.generate(**{**inputs, **floating}, do_sample=False, num_beams=1,
                                   max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    new = output[:, inputs["input_ids"].shape[1]:]  # (B, generated) after the left-padded prompts
    return tokenizer.batch_decode(new, skip_special_tokens=True)


def generate_replies(loaded: EntityModel, chats: Sequence[list[dict]], images: Optional[Sequence[np.ndarray]],
                     config: EntitiesConfig) -> list[str]:
    """One greedy reply per chat (`images[i]`: the image of chat i, mllm only), per `config.forward`."""
    if (loaded.kind == "mllm") != (images is not None):
        raise ValueError(f"a {loaded.kind} takes {'one image per chat' if loaded.kind == 'mllm' else 'no images'}")
    pictures = [fit_image(p, config.max_image_side) for p in images] if images is not None else None
    if config.forward == "batch":
        return _generate(loaded, chats, pictures, config.max_new_tokens)
    return [reply for i, chat in enumerate(chats)
            for reply in _generate(loaded, [chat], pictures[i:i + 1] if pictures else None, config.max_new_tokens)]
