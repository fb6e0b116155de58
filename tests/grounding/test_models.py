import dataclasses

import numpy as np
import pytest
import torch
from transformers import GroundingDinoProcessor

from grounding.detect import ground_batch
from grounding.models import GROUNDING_BACKENDS, fixed_canvas, load_grounding_model
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
    assert tiny.canvas == (192, 192)


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
    assert loaded.canvas == tiny.canvas and loaded.name == str(tmp_path)
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
    assert "transformers" in GROUNDING_BACKENDS


def test_text_limit_beyond_the_model_raises():
    with pytest.raises(ValueError, match="max_text_len=300"):
        load_grounding_model(dataclasses.replace(TINY, max_text_len=300))


def test_fixed_canvas():
    size = {"shortest_edge": 800, "longest_edge": 1333}
    assert fixed_canvas(size, None) == (size, (1333, 1333))
    assert fixed_canvas(size, 512) == ({"shortest_edge": 512, "longest_edge": 512}, (512, 512))
    assert fixed_canvas({"height": 224, "width": 320}, None) == ({"height": 224, "width": 320}, (224, 320))
    with pytest.raises(ValueError, match="pad_size=256"):
        fixed_canvas({"height": 224, "width": 320}, 256)
