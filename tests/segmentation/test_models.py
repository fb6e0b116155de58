import dataclasses

import pytest
import torch

from segmentation.models import (
    SegmentationModel,
    load_segmentation_model,
    tiny_sam_processor,
)
from unimo_g.pipeline_config import ModelRuntimeConfig, SegmentationConfig

TINY = SegmentationConfig(model="tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_model() -> SegmentationModel:
    return load_segmentation_model(TINY)


def test_tiny_model_is_ready_for_inference(tiny_model):
    assert TINY.backend == "transformers"
    assert tiny_model.device == torch.device("cpu") and tiny_model.dtype == torch.float32
    assert not tiny_model.model.training
    assert all(not p.requires_grad for p in tiny_model.model.parameters())
    vision = tiny_model.model.config.vision_config
    prompt = tiny_model.model.config.prompt_encoder_config
    canvas = tiny_model.processor.image_processor.pad_size
    assert vision.image_size == prompt.image_size == canvas["height"] == canvas["width"] <= 256
    assert tiny_model.processor.image_processor.size["longest_edge"] == vision.image_size


def test_tiny_weights_follow_the_seed_and_leave_the_global_rng_alone(tiny_model):
    state = torch.random.get_rng_state()
    again = load_segmentation_model(TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    other = load_segmentation_model(dataclasses.replace(TINY, seed=1))
    ours, same, different = (m.model.state_dict() for m in (tiny_model, again, other))
    assert all(torch.equal(ours[k], same[k]) for k in ours)
    assert not all(torch.equal(ours[k], different[k]) for k in ours)


def test_local_directory_loads_through_from_pretrained(tiny_model, tmp_path):
    tiny_model.model.save_pretrained(tmp_path)
    tiny_model.processor.save_pretrained(tmp_path)
    loaded = load_segmentation_model(dataclasses.replace(TINY, model=str(tmp_path)))
    ours, theirs = tiny_model.model.state_dict(), loaded.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert loaded.processor.image_processor.pad_size == tiny_model.processor.image_processor.pad_size


def test_bf16_runtime_casts_the_model():
    model = load_segmentation_model(dataclasses.replace(TINY, runtime=ModelRuntimeConfig(dtype="bf16")))
    assert model.dtype == torch.bfloat16
    assert {p.dtype for p in model.model.parameters()} == {torch.bfloat16}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where there is no GPU")
def test_cuda_without_a_gpu_raises_instead_of_falling_back():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        load_segmentation_model(dataclasses.replace(TINY, runtime=ModelRuntimeConfig(device="cuda")))


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="'mmseg'"):
        load_segmentation_model(dataclasses.replace(TINY, backend="mmseg"))


def test_processor_without_a_fixed_canvas_is_refused(tmp_path, tiny_model):
    processor = tiny_sam_processor()
    processor.image_processor.do_pad = False
    tiny_model.model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="do_pad"):
        load_segmentation_model(dataclasses.replace(TINY, model=str(tmp_path)))


# ---- full-size random-weight preset (dimensions only: never run here)


def test_sam_vit_base_preset_has_the_published_dimensions():
    from segmentation.models import sam_vit_base_config

    config = sam_vit_base_config()
    vision = config.vision_config
    dims = (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads, vision.mlp_dim)
    assert dims == (768, 12, 12, 3072)
    assert (vision.image_size, vision.patch_size, vision.window_size) == (1024, 16, 14)
    assert list(vision.global_attn_indexes) == [2, 5, 8, 11] and vision.output_channels == 256
    assert vision.initializer_range == 0.02  # not SAM's 1e-10: no subnormal random weights
    assert config.prompt_encoder_config.image_size == 1024 and config.mask_decoder_config.hidden_size == 256


def test_sam_vit_base_preset_has_94m_parameters_on_the_meta_device():
    from transformers import SamModel

    from segmentation.models import sam_vit_base_config

    with torch.device("meta"):
        model = SamModel(sam_vit_base_config())
    assert 93e6 < sum(p.numel() for p in model.parameters()) < 94.5e6  # facebook/sam-vit-base: 93.7M
    assert 89e6 < sum(p.numel() for p in model.vision_encoder.parameters()) < 90e6  # ViT-B


def test_sam_vit_base_preset_uses_the_published_processor_settings():
    from segmentation.models import RANDOM_PRESETS, SAM_VIT_BASE_MODEL, sam_vit_base_processor

    image_processor = sam_vit_base_processor().image_processor
    assert image_processor.size["longest_edge"] == 1024
    assert dict(image_processor.pad_size) == {"height": 1024, "width": 1024}
    assert image_processor.mask_size["longest_edge"] == 256
    assert image_processor.do_pad  # one canvas: batching is exact
    assert set(RANDOM_PRESETS) == {TINY.model, SAM_VIT_BASE_MODEL}
