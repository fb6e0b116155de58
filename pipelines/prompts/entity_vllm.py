"""`entities.backend: vllm`: the entity model served by vLLM through Beam's vLLM model handler.

Beam's `VLLMChatModelHandler` starts a vLLM OpenAI-compatible server on the worker (one per
machine: the handler shares it across SDK processes) and sends each chat to it; vLLM batches
requests continuously on the GPU, the throughput option for large runs. The requests are the
same chats as the transformers backend's, greedy (`temperature` 0) with `max_tokens` =
`entities.max_new_tokens` and the seed; an mllm's image travels as a PNG data URL. The server
applies the checkpoint's own chat template. Needs `pip install vllm openai` on GPU workers;
without them the stage fails when the model loads, naming them.
"""

from __future__ import annotations

import base64
import io
from typing import Optional

import numpy as np

from grounding.entity_lists import replies_with_retry
from grounding.entity_models import fit_image
from unimo_g.pipeline_config import EntitiesConfig

VLLM_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def image_url(pixels: np.ndarray, max_side: int) -> str:
    """The image as a PNG data URL (shrunk as for the transformers backend)."""
    buffer = io.BytesIO()
    fit_image(pixels, max_side).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_chat(chat: list[dict], image: Optional[str]) -> list[dict]:
    """Our chat (image parts as {"type": "image"}) in the OpenAI format, the image as `image_url`."""
    converted = []
    for message in chat:
        content = message["content"]
        if not isinstance(content, str):
            content = [{"type": "image_url", "image_url": {"url": image}} if part["type"] == "image" else part
                       for part in content]
        converted.append({"role": message["role"], "content": content})
    return converted


def server_kwargs(config: EntitiesConfig) -> dict[str, Optional[str]]:
    """Flags of `vllm serve` (Beam appends them as --key value)."""
    kwargs = {"seed": str(config.seed), "dtype": VLLM_DTYPES[config.runtime.dtype]}
    if config.revision:
        kwargs["revision"] = config.revision
    return kwargs


class VllmEntityRunner:
    """The vLLM server of this worker, with the call the entity handler makes (`reply`)."""

    def __init__(self, config: EntitiesConfig):
        try:
            from apache_beam.ml.inference.vllm_inference import OpenAIChatMessage, VLLMChatModelHandler
        except ImportError as err:
            raise ImportError(f"entities.backend vllm needs the vllm and openai packages on the workers "
                              f"(pip install vllm openai): {err}") from err
        if config.runtime.device == "cpu":
            raise ValueError("entities.backend vllm serves the model on a GPU: set entities.runtime.device to cuda")
        self._config = config
        self._message = OpenAIChatMessage
        self._handler = VLLMChatModelHandler(config.model_id, vllm_server_kwargs=server_kwargs(config))
        self._server = self._handler.load_model()

    def _generate(self, chats: list[list[dict]], images: Optional[list]) -> list[str]:
        side = self._config.max_image_side
        urls = [image_url(p, side) for p in images] if images is not None else [None] * len(chats)
        batch = [[self._message(m["role"], m["content"]) for m in openai_chat(chat, url)]
                 for chat, url in zip(chats, urls, strict=True)]
        args = {"temperature": 0.0, "max_tokens": self._config.max_new_tokens, "seed": self._config.seed}
        results = self._handler.run_inference(batch, self._server, args)
        return [result.inference.choices[0].message.content or "" for result in results]

    def reply(self, captions: list[str], images: Optional[list]) -> list[tuple[str, ...]]:
        return replies_with_retry(self._generate, self._config, captions, images)
