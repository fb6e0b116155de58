"""Processors of vision-language families for images and text only.

transformers' LLaVA-OneVision processor, like Qwen2-VL's, also builds a video processor, which needs
torchvision (not a dependency, docs/design.md); entity prompts hold no video, so this subclass leaves
it out, as `unimo_g.models.qwen2_vl_processor` does for Qwen2-VL (whose subclass serves Qwen2.5-VL
too: their image processing and image tokens are the same). Everything else is the library's own.
"""

from __future__ import annotations

from transformers.models.llava_onevision.processing_llava_onevision import LlavaOnevisionProcessor
from transformers.processing_utils import ProcessorMixin


class LlavaOnevisionImageProcessor(LlavaOnevisionProcessor):
    """`LlavaOnevisionProcessor` without the video processor (loads a hub/local processor dir too)."""

    def __init__(self, image_processor=None, tokenizer=None, num_image_tokens=None,
                 vision_feature_select_strategy=None, chat_template=None, image_token="<image>",
                 video_token="<video>", vision_aspect_ratio="anyres_max_9", **kwargs):
        kwargs.pop("video_processor", None)
        self.num_image_tokens = num_image_tokens
        self.vision_feature_select_strategy = vision_feature_select_strategy
        self.image_token = getattr(tokenizer, "image_token", None) or image_token
        self.video_token = getattr(tokenizer, "video_token", None) or video_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        self.vision_aspect_ratio = vision_aspect_ratio
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
