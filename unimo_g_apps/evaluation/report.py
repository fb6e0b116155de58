"""results.json and results.md of an evaluation: our numbers beside the paper's tables.

    summarize(per_case, layout)   per-case scores -> overall mean and the groups the layout is read by
    markdown(results)             the Markdown page (subject-driven benchmarks)
    fid_markdown(results)         the Markdown page of the MS-COCO FID protocol

Groups (means over cases, each case weighing one): `subject` (every layout); for MultiBench and
custom benchmarks also `entities` (2- vs 3-subject prompts), `template`, and `entity`: for each
entity, DINO and CLIP-I of the generated images against *that entity's* photo, and CLIP-T of the
prompts it appears in.
"""

from __future__ import annotations

from typing import Optional

METRICS = ("dino", "clip_i", "clip_t")
METRIC_NAMES = {"dino": "DINO", "clip_i": "CLIP-I", "clip_t": "CLIP-T", "fid": "FID"}
BENCH_NAMES = {"dreambench": "DreamBench", "multibench": "MultiBench", "custom": "custom benchmark",
               "coco": "MS-COCO"}
FULL_FID_CAPTIONS = 30_000


def _mean(rows: list[dict], metrics=METRICS) -> dict:
    return {**{m: sum(r[m] for r in rows) / len(rows) for m in metrics}, "prompts": len(rows)}


def summarize(per_case: dict, layout: str) -> dict:
    """{"overall": means, "groups": {group: {value: means}}} of per-case scores (`evaluate.score`)."""
    rows = list(per_case.values())
    groups: dict[str, dict[str, list]] = {"subject": {}}
    if layout != "dreambench":
        groups.update(entities={}, template={}, entity={})
    for row in rows:
        groups["subject"].setdefault(row["subject"], []).append(row)
        if layout == "dreambench":
            continue
        groups["entities"].setdefault(str(len(row["entities"])), []).append(row)
        groups["template"].setdefault(row["template"], []).append(row)
        for name, scores in row["per_entity"].items():
            groups["entity"].setdefault(name, []).append({**scores, "clip_t": row["clip_t"]})
    table = {group: {value: _mean(members) for value, members in sorted(values.items())}
             for group, values in groups.items()}
    return {"overall": _mean(rows), "groups": table}


def _scores(row: dict, bold: bool = False) -> str:
    values = [row[m] for m in METRICS] + [sum(row[m] for m in METRICS) / len(METRICS)]
    return " | ".join(f"**{v:.3f}**" if bold else f"{v:.3f}" for v in values)


def _table(title: str, first: str, rows: dict, label=lambda value: value) -> list[str]:
    lines = ["", f"## {title}", "", f"| {first} | prompts | DINO | CLIP-I | CLIP-T | Avg |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {label(value)} | {row['prompts']} | {_scores(row)} |" for value, row in rows.items()]
    return lines


def _subset_note(results: dict) -> list[str]:
    selection = results["selection"]
    if selection["cases"] == selection["of"]:
        return []
    how = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in selection.items()
                    if k not in ("cases", "of") and v is not None)
    return ["", f"**Subset**: {selection['cases']} of {selection['of']} prompts ({how}): an estimate of the full "
                f"benchmark, which the paper's values are for."]


def _paper_rows(paper: dict, metrics) -> list[dict]:
    return [row for row in paper["rows"] if all(row.get(m) is not None for m in metrics)]


def markdown(results: dict) -> str:
    """The Markdown page of a DreamBench / MultiBench / custom evaluation."""
    settings = results["settings"]
    layout = results["layout"]
    lines = [f"# {BENCH_NAMES.get(layout, layout)} evaluation of `{results['model']}` ({results['weights']} weights)",
             "", f"DINO: `{results['metrics']['dino']}`; CLIP-I and CLIP-T: `{results['metrics']['clip']}`; "
             f"{settings['images_per_prompt']} image{'s' * (settings['images_per_prompt'] != 1)} per prompt, "
             f"{settings['steps']} DDIM steps, guidance "
             f"{settings['guidance']}, {settings['precision']} sampling. Avg: the mean of the three, as the paper's."]
    lines += _subset_note(results)
    paper: Optional[dict] = results.get("paper")
    title = f"Overall, beside the paper's {paper['title']}" if paper else "Overall"
    lines += ["", f"## {title}", "", "| method | prompts | DINO | CLIP-I | CLIP-T | Avg |", "|---|---|---|---|---|---|",
              f"| **this run** | {results['overall']['prompts']} | {_scores(results['overall'], bold=True)} |"]
    if paper:
        for row in _paper_rows(paper, METRICS):
            name = f"**{row['method']}**" if row.get("reference") else row["method"]
            lines.append(f"| {name} ({row['group']}), paper | | {_scores(row)} |")
        lines += ["", f"Paper's values: {paper['source']} (paper_results.json v{paper['version']})."]
    groups = results["groups"]
    if layout == "dreambench":
        lines += _table("Per subject", "subject", groups["subject"])
    else:
        lines += _table("By number of entities", "entities", groups["entities"], lambda n: f"{n}-subject prompts")
        lines += _table("By template", "template", groups["template"], lambda t: f"`{t}`")
        lines += _table("Per entity (DINO, CLIP-I: against that entity's photo; CLIP-T: its prompts)", "entity",
                        groups["entity"])
    return "\n".join(lines) + "\n"


def fid_markdown(results: dict) -> str:
    """The Markdown page of the MS-COCO FID protocol, beside the paper's Table 1."""
    fid = results["fid"]
    n = fid["generated"]
    lines = [f"# MS-COCO FID evaluation of `{results['model']}` ({results['weights']} weights)", "",
             f"FID-{n} at {fid['size']}x{fid['size']}: {n} captions sampled from `{fid['captions_file']}` (seed "
             f"{fid['seed']}, {fid['of']} captions), one image per caption at the model's {fid['generated_size']} px, "
             f"{results['settings']['steps']} DDIM steps, guidance {results['settings']['guidance']}; "
             f"{fid['real']} real images ({fid['reference']}).", "",
             f"Implementation: {fid['implementation']}.", "", "| method | FID |", "|---|---|",
             f"| **this run** | **{fid['fid']:.2f}** |"]
    paper = results.get("paper")
    if paper:
        for row in _paper_rows(paper, ("fid",)):
            name = f"**{row['method']}**" if row.get("reference") else row["method"]
            lines.append(f"| {name} ({row['group']}), paper | {row['fid']:.2f} |")
        lines += ["", f"Paper's values: {paper['title']}; {paper['source']} (paper_results.json v{paper['version']})."]
    if n < FULL_FID_CAPTIONS:
        lines += ["", f"**FID-{n}, not FID-30K**: FID is biased upward at fewer samples; compare with the paper "
                      f"only at {FULL_FID_CAPTIONS:,} captions."]
    return "\n".join(lines) + "\n"
