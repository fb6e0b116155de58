"""Matplotlib figures of the statistics, as base64 PNG data URIs (the page opens offline)."""

from __future__ import annotations

import base64
import io
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

from pipelines.report.stats import Histogram

SIZE = (5.2, 2.8)  # inches
DPI = 90
OURS, PAPER = "#1f77b4", "#ff7f0e"


def _uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def img_tag(uri: str, alt: str) -> str:
    return f'<img class="plot" src="{uri}" alt="{alt}">'


def bars_beside(labels: Sequence[str], ours: Sequence[float], paper: Optional[Sequence[float]], title: str,
                ylabel: str) -> str:
    """Grouped bars: this output beside the paper (when given)."""
    figure = Figure(figsize=SIZE)
    axes = figure.add_subplot()
    x = np.arange(len(labels))
    width = 0.4 if paper is not None else 0.7
    axes.bar(x - (width / 2 if paper is not None else 0), ours, width, label="this output", color=OURS)
    if paper is not None:
        axes.bar(x + width / 2, paper, width, label="paper (Table 4)", color=PAPER)
        axes.legend(fontsize=8)
    axes.set_xticks(x, labels)
    axes.set_title(title, fontsize=10)
    axes.set_ylabel(ylabel, fontsize=9)
    return _uri(figure)


def counts_plot(counts: Mapping[int, int], cap: int, title: str, xlabel: str) -> str:
    labels = [str(i) for i in range(cap)] + [f"≥{cap}"]
    values = [counts.get(i, 0) for i in range(cap + 1)]
    last = max((i for i, v in enumerate(values) if v), default=0)
    figure = Figure(figsize=SIZE)
    axes = figure.add_subplot()
    axes.bar(np.arange(last + 1), values[: last + 1], color=OURS)
    axes.set_xticks(np.arange(last + 1), labels[: last + 1])
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel, fontsize=9)
    axes.set_ylabel("rows", fontsize=9)
    return _uri(figure)


def histogram_plot(histograms: Mapping[str, Histogram], title: str, xlabel: str,
                   reference: Optional[tuple[str, float]] = None) -> str:
    """Step histograms over the fixed edges (an open last bin is drawn one bin wide, labelled '+')."""
    figure = Figure(figsize=SIZE)
    axes = figure.add_subplot()
    for label, hist in histograms.items():
        edges = hist.edges.copy()
        if np.isinf(edges[-1]):
            edges[-1] = edges[-2] + (edges[-2] - edges[-3])
        used = np.nonzero(hist.counts)[0]
        stop = (used[-1] + 2) if used.size else 2
        mean = "" if hist.mean is None else f" (mean {hist.mean:.3g})"
        axes.stairs(hist.counts[: stop - 1], edges[:stop], label=f"{label}{mean}", fill=len(histograms) == 1,
                    alpha=0.8)
    if reference is not None:
        axes.axvline(reference[1], color=PAPER, linestyle="--", label=reference[0])
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel, fontsize=9)
    axes.set_ylabel("count", fontsize=9)
    axes.legend(fontsize=8)
    return _uri(figure)


def category_plot(counts: Mapping[str, int], title: str, xlabel: str) -> str:
    """Horizontal bars, largest first."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    figure = Figure(figsize=(SIZE[0], max(1.6, 0.35 * len(items) + 0.9)))
    axes = figure.add_subplot()
    axes.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color=OURS)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel, fontsize=9)
    return _uri(figure)
