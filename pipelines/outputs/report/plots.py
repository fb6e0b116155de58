"""Matplotlib figures of the statistics, embedded as base64 PNG data URIs (the page opens offline).

Each plot function returns a Figure whose label is its title (the <img> alt text). A plot without
data is a short "no data" figure, not empty axes. Legends sit under the axes (constrained layout's
"outside" placement): inside them, a legend covers bars wherever it is put.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
from matplotlib.ticker import MaxNLocator

from pipelines.outputs.report.stats import Histogram

SIZE = (5.2, 2.8)  # inches
NO_DATA_HEIGHT = 1.0  # inches: a title and one line of text
DPI = 90
OURS, PAPER = "#1f77b4", "#ff7f0e"
NO_DATA = "no data"


def _figure(title: str, height: float = SIZE[1]) -> Figure:
    figure = Figure(figsize=(SIZE[0], height), dpi=DPI, layout="constrained")
    figure.set_label(title)
    return figure


def _axes(figure: Figure, title: str, xlabel: Optional[str] = None, ylabel: Optional[str] = None) -> Axes:
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10)
    if xlabel:
        axes.set_xlabel(xlabel, fontsize=9)
    if ylabel:
        axes.set_ylabel(ylabel, fontsize=9)
    return axes


def _legend_below(figure: Figure, axes: Axes) -> None:
    """The axes' legend under the plot, two entries a line."""
    handles, labels = axes.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(2, len(labels)), fontsize=8,
                  frameon=False)


def no_data(title: str, message: str = NO_DATA) -> Figure:
    """The title over `message`, without axes (empty axes read as a broken plot)."""
    figure = _figure(f"{title}: {message}", NO_DATA_HEIGHT)
    axes = _axes(figure, title)
    axes.set_axis_off()
    axes.text(0.5, 0.4, message, transform=axes.transAxes, ha="center", va="center", fontsize=9, color="#666")
    return figure


def to_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def img_tag(figure: Figure) -> str:
    return f'<img class="plot" src="{to_uri(figure)}" alt="{html.escape(figure.get_label())}">'


def bars_beside(labels: Sequence[str], ours: Optional[Sequence[float]], paper: Optional[Sequence[float]],
                title: str, ylabel: str) -> Figure:
    """Grouped bars: this output (None: it has no rows) beside the paper (when given)."""
    if ours is None and paper is None:
        return no_data(title)
    figure = _figure(title)
    axes = _axes(figure, title, ylabel=ylabel)
    x = np.arange(len(labels))
    width = 0.4 if paper is not None else 0.7
    ours_label = "this output" if ours is not None else f"this output: {NO_DATA}"
    axes.bar(x - (width / 2 if paper is not None else 0), ours if ours is not None else np.zeros(len(labels)),
             width, label=ours_label, color=OURS)
    if paper is not None:
        axes.bar(x + width / 2, paper, width, label="paper (Table 4)", color=PAPER)
    axes.set_xticks(x, labels)
    _legend_below(figure, axes)
    return figure


def counts_plot(counts: Mapping[int, int], cap: int, title: str, xlabel: str) -> Figure:
    """Rows per count 0..cap-1, then ≥cap; up to the largest count seen."""
    labels = [str(i) for i in range(cap)] + [f"≥{cap}"]
    values = [counts.get(i, 0) for i in range(cap + 1)]
    if not any(values):
        return no_data(title)
    last = max(i for i, v in enumerate(values) if v)
    figure = _figure(title)
    axes = _axes(figure, title, xlabel, "rows")
    axes.bar(np.arange(last + 1), values[: last + 1], color=OURS)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 2.5 rows
    axes.set_xticks(np.arange(last + 1), labels[: last + 1])
    return figure


def histogram_plot(histograms: Mapping[str, Histogram], title: str, xlabel: str,
                   reference: Optional[tuple[str, float]] = None) -> Figure:
    """Step histograms from 0 to the last non-empty bin, so the axis spans every value (and with it the
    mean in the legend); empty histograms are left out."""
    shown = {label: hist for label, hist in histograms.items() if hist.n}
    if not shown:
        return no_data(title)
    figure = _figure(title)
    axes = _axes(figure, title, xlabel, "count")
    for label, hist in shown.items():
        stop = int(np.nonzero(hist.counts)[0][-1]) + 1
        axes.stairs(hist.counts[:stop], hist.edges[: stop + 1], label=f"{label} (mean {hist.mean:.3g})",
                    fill=len(shown) == 1, alpha=0.8)
    if reference is not None:
        axes.axvline(reference[1], color=PAPER, linestyle="--", label=reference[0])
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_below(figure, axes)
    return figure


def category_plot(counts: Mapping[str, int], title: str, xlabel: str) -> Figure:
    """Horizontal bars, largest first."""
    items = sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0]))
    if not items:
        return no_data(title)
    figure = _figure(title, max(1.6, 0.35 * len(items) + 0.9))
    axes = _axes(figure, title, xlabel)
    axes.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color=OURS)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure
