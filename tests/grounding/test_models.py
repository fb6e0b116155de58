import dataclasses

import numpy as np
import pytest
import torch
from transformers import GroundingDinoProcessor

from grounding.detect import ground_batch
from grounding.models import canvas_buckets, canvas_for, load_grounding_model
from grounding.tiny import FIXED_IDS, tiny_vocab
from unimo_g.pipeline_config import GroundingConfig, ModelRuntimeConfig
from unimo_g.records import Phrase

TINY = GroundingConfig(
    model="tiny", min_box_area_ratio=0.0, max_box_area_ratio=1.0, box_threshold=0.0, text_threshold=0.0
)


@pytest.fixture(scope="module")
def tiny():
    return load_grounding_model(TINY)


def test_tiny_model_is_small_eval_and_on_cpu(tiny):
    assert not tiny.model.training
    assert tiny.device == torch.device("cpu") and tiny.dtype == torch.float32
    assert tiny.model.config.decoder_layers >= 2
    assert sum(p.numel() for p in tiny.model.parameters()) < 2_000_000
    assert tiny.canvases == ((128, 128), (128, 171), (171, 128), (128, 192), (192, 128))


def test_tiny_vocab_places_the_delimiters():
    vocab = tiny_vocab()
    assert {token: vocab.index(token) for token in FIXED_IDS} == FIXED_IDS
    assert len(set(vocab)) == len(vocab)


def test_tiny_tokenizer_splits_any_english_word(tiny):
    tokens = tiny.tokenizer.tokenize("a xylophone . Zebras ?")
    assert "[UNK]" not in tokens and tokens[0] == "a" and tokens[-1] == "?"
    assert tiny.tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", ".", "?"]) == [101, 102, 1012, 1029]


def test_seed_fixes_the_weights(tiny):
    again = load_grounding_model(TINY)
    other = load_grounding_model(dataclasses.replace(TINY, seed=1))
    pairs = list(zip(tiny.model.state_dict().values(), again.model.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in pairs)
    others = zip(tiny.model.state_dict().values(), other.model.state_dict().values())
    assert not all(torch.equal(a, b) for a, b in others)


def test_local_directory_round_trip(tiny, tmp_path):
    GroundingDinoProcessor(image_processor=tiny.image_processor, tokenizer=tiny.tokenizer).save_pretrained(tmp_path)
    tiny.model.save_pretrained(tmp_path)
    loaded = load_grounding_model(dataclasses.replace(TINY, model=str(tmp_path)))
    assert loaded.canvases == tiny.canvases and loaded.name == str(tmp_path)
    assert type(loaded.image_processor).__name__.endswith("Pil")  # the published (Pillow) preprocessing
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    phrases = [(Phrase("a dog", 0, 5), Phrase("a red ball", 10, 20))]
    assert ground_batch(loaded, [image], phrases, None, TINY) == ground_batch(tiny, [image], phrases, None, TINY)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU case")
def test_cuda_without_gpu_raises_instead_of_falling_back():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        load_grounding_model(dataclasses.replace(TINY, runtime=ModelRuntimeConfig(device="cuda")))


def test_fp16_on_cpu_and_unknown_backend_raise():
    with pytest.raises(ValueError, match="fp16"):
        load_grounding_model(dataclasses.replace(TINY, runtime=ModelRuntimeConfig(dtype="fp16")))
    with pytest.raises(ValueError, match="backend 'onnx'"):
        load_grounding_model(dataclasses.replace(TINY, backend="onnx"))
    assert TINY.backend == "transformers"


def test_text_limit_beyond_the_model_raises():
    with pytest.raises(ValueError, match="max_text_len=300"):
        load_grounding_model(dataclasses.replace(TINY, max_text_len=300))


def test_canvas_buckets_keep_the_published_resize():
    size = {"shortest_edge": 800, "longest_edge": 1333}
    resize, canvases = canvas_buckets(size, (1.0, 4 / 3))
    assert resize == size  # never lowered
    assert canvases == ((800, 800), (800, 1067), (1067, 800), (800, 1333), (1333, 800))
    assert canvas_buckets(size, (1.0,))[1] == ((800, 800), (800, 1333), (1333, 800))
    assert canvas_buckets({"height": 224, "width": 320}, (1.0,)) == ({"height": 224, "width": 320}, ((224, 320),))
    # each resized shape goes to the smallest canvas that holds it
    assert canvas_for(canvases, (800, 800)) == (800, 800)
    assert canvas_for(canvases, (800, 1066)) == (800, 1067)
    assert canvas_for(canvases, (750, 1333)) == (800, 1333)
    assert canvas_for(canvases, (1333, 666)) == (1333, 800)
    with pytest.raises(ValueError, match="no canvas"):
        canvas_for(canvases, (801, 1333))


# ---- full-size random-weight preset (dimensions only: never built with real weights or run here)

GROUNDING_DINO_TINY = {  # IDEA-Research/grounding-dino-tiny's config.json
    "d_model": 256, "encoder_layers": 6, "decoder_layers": 6, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048,
    "encoder_attention_heads": 8, "decoder_attention_heads": 8, "num_queries": 900, "num_feature_levels": 4,
    "encoder_n_points": 4, "decoder_n_points": 4, "max_text_len": 256, "two_stage": True,
}


def test_full_size_preset_has_the_published_dimensions():
    from grounding.tiny import grounding_dino_tiny_config

    config = grounding_dino_tiny_config()
    assert {key: getattr(config, key) for key in GROUNDING_DINO_TINY} == GROUNDING_DINO_TINY
    swin, bert = config.backbone_config, config.text_config
    assert (swin.embed_dim, swin.depths, swin.num_heads, swin.window_size) == (96, [2, 2, 6, 2], [3, 6, 12, 24], 7)
    assert swin.out_features == ["stage2", "stage3", "stage4"]
    assert (bert.vocab_size, bert.hidden_size, bert.num_hidden_layers, bert.num_attention_heads) == (30522, 768, 12, 12)


def test_full_size_preset_has_172m_parameters_on_the_meta_device():
    from transformers import GroundingDinoForObjectDetection

    from grounding.tiny import grounding_dino_tiny_config

    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = GroundingDinoForObjectDetection(grounding_dino_tiny_config())
    assert 170e6 < sum(p.numel() for p in model.parameters()) < 175e6  # the published model: 172M
    assert sum(p.numel() for p in model.model.text_backbone.parameters()) > 108e6  # BERT-base


def test_padded_vocab_keeps_every_tiny_id_and_has_bert_base_size():
    from grounding.tiny import BERT_BASE_VOCAB_SIZE, padded_vocab, tiny_tokenizer

    vocab = padded_vocab(BERT_BASE_VOCAB_SIZE)
    assert len(vocab) == 30522 and len(set(vocab)) == len(vocab)
    assert vocab[: len(tiny_vocab())] == tiny_vocab()
    assert {token: vocab.index(token) for token in FIXED_IDS} == FIXED_IDS
    full, small = tiny_tokenizer(vocab), tiny_tokenizer()
    assert len(full) == 30522
    text = "a brown dog . two cats ?"
    assert full(text)["input_ids"] == small(text)["input_ids"]
    with pytest.raises(ValueError, match="below"):
        padded_vocab(100)


def test_full_size_preset_uses_the_published_processor_settings():
    from grounding.models import RANDOM_MODELS
    from grounding.tiny import RANDOM_PRESETS, grounding_dino_tiny_image_processor

    processor = grounding_dino_tiny_image_processor()
    assert dict(processor.size) == {"shortest_edge": 800, "longest_edge": 1333}
    assert tuple(processor.image_mean) == (0.485, 0.456, 0.406) and processor.do_normalize and processor.do_pad
    assert canvas_buckets(processor.size, (1.0,))[0] == {"shortest_edge": 800, "longest_edge": 1333}
    assert set(RANDOM_MODELS) == set(RANDOM_PRESETS) == {"tiny", "random-grounding-dino-tiny"}


def test_tiny_model_is_random_model_of_the_tiny_config(tiny):
    from grounding.tiny import random_model, tiny_config

    again = random_model(tiny_config(len(tiny_vocab())), TINY.seed)
    assert all(torch.equal(a, b) for a, b in zip(tiny.model.state_dict().values(), again.state_dict().values()))
