"""The UNIMO-G paper's reported numbers (its Tables 1-3), shipped as data: `paper_results.json`.

    tables = paper_tables()            # {"coco": PaperTable, "dreambench": ..., "multibench": ...}
    tables["dreambench"].reference     # the UNIMO-G row: what a run of this toolkit is compared with

The file is versioned (`version`) and names its source (the figures of the authors' repository);
the evaluation copies the table it compares with into results.json, so a result file states which
values it was compared against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Optional

RESULTS_FILE = "paper_results.json"


@dataclass(frozen=True)
class PaperRow:
    """One method's values; `values` maps a metric key (dino, clip_i, clip_t, fid) to its number."""

    method: str
    group: str
    values: dict
    reference: bool = False

    def label(self) -> str:
        return f"{self.method} ({self.group})"


@dataclass(frozen=True)
class PaperTable:
    title: str
    metrics: tuple[str, ...]
    rows: tuple[PaperRow, ...]
    source: str
    version: int

    @property
    def reference(self) -> Optional[PaperRow]:
        """The row of UNIMO-G itself."""
        return next((row for row in self.rows if row.reference), None)

    def to_dict(self) -> dict:
        return {"title": self.title, "source": self.source, "version": self.version, "metrics": list(self.metrics),
                "rows": [{"method": r.method, "group": r.group, "reference": r.reference, **r.values}
                         for r in self.rows]}


@lru_cache(maxsize=1)
def paper_tables() -> dict[str, PaperTable]:
    """The tables of `paper_results.json`, keyed by benchmark: coco, dreambench, multibench."""
    data = json.loads(resources.files("unimo_g_apps.evaluation").joinpath(RESULTS_FILE).read_text(encoding="utf-8"))
    tables = {}
    for bench, table in data["tables"].items():
        metrics = tuple(table["metrics"])
        rows = tuple(PaperRow(row["method"], row["group"], {m: float(row[m]) for m in metrics},
                              bool(row.get("reference", False))) for row in table["rows"])
        tables[bench] = PaperTable(table["title"], metrics, rows, data["source"], int(data["version"]))
    return tables
