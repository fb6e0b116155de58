"""Filter rules on an input's provenance and computed scores: parsing and evaluation.

A rule is a string `FIELD OP VALUE [; missing=keep|reject]`:

- FIELD: a typed provenance field (`license`, `nsfw`, `similarity`, `punsafe`, `pwatermark`,
  `aesthetic`, `original_width`, `original_height`), `source_metadata.<key>` (the key's JSON value),
  or a score computed by the pipeline (`computed_similarity`, `computed_aesthetic`).
- OP: `>`, `>=`, `<`, `<=` (numbers), `==`, `!=`, `in`, `not in` (a list `[a, b]`).
- VALUE: a number, a string (bare or quoted), `null`, or for `in` a list of them (YAML flow syntax).

An input passes a rule when its value satisfies it. A missing value (the field is null, the key
absent) passes or fails by the rule's `missing` policy, else the section default. `== null` and
`!= null` test presence itself (`license != null`: keep only inputs that name a licence). A value
of the wrong kind for an ordering (`source_metadata.lang > 3` on "en") fails the rule.

Each rule names itself in reject reasons by `Rule.token`, `filter:<field>.<op>` (e.g.
`filter:aesthetic.gt`): short and stable whatever the threshold, so counts by reason stay comparable
between runs; the rule text and the value go in the reject's detail.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Optional

import yaml

from unimo_g.provenance import Provenance

TYPED_FIELDS = ("license", "nsfw", "similarity", "punsafe", "pwatermark", "aesthetic", "original_width",
                "original_height")
COMPUTED_FIELDS = ("computed_similarity", "computed_aesthetic")
METADATA_PREFIX = "source_metadata."
MISSING_POLICIES = ("keep", "reject")

_OPS = {">": "gt", ">=": "ge", "<": "lt", "<=": "le", "==": "eq", "!=": "ne", "in": "in", "not in": "not_in"}
_ORDERINGS = (">", ">=", "<", "<=")
_RULE = re.compile(
    r"^\s*(?P<field>[A-Za-z_][\w.\-]*)\s*(?P<op>>=|<=|==|!=|>|<|\bnot\s+in\b|\bin\b)\s*(?P<value>.*?)\s*"
    r"(?:;\s*missing\s*=\s*(?P<missing>\w+)\s*)?$"
)

# Named rule sets (`filters.preset`). Where each comes from:
PRESETS = {
    # UNIMO-G (arXiv:2401.13388) built its instruction-tuning set from image-text pairs with an
    # aesthetic score above 6.5 and a CLIP image-text similarity above 0.5. On the input's columns
    # (LAION's `aesthetic` / `AESTHETIC_SCORE`, `similarity`); inputs without them follow
    # `filters.missing`. For scores this pipeline computes, write the same rules on `computed_*`.
    "paper": ("aesthetic > 6.5", "similarity > 0.5"),
    # LAION's own safety cuts: LAION-Aesthetics / LAION-Art keep `punsafe < 0.5` and
    # `pwatermark < 0.8` (LAION-AI/laion-datasets laion-aesthetic.md; img2dataset
    # dataset_examples/laion-aesthetic.md, laion-art.md); LAION-400M tags each pair `NSFW`,
    # `UNSURE` or `UNLIKELY` (its release notes; img2dataset dataset_examples/laion400m.md saves
    # the `NSFW` column), and the tag `NSFW` is dropped. Stricter published cut-offs exist (Stable
    # Diffusion 2's model card trains on `punsafe < 0.1`); write them as rules. A LAION subset carries
    # only some of these columns, so each rule keeps an input that lacks its column.
    "laion_safe": ("punsafe < 0.5 ; missing=keep", "pwatermark < 0.8 ; missing=keep",
                   "nsfw in [UNLIKELY, UNSURE] ; missing=keep"),
}


class RuleError(ValueError):
    """A filter rule that does not parse; the message quotes it."""


@dataclass(frozen=True)
class Rule:
    """One parsed rule. `value` is a float, str, None, or a tuple of them (for `in` / `not in`);
    `missing` is None when the rule follows the section default."""

    text: str
    field: str
    op: str
    value: Any
    missing: Optional[str] = None

    @property
    def token(self) -> str:
        """The reject reason naming this rule: `filter:<field>.<op>`."""
        return f"filter:{self.field}.{_OPS[self.op]}"

    @property
    def computed(self) -> bool:
        """True for rules on a score the pipeline computes (they run after that stage, not before decoding)."""
        return self.field in COMPUTED_FIELDS


def _scalar(raw: Any, text: str) -> Any:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        raise RuleError(f"filter rule {text!r}: {raw!r} is a boolean; quote it to compare with a string")
    if isinstance(raw, (int, float)):
        return float(raw)
    raise RuleError(f"filter rule {text!r}: value {raw!r} is not a number, string or null")


def parse_rule(text: str) -> Rule:
    """Parse one rule string; raises RuleError naming it when it is malformed."""
    if not isinstance(text, str):
        raise RuleError(f"filter rule {text!r} is not a string")
    match = _RULE.match(text)
    if match is None:
        raise RuleError(f"filter rule {text!r}: expected FIELD OP VALUE, e.g. 'aesthetic > 6.5'")
    field, op, raw_value = match["field"], " ".join(match["op"].split()), match["value"]
    if field not in TYPED_FIELDS and field not in COMPUTED_FIELDS and not (
            field.startswith(METADATA_PREFIX) and len(field) > len(METADATA_PREFIX)):
        raise RuleError(f"filter rule {text!r}: unknown field {field!r} (known: {', '.join(TYPED_FIELDS)}, "
                        f"{', '.join(COMPUTED_FIELDS)}, {METADATA_PREFIX}<key>)")
    missing = match["missing"]
    if missing is not None and missing not in MISSING_POLICIES:
        raise RuleError(f"filter rule {text!r}: missing must be keep or reject, got {missing!r}")
    if not raw_value:
        raise RuleError(f"filter rule {text!r}: no value after {op!r}")
    try:
        parsed = yaml.safe_load(raw_value)
    except yaml.YAMLError:
        raise RuleError(f"filter rule {text!r}: cannot read value {raw_value!r}") from None
    if op in ("in", "not in"):
        if not isinstance(parsed, list) or not parsed:
            raise RuleError(f"filter rule {text!r}: {op} needs a non-empty list, e.g. [UNLIKELY, UNSURE]")
        value: Any = tuple(_scalar(item, text) for item in parsed)
    else:
        value = _scalar(parsed, text)
        if op in _ORDERINGS and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if op in _ORDERINGS and not isinstance(value, float):
            raise RuleError(f"filter rule {text!r}: {op} needs a number")
        if value is None and op not in ("==", "!="):
            raise RuleError(f"filter rule {text!r}: null only goes with == or !=")
    if isinstance(value, float) and not math.isfinite(value):
        raise RuleError(f"filter rule {text!r}: the value must be finite")
    return Rule(text=text.strip(), field=field, op=op, value=value, missing=missing)


def value_of(element, field: str) -> Any:
    """The value `field` names on `element` (anything with `.provenance` and optional `computed_*`).

    Typed fields and scores: the attribute (None when absent); `source_metadata.<key>`: the key's
    JSON value (None when absent, JSON null, or not JSON).
    """
    if field in COMPUTED_FIELDS:
        return getattr(element, field, None)
    provenance: Provenance = element.provenance
    if field in TYPED_FIELDS:
        return getattr(provenance, field)
    key = field[len(METADATA_PREFIX):]
    for name, text in provenance.source_metadata:
        if name == key:
            try:
                return json.loads(text)
            except ValueError:
                return None
    return None


def _number(value) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _equal(value, wanted) -> bool:
    if isinstance(wanted, float):
        number = _number(value)
        return number is not None and number == wanted
    return value == wanted


def passes(rule: Rule, value: Any, default_missing: str = "keep") -> bool:
    """Whether `value` (None: missing) satisfies `rule`."""
    if rule.value is None:  # == null / != null: presence is the test
        return (value is None) == (rule.op == "==")
    if value is None:
        return (rule.missing or default_missing) == "keep"
    if rule.op in _ORDERINGS:
        number = _number(value)
        if number is None or math.isnan(number):
            return False
        return {">": number > rule.value, ">=": number >= rule.value, "<": number < rule.value,
                "<=": number <= rule.value}[rule.op]
    if rule.op in ("==", "!="):
        return _equal(value, rule.value) == (rule.op == "==")
    inside = any(_equal(value, wanted) for wanted in rule.value)
    return inside == (rule.op == "in")


def first_failure(element, rules, default_missing: str = "keep") -> Optional[tuple[Rule, Any]]:
    """The first rule `element` fails, with the value it had; None when it passes them all."""
    for rule in rules:
        value = value_of(element, rule.field)
        if not passes(rule, value, default_missing):
            return rule, value
    return None


def failure_detail(rule: Rule, value: Any, default_missing: str = "keep") -> str:
    """A reject's detail: the rule and the value that failed it (bounded)."""
    if value is None:
        shown = f"{rule.field} is missing (missing={rule.missing or default_missing})"
    else:
        shown = f"{rule.field}={json.dumps(value, ensure_ascii=False, default=str)}"
    return f"{shown[:300]} fails {rule.text!r}"
