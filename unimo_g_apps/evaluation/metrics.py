"""The subject-fidelity and prompt-fidelity metrics UNIMO-G reports (DreamBooth's protocol).

- DINO: cosine similarity between the ViT-S/16 DINO embeddings (the [CLS] token of the last layer,
  after its layer norm) of a generated image and a reference image of the subject, averaged over
  all pairs.
- CLIP-I: the same with CLIP image embeddings (projected).
- CLIP-T: cosine similarity between the CLIP embeddings of the prompt's text (each entity written
  as its class noun) and of the generated image.

Models load from hub ids or local directories through transformers (no remote code); "tiny"
builds random-weight models of the same families for tests (their scores mean nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from PIL import Image

if TYPE_CHECKING:
    from unimo_g_apps.evaluation.evaluate import MetricModelsConfig

TINY = "tiny"
TINY_IMAGE_SIZE = 32


class MetricModels:
    """DINO and CLIP behind three calls returning L2-normalised embeddings `(N, E)` float32."""

    def __init__(self, dino, dino_processor, clip, clip_processor, tokenizer, device: torch.device, batch_size: int):
        self.dino, self.dino_processor = dino.eval().to(device), dino_processor
        self.clip, self.clip_processor, self.tokenizer = clip.eval().to(device), clip_processor, tokenizer
        self.device, self.batch_size = device, batch_size

    def _batched(self, items: Sequence, embed) -> torch.Tensor:
        chunks = [embed(items[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
        features = torch.cat(chunks).float()
        return torch.nn.functional.normalize(features, dim=-1)

    @torch.no_grad()
    def dino_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        def embed(chunk):
            pixels = self.dino_processor([im.convert("RGB") for im in chunk], return_tensors="pt")["pixel_values"]
            return self.dino(pixel_values=pixels.to(self.device)).last_hidden_state[:, 0]  # (n, D) [CLS]

        return self._batched(images, embed)

    @torch.no_grad()
    def clip_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        def embed(chunk):
            pixels = self.clip_processor([im.convert("RGB") for im in chunk], return_tensors="pt")["pixel_values"]
            return _embeds(self.clip.get_image_features(pixel_values=pixels.to(self.device)))

        return self._batched(images, embed)

    @torch.no_grad()
    def clip_texts(self, texts: Sequence[str]) -> torch.Tensor:
        def embed(chunk):
            tokens = self.tokenizer(list(chunk), padding=True, truncation=True, return_tensors="pt",
                                    max_length=self.clip.config.text_config.max_position_embeddings)
            tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
            return _embeds(self.clip.get_text_features(**tokens))

        return self._batched(texts, embed)


def _embeds(output) -> torch.Tensor:
    """The projected embeddings of `get_*_features` (a tensor, or an output object in newer releases)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of rows of L2-normalised `a (N, E)` and `b (M, E)`."""
    return float((a @ b.T).mean())


def paired_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine similarity of row i of `a` with row i of `b` (both `(N, E)`, L2-normalised)."""
    return float((a * b).sum(-1).mean())


def build_metric_models(config: MetricModelsConfig, device: torch.device | str = "cpu") -> MetricModels:
    device = torch.device(device)
    if config.dino == TINY:
        dino, dino_processor = _tiny_dino(config.seed)
    else:
        from transformers import AutoImageProcessor, ViTModel

        dino = ViTModel.from_pretrained(config.dino, add_pooling_layer=False, trust_remote_code=False)
        dino_processor = AutoImageProcessor.from_pretrained(config.dino, trust_remote_code=False)
    if config.clip == TINY:
        clip, clip_processor, tokenizer = _tiny_clip(config.seed)
    else:
        from transformers import AutoProcessor, CLIPModel

        clip = CLIPModel.from_pretrained(config.clip, trust_remote_code=False)
        processor = AutoProcessor.from_pretrained(config.clip, trust_remote_code=False)
        clip_processor, tokenizer = processor.image_processor, processor.tokenizer
    return MetricModels(dino, dino_processor, clip, clip_processor, tokenizer, device, config.batch_size)


def _seeded(seed: int, make):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make().eval()


def _tiny_processor():
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": TINY_IMAGE_SIZE},
                                 crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE})


def _tiny_dino(seed: int):
    """A random ViT of DINO's layout (patch 16, [CLS] token) at 32 pixels."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=TINY_IMAGE_SIZE, patch_size=16)
    return _seeded(seed, lambda: ViTModel(config, add_pooling_layer=False)), _tiny_processor()


def _tiny_clip(seed: int):
    """A random CLIP (text and vision towers, projections) with the offline tiny tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    from unimo_g.models.tiny_vlm import build_tokenizer

    tokenizer = build_tokenizer(["[PAD]", "[UNK]", "<s>"], bos_token="<s>")
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=TINY_IMAGE_SIZE, patch_size=16)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    return _seeded(seed, lambda: CLIPModel(config)), _tiny_processor(), tokenizer
