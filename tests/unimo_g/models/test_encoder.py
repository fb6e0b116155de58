import dataclasses

import pytest
import torch
from PIL import Image

from unimo_g.models.encoder import (
    ENCODER_BUILDERS,
    ENCODER_FAMILIES,
    EncodedPrompt,
    EncoderConfig,
    MultimodalEncoder,
    build_encoder,
)
from unimo_g.records import PromptPart

TOKENS_PER_IMAGE = 16  # tiny models: 32-px images, 16 visual tokens each
RED = Image.new("RGB", (32, 32), (220, 20, 20))
BLUE = Image.new("RGB", (32, 32), (20, 20, 220))
GREEN = Image.new("RGB", (32, 32), (20, 200, 20))


def text(s):
    return PromptPart(text=s)


def ent(k):
    return PromptPart(entity=k)


@pytest.fixture(scope="module", params=ENCODER_FAMILIES)
def encoder(request) -> MultimodalEncoder:
    return build_encoder(EncoderConfig(family=request.param), "cpu")


@pytest.fixture(scope="module")
def llava() -> MultimodalEncoder:
    return build_encoder(EncoderConfig(family="llava"), "cpu")


PROMPTS = [
    (text("a "), ent(0), text(" sleeping on a sofa")),
    (text("a small cat near "), ent(1), text(" and "), ent(0), text(" in a large wooden room today")),
    (text("plain text only"),),
]
IMAGES = [[RED], [RED, BLUE], []]


def test_shapes_and_types(encoder):
    out = encoder(PROMPTS, IMAGES)
    assert isinstance(out, EncodedPrompt)
    batch, length, width = out.hidden.shape
    assert (batch, width) == (3, encoder.hidden_size) and out.hidden.dtype == torch.float32
    assert out.attention_mask.shape == (3, length) and out.attention_mask.dtype == torch.bool
    assert out.entity_tokens.shape == (3, 2, length) and out.entity_tokens.dtype == torch.bool
    assert out.entity_valid.tolist() == [[True, False], [True, True], [False, False]]
    # right padding: every row is a prefix of real tokens; padding positions are zero
    lengths = out.attention_mask.sum(1)
    assert out.attention_mask.tolist() == [[t < int(n) for t in range(length)] for n in lengths]
    assert (out.hidden[~out.attention_mask] == 0).all()
    assert int(lengths.max()) == length
    # visual tokens only at real positions, none where there is no entity
    assert not (out.entity_tokens & ~out.attention_mask[:, None]).any()
    assert out.entity_tokens[0, 0].sum() == TOKENS_PER_IMAGE and out.entity_tokens[1].sum() == 2 * TOKENS_PER_IMAGE


def test_llava_entity_positions_exact(llava):
    """<s> a [16 x img1] and [16 x img0] ...: positions computed from the tokenizer alone."""
    tokenizer = llava.processor.tokenizer
    prompt = (text("a "), ent(1), text(" and "), ent(0), text(" sleeping"))
    out = llava([prompt], [[RED, BLUE]])
    first = len(tokenizer("a").input_ids)  # <s> a
    second = first + TOKENS_PER_IMAGE + len(tokenizer("and", add_special_tokens=False).input_ids)
    expected1 = list(range(first, first + TOKENS_PER_IMAGE))
    expected0 = list(range(second, second + TOKENS_PER_IMAGE))
    assert out.entity_tokens[0, 1].nonzero().flatten().tolist() == expected1
    assert out.entity_tokens[0, 0].nonzero().flatten().tolist() == expected0
    total = second + TOKENS_PER_IMAGE + len(tokenizer("sleeping", add_special_tokens=False).input_ids)
    assert out.attention_mask.sum() == total


def test_entity_tokens_carry_the_right_image(encoder):
    """Entity k's positions hold image k: swapping both the references and the images changes nothing."""
    a = encoder([(text("a "), ent(1), text(" on "), ent(0))], [[RED, BLUE]])
    b = encoder([(text("a "), ent(0), text(" on "), ent(1))], [[BLUE, RED]])
    torch.testing.assert_close(a.hidden, b.hidden, rtol=0, atol=1e-6)
    assert torch.equal(a.entity_tokens[0, 1], b.entity_tokens[0, 0])
    assert torch.equal(a.entity_tokens[0, 0], b.entity_tokens[0, 1])
    # the first slot comes before the second, in order of appearance
    assert a.entity_tokens[0, 1].nonzero().max() < a.entity_tokens[0, 0].nonzero().min()
    # and another image at a slot changes the states at and after it, not before
    c = encoder([(text("a "), ent(1), text(" on "), ent(0))], [[RED, GREEN]])
    start = int(a.entity_tokens[0, 1].nonzero().min())
    torch.testing.assert_close(a.hidden[0, :start], c.hidden[0, :start], rtol=0, atol=1e-6)
    assert not torch.allclose(a.hidden[0, start:], c.hidden[0, start:], atol=1e-4)


def test_batched_equals_unbatched(encoder):
    batched = encoder(PROMPTS, IMAGES)
    for b, (prompt, images) in enumerate(zip(PROMPTS, IMAGES)):
        alone = encoder([prompt], [images])
        length = alone.hidden.shape[1]
        assert int(batched.attention_mask[b].sum()) == length
        torch.testing.assert_close(batched.hidden[b, :length], alone.hidden[0], rtol=0, atol=1e-5)
        k = alone.entity_tokens.shape[1]
        assert torch.equal(batched.entity_tokens[b, :k, :length], alone.entity_tokens[0])
        assert not batched.entity_tokens[b, k:].any()


def test_text_only_batch_has_no_entities(encoder):
    out = encoder([(text("a dog on a sofa"),), (text("two cats"),)], [[], []])
    assert out.entity_tokens.shape == (2, 0, out.hidden.shape[1])
    assert out.entity_valid.shape == (2, 0)


def test_unreferenced_image_is_not_valid(llava):
    out = llava([(text("a "), ent(1), text(" alone"))], [[RED, BLUE]])
    assert out.entity_valid.tolist() == [[False, True]]


def test_frozen(llava):
    assert all(not p.requires_grad for p in llava.parameters())
    parent = torch.nn.ModuleDict({"encoder": llava, "head": torch.nn.Linear(2, 2)})
    parent.train()
    assert not llava.training and not llava.vlm.training and parent["head"].training
    out = llava(PROMPTS[:1], IMAGES[:1])
    assert not out.hidden.requires_grad


def test_tiny_build_is_deterministic_and_seeded():
    a = build_encoder(EncoderConfig(family="llava", seed=3), "cpu").state_dict()
    torch.manual_seed(123)  # the global RNG does not matter
    b = build_encoder(EncoderConfig(family="llava", seed=3), "cpu").state_dict()
    c = build_encoder(EncoderConfig(family="llava", seed=4), "cpu").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_save_and_load_round_trip(encoder, tmp_path):
    encoder.save_pretrained(tmp_path)
    loaded = build_encoder(dataclasses.replace(encoder.config, model=str(tmp_path)), "cpu")
    assert type(loaded) is type(encoder)
    assert loaded.processor.tokenizer.padding_side == "right"
    a, b = encoder(PROMPTS, IMAGES), loaded(PROMPTS, IMAGES)
    assert torch.equal(a.hidden, b.hidden) and torch.equal(a.entity_tokens, b.entity_tokens)


def test_max_length_cuts_after_the_forward(llava):
    full = llava(PROMPTS[1:2], IMAGES[1:2])
    cut_at = int(full.entity_tokens[0, 0].nonzero().min()) + 3  # inside entity 0's tokens
    short = build_encoder(EncoderConfig(family="llava", max_length=cut_at), "cpu")
    out = short(PROMPTS[1:2], IMAGES[1:2])
    assert out.hidden.shape[1] == cut_at
    torch.testing.assert_close(out.hidden[0], full.hidden[0, :cut_at], rtol=0, atol=1e-6)
    assert out.entity_tokens[0, 0].sum() == 3 and out.entity_valid.tolist() == [[True, True]]
    tiny = build_encoder(EncoderConfig(family="llava", max_length=2), "cpu")
    assert tiny(PROMPTS[1:2], IMAGES[1:2]).entity_valid.tolist() == [[False, False]]


def test_control_tokens_in_text_stay_text(encoder):
    placeholder = type(encoder).image_placeholder
    out = encoder([(text(f"a {placeholder} typed in a caption "), ent(0))], [[RED]])
    assert out.entity_tokens[0, 0].sum() == out.entity_tokens.sum() > 0


def test_qwen2_vl_image_size_sets_token_budget(tmp_path):
    build_encoder(EncoderConfig(family="qwen2_vl"), "cpu").save_pretrained(tmp_path)
    wide = build_encoder(EncoderConfig(family="qwen2_vl", model=str(tmp_path), image_size=64), "cpu")
    out = wide([(ent(0),)], [[RED]])
    assert out.entity_tokens.sum() == (64 // 8) ** 2  # patch 4, 2x2 merge


def test_fixed_size_towers_refuse_another_image_size(llava, tmp_path):
    llava.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        build_encoder(EncoderConfig(family="llava", model=str(tmp_path), image_size=64), "cpu")


def test_bad_inputs_raise(llava):
    with pytest.raises(ValueError, match="entity 2"):
        llava([(ent(2),)], [[RED]])
    with pytest.raises(ValueError, match="one entity-image list per prompt"):
        llava([(text("a"),)], [])
    with pytest.raises(ValueError, match="empty"):
        llava([(text("  "),)], [[]])


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"family": "blip"}, "family"),
        ({"model": ""}, "model"),
        ({"max_length": 0}, "max_length"),
        ({"dtype": "fp8"}, "dtype"),
        ({"image_size": 4}, "image_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        EncoderConfig(**changes)


def test_layer_out_of_range():
    with pytest.raises(ValueError, match="layer"):
        build_encoder(EncoderConfig(family="llava", layer=3), "cpu")  # 2 layers: hidden_states[0..2]


def test_registry_covers_every_family():
    assert set(ENCODER_BUILDERS) == set(ENCODER_FAMILIES)


def test_prompts_are_encoded_in_one_call_per_image_count(llava, monkeypatch):
    calls = []
    encode = llava._encode
    monkeypatch.setattr(llava, "_encode", lambda p, i: calls.append(len(p)) or encode(p, i))
    prompts = PROMPTS + [(text("another plain one"),), (ent(0), text(" alone"))]
    images = IMAGES + [[], [GREEN]]
    out = llava(prompts, images)
    assert sorted(calls) == [1, 2, 2]  # 2 images: 1 prompt; 1 image: 2; none: 2
    single = encode(prompts, images)  # everything in one call, padded to the longest
    assert out.hidden.shape == single.hidden.shape and torch.equal(out.attention_mask, single.attention_mask)
    assert torch.equal(out.entity_tokens, single.entity_tokens)
    torch.testing.assert_close(out.hidden, single.hidden, rtol=0, atol=1e-5)
    calls.clear()
    llava(PROMPTS[2:] * 3, IMAGES[2:] * 3)
    assert calls == [3]
