"""A Qwen2-VL processor for images and text only.

transformers' `Qwen2VLProcessor` also builds a video processor, which needs torchvision; the
entity prompts hold no video, so this subclass leaves it out. Everything else (the image
processor, `<|image_pad|>` expansion by `image_grid_thw`, tokenization) is the library's own.
"""

from __future__ import annotations

from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin


class Qwen2VLImageProcessor(Qwen2VLProcessor):
    """`Qwen2VLProcessor` without the video processor (loads a hub/local Qwen2-VL processor dir too)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        kwargs.pop("video_processor", None)
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
