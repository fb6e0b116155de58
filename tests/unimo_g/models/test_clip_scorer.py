"""CLIP scores on a tiny random-weight CLIP: preprocessing, cosine, truncation, aesthetic heads."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save
from transformers import CLIPProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from unimo_g.models.aesthetic_head import LAION_MLP, LINEAR, HeadError, head_layout, load_head
from unimo_g.models.clip_scorer import (
    byte_level_tokenizer,
    embed_images,
    load_clip_scorer,
    preprocess_images,
    score_batch,
    tokenize,
)
from unimo_g.pipeline_config import ExcludeConfig, PipelineConfig, ScoresConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scorer():
    return load_clip_scorer(ScoresConfig(enabled=True, model="tiny"))


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size, dtype=np.uint8) for size in ((40, 71, 3), (97, 33, 3), (64, 64, 3))]


@pytest.mark.parametrize("processor", [CLIPImageProcessorPil(), None], ids=["openai-224", "tiny-32"])
def test_batched_preprocessing_equals_the_clip_processor_for_non_square_images(scorer, processor):
    # CLIPImageProcessorPil() holds OpenAI's settings (shortest edge 224, bicubic, centre crop, CLIP mean/std)
    used = replace(scorer, image_processor=processor or scorer.image_processor)
    published = CLIPProcessor(image_processor=used.image_processor, tokenizer=byte_level_tokenizer())
    images = _images()
    batched = preprocess_images(used, images)
    for i, image in enumerate(images):
        alone = published(images=image, return_tensors="pt")["pixel_values"]
        assert batched.shape[1:] == alone.shape[1:] and batched.shape[2] == batched.shape[3]
        assert torch.equal(batched[i : i + 1], alone)


def _reference_cosine(scorer, image: np.ndarray, caption: str) -> float:
    """The cosine computed independently: towers and projections called directly, no padding."""
    model = scorer.model
    with torch.no_grad():
        pixels = CLIPProcessor(image_processor=scorer.image_processor, tokenizer=scorer.tokenizer)(
            images=image, return_tensors="pt")["pixel_values"]
        image_features = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        ids = scorer.tokenizer(caption, truncation=True, max_length=77, return_tensors="pt")["input_ids"]
        text_features = model.text_projection(model.text_model(input_ids=ids).pooler_output)
    return float(torch.nn.functional.cosine_similarity(image_features, text_features)[0])


def test_similarity_is_the_cosine_of_the_image_and_its_caption(scorer):
    images = _images()
    captions = ["a tabby cat with green eyes", "a cup of espresso on a red saucer with a spoon", "a rocket"]
    similarity, aesthetic, embeddings = score_batch(scorer, images, captions)
    assert aesthetic is None and embeddings.shape == (3, scorer.embed_dim)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)
    for image, caption, value in zip(images, captions, similarity):
        assert value == pytest.approx(_reference_cosine(scorer, image, caption), abs=1e-5)
    # a caption padded beside a longer one scores as it does alone
    alone, _, _ = score_batch(scorer, images[2:], captions[2:])
    assert alone[0] == pytest.approx(similarity[2], abs=1e-6)


def test_image_forward_is_bit_identical_whatever_the_batch(scorer):
    images = _images(1)
    captions = ["a red dog", "a small cat next to a very long wooden table in a kitchen", "two birds"]
    head = load_head(_file(_laion_mlp_state(scorer.embed_dim)), scorer.embed_dim)
    similarity, aesthetic, embeddings = score_batch(scorer, images, captions, head, forward="image")
    for i in range(len(images)):
        alone = score_batch(scorer, images[i : i + 1], captions[i : i + 1], head)
        assert similarity[i] == alone[0][0] and aesthetic[i] == alone[1][0]
        assert np.array_equal(embeddings[i], alone[2][0])
    assert torch.equal(embed_images(scorer, images, forward="image")[1], embed_images(scorer, images[1:2])[0])


def test_captions_are_truncated_to_77_tokens(scorer):
    # about one token per character in the tiny vocabulary: this caption has ~300 tokens
    long_caption = "a dog on the grass " * 16
    ids = tokenize(scorer, [long_caption, "a cat"])["input_ids"]
    assert ids.shape == (2, 77) and int(ids[0, -1]) == scorer.tokenizer.eos_token_id
    image = _images()[:1]
    full, _, _ = score_batch(scorer, image, [long_caption])
    same_start, _, _ = score_batch(scorer, image, [long_caption + "and a red ball in the far corner"])
    assert full[0] == same_start[0]  # what lies past the 77th token is not read
    other_start, _, _ = score_batch(scorer, image, ["a cat on the grass " + long_caption])
    assert other_start[0] != full[0]


def _file(state: dict) -> bytes:
    return save({key: value.contiguous() for key, value in state.items()})


def test_linear_head_scores_the_normalised_image_embedding(scorer):
    generator = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(1, scorer.embed_dim, generator=generator), torch.tensor([5.0])
    head = load_head(_file({"weight": weight, "bias": bias}), scorer.embed_dim)
    images = _images()
    _, aesthetic, _ = score_batch(scorer, images, ["a", "b", "c"], head)
    expected = (embed_images(scorer, images) @ weight.T + bias).reshape(-1)
    assert np.allclose(aesthetic, expected.numpy(), atol=1e-5)


def _laion_mlp_state(embed_dim: int, seed: int = 2) -> dict:
    generator = torch.Generator().manual_seed(seed)
    widths = [embed_dim, 1024, 128, 64, 16, 1]
    state = {}
    for index, (a, b) in zip((0, 2, 4, 6, 7), zip(widths, widths[1:])):
        state[f"layers.{index}.weight"] = torch.randn(b, a, generator=generator) / a ** 0.5
        state[f"layers.{index}.bias"] = torch.randn(b, generator=generator)
    return state


def test_laion_mlp_head_is_the_chain_of_its_linears(scorer):
    state = _laion_mlp_state(scorer.embed_dim)
    assert head_layout(state) == LAION_MLP
    assert head_layout({"weight": torch.zeros(1, 8), "bias": torch.zeros(1)}) == LINEAR
    head = load_head(_file(state), scorer.embed_dim)
    images = _images()
    _, aesthetic, _ = score_batch(scorer, images, ["a", "b", "c"], head)
    x = embed_images(scorer, images)
    for index in (0, 2, 4, 6, 7):  # no activations between the layers, dropout off at inference
        x = x @ state[f"layers.{index}.weight"].T + state[f"layers.{index}.bias"]
    assert np.allclose(aesthetic, x.reshape(-1).numpy(), atol=1e-4)


def test_a_head_of_the_wrong_width_or_layout_is_a_clear_error(scorer):
    with pytest.raises(HeadError, match="reads 768-wide embeddings but the CLIP model gives 32-wide"):
        load_head(_file(_laion_mlp_state(768)), scorer.embed_dim)
    with pytest.raises(HeadError, match="reads 768-wide"):
        load_head(_file({"weight": torch.zeros(1, 768), "bias": torch.zeros(1)}), scorer.embed_dim)
    bad_mlp = _laion_mlp_state(scorer.embed_dim)
    bad_mlp["layers.2.weight"] = torch.zeros(64, 1024)
    with pytest.raises(HeadError, match=r"layers.2 has the keys .* not its shapes"):
        load_head(_file(bad_mlp), scorer.embed_dim)
    with pytest.raises(HeadError, match=r"found fc.bias \(1,\), fc.weight \(1, 32\)"):
        load_head(_file({"fc.weight": torch.zeros(1, 32), "fc.bias": torch.zeros(1)}), scorer.embed_dim)
    pickled = io.BytesIO()
    torch.save({"weight": torch.zeros(1, 32), "bias": torch.zeros(1)}, pickled)
    with pytest.raises(HeadError, match="not a safetensors file"):
        load_head(pickled.getvalue(), scorer.embed_dim)


def test_clip_cosine_exclusion_needs_the_score_stage():
    exclude = ExcludeConfig(images=("/eval",), clip_cosine=0.95)
    with pytest.raises(ValueError, match="set scores.enabled"):
        PipelineConfig(exclude=exclude)
    assert PipelineConfig(exclude=exclude, scores=ScoresConfig(enabled=True)).random_weights is False
    assert PipelineConfig(scores=ScoresConfig(enabled=True, model="tiny")).random_weights is True
    with pytest.raises(ValueError, match="scores.forward must be image or batch"):
        ScoresConfig(forward="canvas")
    with pytest.raises(ValueError, match="scores.enabled must be true or false"):
        ScoresConfig(enabled="off")
