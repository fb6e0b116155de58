import pytest

from unimo_g.captions import clean_caption, escape_markers, has_marker, normalize_caption
from unimo_g.pipeline_config import CaptionConfig
from unimo_g.prompt import compose_prompt
from unimo_g.records import PromptPart
from unimo_g.schema import parse_prompt_text, prompt_text

WEB = "a &lt;b&gt;cup&lt;/b&gt; of coffee &amp; <br/> cake\x07 on &amp;lt;i&amp;gt;the\u00a0\ttable  "


def test_normalisation_removes_markup_and_controls():
    assert normalize_caption(WEB) == "a cup of coffee & cake on the table"
    assert normalize_caption("x <!-- hidden --> y\x00z") == "x yz"
    assert normalize_caption("1 < 2 and 3 > 2") == "1 < 2 and 3 > 2"  # not tags
    assert normalize_caption("caf\u00e9 \U0001F436 dog") == "caf\u00e9 \U0001F436 dog"


def test_normalisation_is_on_by_default_and_can_be_turned_off():
    assert CaptionConfig().normalize is True
    assert clean_caption(WEB, CaptionConfig()) == "a cup of coffee & cake on the table"
    assert clean_caption(WEB, CaptionConfig(normalize=False)) == WEB
    with pytest.raises(ValueError, match="captions.normalize"):
        CaptionConfig(normalize="off")


@pytest.mark.parametrize("normalize", [True, False])
def test_literal_markers_never_reach_prompt_text(normalize):
    caption = clean_caption("a <img>0</img> sticker and </IMG> a dog <img> cat", CaptionConfig(normalize=normalize))
    assert not has_marker(caption)
    start = caption.index("dog")
    prompt = compose_prompt(caption, [(start, start + 3, 0)])
    text = prompt_text(prompt)
    assert text.count("<img>") == 1
    assert parse_prompt_text(text) == [{"text": p.text, "entity": p.entity} for p in prompt]  # round trip


def test_round_trip_of_rendered_prompts():
    prompt = (PromptPart(entity=0), PromptPart(text=" holding his "), PromptPart(entity=1), PromptPart(text=", <b>"))
    text = prompt_text(prompt)
    assert text == "<img>0</img> holding his <img>1</img>, <b>"
    assert parse_prompt_text(text) == [{"text": p.text, "entity": p.entity} for p in prompt]
    with pytest.raises(ValueError, match="marker"):
        prompt_text([PromptPart(text="a <img>3</img> b")])
    assert escape_markers("<Img>x</img>") == "&lt;img&gt;x&lt;/img&gt;"
