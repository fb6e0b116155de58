"""Filter rules: parsing, evaluation, presets and the `filters` config section."""

from dataclasses import dataclass
from typing import Optional

import pytest

from unimo_g.config_tools import ConfigError, from_dict, parse_overrides
from unimo_g.filters import PRESETS, RuleError, failure_detail, first_failure, parse_rule, passes
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.provenance import Provenance


@dataclass(frozen=True)
class Element:
    provenance: Provenance
    computed_similarity: Optional[float] = None


def _config(*overrides):
    return from_dict(PipelineConfig, parse_overrides(overrides))


@pytest.mark.parametrize("text, value, expected", [
    ("aesthetic > 6.5", 6.6, True), ("aesthetic > 6.5", 6.5, False), ("aesthetic >= 6.5", 6.5, True),
    ("punsafe < 0.5", 0.49, True), ("punsafe <= 0.5", 0.51, False),
    ("nsfw in [UNLIKELY, UNSURE]", "UNSURE", True), ("nsfw in [UNLIKELY, UNSURE]", "NSFW", False),
    ("nsfw not in [NSFW]", "UNLIKELY", True), ("nsfw == UNLIKELY", "UNLIKELY", True), ("nsfw != NSFW", "NSFW", False),
    ("license != null", "cc0", True), ("license != null", None, False), ("license == null", None, True),
    ("source_metadata.n > 3", "many", False),  # a string never passes an ordering
    ("original_width == 512", 512, True),
])  # fmt: skip
def test_rules(text, value, expected):
    assert passes(parse_rule(text), value) is expected


def test_missing_policy_per_rule_and_default():
    assert passes(parse_rule("aesthetic > 6.5"), None) is True
    assert passes(parse_rule("aesthetic > 6.5"), None, default_missing="reject") is False
    assert passes(parse_rule("aesthetic > 6.5 ; missing=reject"), None) is False
    assert passes(parse_rule("aesthetic > 6.5 ; missing=keep"), None, default_missing="reject") is True


def test_values_from_provenance_metadata_and_computed_scores():
    element = Element(Provenance(aesthetic=7.0, source_metadata=(("LANGUAGE", '"en"'), ("n", "3"))), 0.2)
    rules = [parse_rule(t) for t in ("aesthetic > 6.5", "source_metadata.LANGUAGE == en", "source_metadata.n >= 3",
                                     "source_metadata.absent == null", "computed_similarity > 0.3")]
    rule, value = first_failure(element, rules)
    assert (rule.token, value) == ("filter:computed_similarity.gt", 0.2)
    assert failure_detail(rule, value) == "computed_similarity=0.2 fails 'computed_similarity > 0.3'"
    assert first_failure(element, rules[:4]) is None


def test_tokens_are_short_and_stable():
    assert parse_rule("aesthetic > 6.5").token == parse_rule("aesthetic>7").token == "filter:aesthetic.gt"
    assert parse_rule("nsfw not in [NSFW]").token == "filter:nsfw.not_in"
    assert parse_rule("source_metadata.LANGUAGE == en").token == "filter:source_metadata.LANGUAGE.eq"


@pytest.mark.parametrize("text", ["aesthetic", "aesthetic ~ 3", "colour > 3", "aesthetic > high", "nsfw in UNSURE",
                                  "nsfw in []", "aesthetic > null", "punsafe < 0.5 ; missing=maybe", "aesthetic > .nan",
                                  "license == yes"])
def test_malformed_rules_are_errors_naming_them(text):
    with pytest.raises(RuleError, match="filter rule"):
        parse_rule(text)
    with pytest.raises(ConfigError, match="filters"):
        from_dict(PipelineConfig, {"filters": {"rules": [text]}})


def test_config_section_set_presets_and_split():
    config = _config("filters.rules=[aesthetic > 6.5, computed_aesthetic >= 5, 'nsfw in [UNLIKELY]']",
                     "filters.missing=reject")
    assert [r.text for r in config.filters.input_rules] == ["aesthetic > 6.5", "nsfw in [UNLIKELY]"]
    assert [r.text for r in config.filters.computed_rules] == ["computed_aesthetic >= 5"]
    paper = _config("filters.preset=paper").filters
    assert [r.text for r in paper.parsed_rules] == ["aesthetic > 6.5", "similarity > 0.5"]
    safe = _config("filters.preset=laion_safe").filters
    assert {r.field for r in safe.input_rules} == {"punsafe", "pwatermark", "nsfw"}
    assert all(r.missing == "keep" for r in safe.parsed_rules) and set(PRESETS) == {"paper", "laion_safe"}
    with pytest.raises(ConfigError, match="filters.preset"):
        _config("filters.preset=strict")
    with pytest.raises(ConfigError, match="filter:aesthetic.gt"):  # one reason must name one rule
        _config("filters.rules=[aesthetic > 5, aesthetic > 6]")
    with pytest.raises(ConfigError, match="filters.missing"):
        _config("filters.missing=drop")
