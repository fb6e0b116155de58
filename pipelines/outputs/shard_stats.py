"""Prompt statistics of a finished run, read from the shards it wrote (never from runner metrics).

`summarize_shards(output_dir)` reads, one row group at a time, only the small leaf columns it needs
(phrase starts, entity phrase indices, prompt text parts, phrase outcomes): no image bytes, memory
bounded by one row group. Its figures sit beside the paper's (UNIMO-G, Table 4): entities per
prompt 0: 16%, 1: 36.8%, 2: 25.8%, 3: 12.3%, >= 4: 9.1%; 1.67 entities and 42.5 text tokens per prompt.

Text tokens are counted as words and punctuation marks of the prompt's text parts (the regex
`\\w+|[^\\w\\s]`), a tokenizer-free stand-in: the paper does not name its tokenizer, and subword
tokenizers give somewhat more tokens than words.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Optional

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.io.write import shard_files_pattern
from unimo_g.schema import check_schema_version

# The paper's Table 4 (UNIMO-G, arXiv 2401.13388); `pipelines.outputs.report` shows these same figures.
PAPER_ENTITIES_PER_PROMPT = {"0": 0.16, "1": 0.368, "2": 0.258, "3": 0.123, ">=4": 0.091}
PAPER_MEAN_ENTITIES = 1.67
PAPER_TEXT_TOKENS = 42.5
ENTITY_BINS = tuple(PAPER_ENTITIES_PER_PROMPT)  # entities per prompt: 0, 1, 2, 3, >= 4
LICENSE_COLUMN = "license"  # schema v3
NO_LICENSE = "(none)"  # rows whose input named no licence (and rows of v1/v2 files)
OTHER_LICENSES = "(other)"
MAX_LICENSES = 50  # distinct licences listed, most rows first; the rest are counted together
TOKEN_PATTERN = r"\w+|[^\w\s]"  # Python `re` (Unicode \w): count with `text_tokens`, not another engine
_WORD = re.compile(TOKEN_PATTERN)


def _leaf(parquet: pq.ParquetFile, column: str, field: str) -> Optional[str]:
    """Dotted path of the leaf `field` of list column `column` (e.g. `entities.list.element.phrase`),
    or of the list column's values when `field` is empty; None when the file has no such column."""
    for index in range(parquet.metadata.num_columns):
        path = parquet.schema.column(index).path
        parts = path.split(".")
        if parts[0] == column and (parts[-1] == field if field else len(parts) == 3):
            return path
    return None


def _shard_files(output_dir: str) -> list[str]:
    return sorted(meta.path for meta in FileSystems.match([shard_files_pattern(output_dir)])[0].metadata_list)


def entity_bin(count: int) -> str:
    """The `ENTITY_BINS` key of a prompt with `count` entities."""
    return ENTITY_BINS[min(count, len(ENTITY_BINS) - 1)]


def text_tokens(text: Optional[str]) -> int:
    """Text tokens of one prompt text part (`TOKEN_PATTERN` matches; 0 for an entity part's None)."""
    return len(_WORD.findall(text)) if text else 0


def _share(counts: Counter, total: int) -> dict:
    return {key: round(counts[key] / total, 4) if total else None for key in ENTITY_BINS}


def summarize_shards(output_dir: str) -> dict:
    """Statistics of every sample shard under `output_dir`:

    {"rows", "entities_per_prompt": {"counts": {"0".. ">=4"}, "shares": {...}, "paper_shares": {...}},
     "mean_entities_per_prompt", "paper_mean_entities_per_prompt", "mean_phrases_per_caption",
     "mean_text_tokens_per_prompt", "paper_text_tokens_per_prompt", "text_token_count": how tokens
     are counted, "phrase_outcomes": {outcome: phrases}, "rows_without_outcomes": rows of schema-v1
     files, which do not record them, "rows_by_license": {licence: rows}, at most MAX_LICENSES of
     them, NO_LICENSE for rows without one, OTHER_LICENSES for the rest}.
    Raises SchemaVersionError for a file without a supported schema version.
    """
    rows = entities = phrases = tokens = rows_without_outcomes = 0
    bins: Counter = Counter()
    outcomes: Counter = Counter()
    licenses: Counter = Counter()
    for path in _shard_files(output_dir):
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            check_schema_version(parquet.schema_arrow.metadata, where=path)
            columns = {
                "entities": _leaf(parquet, "entities", "phrase"),
                "phrases": _leaf(parquet, "phrases", "start"),
                "prompt": _leaf(parquet, "prompt", "text"),
                "outcomes": _leaf(parquet, "phrase_outcomes", ""),
                "license": LICENSE_COLUMN if LICENSE_COLUMN in parquet.schema_arrow.names else None,
            }
            wanted = [c for c in columns.values() if c is not None]
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=wanted)
                rows += table.num_rows
                for row_entities in table.column("entities").to_pylist():
                    entities += len(row_entities)
                    bins[entity_bin(len(row_entities))] += 1
                phrases += sum(len(p) for p in table.column("phrases").to_pylist())
                for prompt in table.column("prompt").to_pylist():
                    tokens += sum(text_tokens(part["text"]) for part in prompt)
                if columns["outcomes"] is None:
                    rows_without_outcomes += table.num_rows
                else:
                    for row_outcomes in table.column("phrase_outcomes").to_pylist():
                        outcomes.update(row_outcomes)
                if columns["license"] is None:
                    licenses[NO_LICENSE] += table.num_rows
                else:
                    licenses.update(value or NO_LICENSE for value in table.column(LICENSE_COLUMN).to_pylist())
    mean = (lambda total: round(total / rows, 3) if rows else None)
    return {
        "rows": rows,
        "entities_per_prompt": {
            "counts": {key: bins[key] for key in ENTITY_BINS},
            "shares": _share(bins, rows),
            "paper_shares": PAPER_ENTITIES_PER_PROMPT,
        },
        "mean_entities_per_prompt": mean(entities),
        "paper_mean_entities_per_prompt": PAPER_MEAN_ENTITIES,
        "mean_phrases_per_caption": mean(phrases),
        "mean_text_tokens_per_prompt": mean(tokens),
        "paper_text_tokens_per_prompt": PAPER_TEXT_TOKENS,
        "text_token_count": f"words and punctuation of the prompt's text parts (regex {TOKEN_PATTERN})",
        "phrase_outcomes": dict(sorted(outcomes.items())),
        "rows_without_outcomes": rows_without_outcomes,
        "rows_by_license": _top(licenses),
    }


def _top(licenses: Counter) -> dict:
    """`licenses` with at most MAX_LICENSES keys, most rows first (ties by name), the rest summed."""
    ordered = sorted(licenses.items(), key=lambda item: (-item[1], item[0]))
    top = dict(ordered[:MAX_LICENSES])
    rest = sum(n for _, n in ordered[MAX_LICENSES:])
    if rest:
        top[OTHER_LICENSES] = top.get(OTHER_LICENSES, 0) + rest
    return top
