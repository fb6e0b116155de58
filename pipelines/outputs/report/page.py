"""The report's HTML: sections of tables and embedded plots, and `pipelines.outputs.gallery`'s sample cards."""

from __future__ import annotations

import html
import json
from typing import Any, Mapping

import yaml
from matplotlib.figure import Figure

from pipelines.outputs.gallery import STYLE as GALLERY_STYLE
from pipelines.outputs.gallery import counted, render_banner_html, render_sample_html
from pipelines.outputs.report import plots
from pipelines.outputs.report.collect import REJECT_COLUMNS, Collected
from pipelines.outputs.report.stats import COUNTS_CAP, OUTCOMES_COLUMN, ShardStats
from pipelines.outputs.shard_stats import ENTITY_BINS, PAPER_ENTITIES_PER_PROMPT, PAPER_MEAN_ENTITIES, PAPER_TEXT_TOKENS

# .plots: without align-items, a flex row stretches each plot to the row's tallest.
STYLE = GALLERY_STYLE + """
section{margin:1.5em 0}img.plot{margin:.3em;border:1px solid #ddd;background:#fff}
.num{text-align:right}.ok{color:#1b5e20}
.plots{display:flex;flex-wrap:wrap;align-items:flex-start}
"""
# Manifest keys shown in their own sections (everything else goes under "other manifest fields").
SHOWN = {"config", "config_hash", "models", "libraries", "counts", "wall_time_s", "random_weights", "schema_version"}


def esc(value: Any) -> str:
    return html.escape(str(value))


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{v:,}</td>' if isinstance(v, int) else f"<td>{esc(v)}</td>" for v in row)
        + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def accounting(c: Collected) -> str:
    counts = (c.manifest or {}).get("counts") or {}
    inputs = counts.get("inputs")
    rows, rejects = c.stats.rows, c.rejects.total
    if inputs is None:
        check = "inputs not recorded (no manifest, or a runner without metrics)"
    elif inputs == rows + rejects:
        check = f'<span class="ok">inputs = rows + rejects ({inputs:,} = {rows:,} + {rejects:,})</span>'
    else:
        check = f'<span class="bad">inputs ≠ rows + rejects ({inputs:,} vs {rows:,} + {rejects:,})</span>'
    by_reason = [[stage, reason, n, _pct(n / rejects)] for (stage, reason), n in sorted(c.rejects.by_reason.items())]
    by_stage: dict[str, int] = {}
    for (stage, _), n in c.rejects.by_reason.items():
        by_stage[stage] = by_stage.get(stage, 0) + n
    parts = [
        "<h2>Accounting</h2>",
        f"<p>{counted(rows, 'row')} in {counted(c.shard_files, 'shard file')}, {counted(rejects, 'reject')} in "
        f"{counted(c.reject_files, 'reject file')}; {check}.</p>",
    ]
    if by_reason:
        parts.append(table(["stage", "rejects"], [[s, n] for s, n in sorted(by_stage.items())]))
        parts.append(table(["stage", "reason", "rejects", "share of rejects"], by_reason))
        parts.append(plots.img_tag(plots.category_plot({f"{s}: {r}": n for (s, r), n in c.rejects.by_reason.items()},
                                                       "rejects by stage and reason", "rejects")))
    return "".join(parts)


def phrase_outcomes(c: Collected) -> tuple[str, list[Figure]]:
    """The paragraph and table on why phrases did not become entities (the shards' `phrase_outcomes`),
    and its figure."""
    s = c.stats
    if s.rows and s.rows_without_outcomes == s.rows:
        return (f"<p>Why phrases did not become entities: these shards carry no per-phrase outcome (schema v1, "
                f"no <code>{OUTCOMES_COLUMN}</code> column); {s.phrases - s.entities:,} of {s.phrases:,} phrases "
                "have no entity.</p>"), []
    counted = sum(s.phrase_outcomes.values())
    text = (f"<p>Phrases that did not become entities, by outcome (the shards' <code>{OUTCOMES_COLUMN}</code> "
            f"column): {counted:,} of {s.phrases - s.phrases_without_outcomes:,} phrases.")
    if s.rows_without_outcomes:
        text += (f" {s.rows_without_outcomes:,} rows come from schema-v1 shards, which carry no per-phrase outcome; "
                 "their phrases are not counted here.")
    text += "</p>"
    if not counted:
        return text, []
    rows = [[outcome, n] for outcome, n in sorted(s.phrase_outcomes.items(), key=lambda kv: (-kv[1], kv[0]))]
    return text + table(["outcome", "phrases"], rows), [
        plots.category_plot(s.phrase_outcomes, "why phrases did not become entities", "phrases")]


def prompts(c: Collected) -> str:
    s = c.stats
    shares = s.bucket_shares()
    rows = [[b, _pct(shares[b]) if s.rows else "–", _pct(PAPER_ENTITIES_PER_PROMPT[b])] for b in ENTITY_BINS]
    rows.append(["mean entities per prompt", f"{s.entities / s.rows:.2f}" if s.rows else "–",
                 f"{PAPER_MEAN_ENTITIES:.2f}"])
    tokens = s.tokens.mean
    rows.append(["mean text tokens per prompt (word-level here)", "–" if tokens is None else f"{tokens:.1f}",
                 f"{PAPER_TEXT_TOKENS:.1f}"])
    rows.append(["mean phrases per caption", f"{s.phrases / s.rows:.2f}" if s.rows else "–", "–"])
    reasons, outcome_figures = phrase_outcomes(c)
    return (
        "<h2>Prompts beside the paper (UNIMO-G, Table 4)</h2>"
        + table(["entities per prompt", "this output", "paper"], rows)
        + reasons
        + figure_row(prompt_figures(s) + outcome_figures)
    )


def figure_row(figures: list[Figure]) -> str:
    return '<div class="plots">' + "".join(plots.img_tag(f) for f in figures) + "</div>"


def prompt_figures(s: ShardStats) -> list[Figure]:
    """Entities per prompt beside the paper's, phrases per caption and text tokens per prompt."""
    shares = s.bucket_shares()
    ours = [100 * shares[b] for b in ENTITY_BINS] if s.rows else None  # no rows: no shares, not 0%
    return [
        plots.bars_beside(list(ENTITY_BINS), ours, [100 * PAPER_ENTITIES_PER_PROMPT[b] for b in ENTITY_BINS],
                          "entities per prompt", "% of prompts"),
        plots.counts_plot(s.phrase_counts, COUNTS_CAP, "phrases per caption", "phrases"),
        plots.histogram_plot({"text tokens": s.tokens}, "text tokens per prompt", "tokens (word-level)",
                             reference=(f"paper mean {PAPER_TEXT_TOKENS}", PAPER_TEXT_TOKENS)),
    ]


def entity_figures(s: ShardStats) -> list[Figure]:
    """Histograms of box area ratio, mask fill, entity scores, image sizes and entity sizes."""
    return [
        plots.histogram_plot({"box area / image area": s.box_area_ratio}, "box area ratio", "ratio"),
        # a mask may spill past its box: fill above 1, beyond the line
        plots.histogram_plot({"mask area / box area": s.mask_fill}, "mask fill", "ratio",
                             reference=("mask area = box area", 1.0)),
        plots.histogram_plot(dict(s.scores), "entity scores", "score"),
        plots.histogram_plot({"width": s.width, "height": s.height}, "image sizes", "pixels"),
        plots.histogram_plot({"longer box side": s.entity_side}, "entity sizes (source pixels before resizing)",
                             "pixels"),
    ]


def entities_and_images(c: Collected) -> str:
    s = c.stats
    return (
        f"<h2>Entities and images</h2><p>{s.entities:,} entities in {s.rows:,} rows. Boxes are xyxy in pixels of "
        "the original image; an entity image is cropped from its box, so its source size is the box's. A mask "
        "area counts the whole mask, so a mask that spills past its box has a fill above 1. Each histogram's "
        "range grows until it holds the largest value; the means in the legends are exact.</p>"
        + figure_row(entity_figures(s))
    )


def run_facts(c: Collected) -> str:
    m = c.manifest or c.lineage or {}
    parts = ["<h2>Run</h2>"]
    wall = m.get("wall_time_s")
    inputs = (m.get("counts") or {}).get("inputs")
    timing = [["wall time", f"{wall:.1f} s" if isinstance(wall, (int, float)) else "not recorded"]]
    if isinstance(wall, (int, float)) and wall > 0 and inputs:
        timing.append(["throughput", f"{inputs / wall:.2f} inputs/s, {c.stats.rows / wall:.2f} rows/s"])
    for key in ("stage_times", "timings", "stages", "throughput"):
        if isinstance(m.get(key), Mapping):
            timing += [[f"{key}: {k}", v] for k, v in m[key].items()]
    parts.append(table(["timing", ""], timing))
    facts = [["schema version", c.schema_version], ["config hash", m.get("config_hash", "–")],
             ["runner", m.get("runner", "–")], ["created", m.get("created_at", "–")],
             ["input", json.dumps(m.get("input")) if m.get("input") else "–"]]
    parts.append(table(["provenance", ""], facts))
    licenses = (m.get("statistics") or {}).get("rows_by_license") or {}
    if licenses:  # schema v3: the licences the inputs named (manifest statistics, read from the shards)
        parts.append("<h3>Licences of the rows</h3>"
                     + table(["licence", "rows"], [[k, v] for k, v in licenses.items()]))
    models = m.get("models") or {}
    if models:
        parts.append("<h3>Models</h3>" + table(["stage", "model", "revision"],
                     [[k, v.get("id"), v.get("revision")] for k, v in models.items() if isinstance(v, Mapping)]))
    libraries = m.get("libraries") or {}
    if libraries:
        rows = [[name, version] for name, version in libraries.items()]
        parts.append("<h3>Library versions</h3>" + table(["library", "version"], rows))
    if isinstance(m.get("config"), Mapping):
        parts.append("<details><summary>config</summary><pre>"
                     f"{esc(yaml.safe_dump(m['config'], sort_keys=False))}</pre></details>")
    other = {k: v for k, v in m.items() if k not in SHOWN}
    if other:
        parts.append("<details><summary>other manifest fields</summary><pre>"
                     f"{esc(json.dumps(other, indent=2, sort_keys=True, default=str))}</pre></details>")
    return "".join(parts)


def bucket_heading(bucket: str, rows: int, shown: int) -> str:
    """E.g. '1 entity: 3 rows, none sampled', '≥4 entities: 12 rows, 4 sampled', '2 entities: no rows'."""
    entities = "1 entity" if bucket == "1" else f"{bucket.replace('>=', '≥')} entities"
    if not rows:
        return f"{entities}: no rows"
    if not shown:
        return f"{entities}: {counted(rows, 'row')}, none sampled"
    if shown == rows:
        return f"{entities}: {counted(rows, 'row')}, {'all ' if rows > 1 else ''}shown"
    return f"{entities}: {counted(rows, 'row')}, {shown:,} sampled"


def samples(c: Collected, max_side: int) -> list[str]:
    """A heading per entity-count bucket, with its sampled rows' cards."""
    if not c.stats.rows:
        return ["<p>No rows to sample.</p>"]
    counts, parts = c.stats.bucket_counts(), []
    for bucket in ENTITY_BINS:
        rows = c.samples.get(bucket, [])
        parts.append(f"<h3>{esc(bucket_heading(bucket, counts[bucket], len(rows)))}</h3>")
        parts += [render_sample_html(row, max_side) for row in rows]
    return parts


def gallery(c: Collected, max_side: int) -> str:
    parts = ["<h2>Samples, stratified by entity count</h2>", *samples(c, max_side)]
    if c.reject_samples:
        parts.append("<h2>Rejects, sampled by stage and reason</h2>")
        rows = [[r[col] for col in REJECT_COLUMNS] for rows in c.reject_samples.values() for r in rows]
        parts.append(table(REJECT_COLUMNS, rows))
    return "".join(parts)


def render(c: Collected, title: str, max_side: int = 512) -> str:
    manifest: Mapping = c.manifest or c.lineage or {}
    missing = "" if c.manifest is not None else '<p class="bad">no manifest.json in this output</p>'
    config = manifest.get("config")
    name = config.get("name") if isinstance(config, Mapping) else None
    sections = [accounting(c), prompts(c), entities_and_images(c), run_facts(c), gallery(c, max_side)]
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>unimo-g report · {esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>unimo-g report · {esc(title)} · config {esc(name or '?')}</h1>{render_banner_html(manifest)}{missing}"
        + "".join(f"<section>{s}</section>" for s in sections)
        + "</body></html>"
    )
