"""Figures shared by the report's sections, sized by how many items they show so that
labels never run into each other: bars with top/bottom N when there are many, value axes
that are logarithmic only across decades, the confusion matrix."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

from kiloml.report.elements import short_label

BAR_INCHES = 0.32  # height per bar: 8-pt tick labels one above the other with room
MAX_BARS = 30  # above this, the best and the worst MAX_BARS // 2 and a count of the rest
ACCURACY_RANGE = (0.0, 1.12)  # accuracy bars: the whole scale and room for the value labels
LOG_SPAN = 20.0  # a value axis goes logarithmic only when its values span this factor


def bar_height(n_bars: int) -> float:
    return BAR_INCHES * n_bars + 1.3


def bars_top_down(ax, n_bars: int) -> None:
    """The first bar at the top, half a bar of margin at both ends (autoscaling leaves a
    wide margin when a bar is missing)."""
    ax.set_ylim(n_bars - 0.5, -0.5)


def top_bottom(labels: list[str], values: list[float], limit: int = MAX_BARS
               ) -> tuple[list[str], list[float | None], int]:
    """All items in their order when they are at most ``limit``; otherwise the
    ``limit // 2`` highest and the ``limit // 2`` lowest values (highest first) with a gap
    row between them (value None); also the number of items left out."""
    if len(labels) <= limit:
        return list(labels), list(values), 0
    half = limit // 2
    order = sorted(range(len(values)), key=lambda i: -values[i])  # stable: ties keep order
    best, worst = order[:half], order[-half:]
    rest = len(labels) - 2 * half
    return ([labels[i] for i in best] + [f"\u22ef {rest:,} more \u22ef"]
            + [labels[i] for i in worst],
            [values[i] for i in best] + [None] + [values[i] for i in worst], rest)


def value_axis(ax, values: list[float], axis: str = "x", *, start_at_zero: bool = True,
               nbins: int = 6) -> None:
    """A readable value axis for ``values`` (> 0 where logarithmic): logarithmic with
    labels on whole decades only when they span LOG_SPAN or more, otherwise linear with a
    few round ticks (a log axis over less than a decade labels every minor tick in
    scientific notation, and the labels run into one unreadable string)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    scale = ax.xaxis if axis == "x" else ax.yaxis
    set_lim = ax.set_xlim if axis == "x" else ax.set_ylim
    positive = v[v > 0]
    if len(positive) and positive.max() / positive.min() >= LOG_SPAN:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        scale.set_major_locator(LogLocator(base=10, numticks=12))
        scale.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10), numticks=12))
        scale.set_minor_formatter(NullFormatter())
        set_lim(positive.min() / 1.6, positive.max() * 3.0)  # room for the value labels
        return
    hi = float(v.max()) if len(v) else 1.0
    lo = 0.0 if start_at_zero or not len(v) else float(v.min())
    span = (hi - lo) or abs(hi) or 1.0
    set_lim(lo - (0 if start_at_zero else 0.05 * span), hi + 0.22 * span)
    scale.set_major_locator(MaxNLocator(nbins=nbins))


def bar_figure(labels: list[str], values: list[float], title: str, xlabel: str,
               reference: float | None = None, fmt: str = "{:.2f}",
               limit: int = MAX_BARS, what: str = "items",
               value_range: tuple[float, float] | None = None) -> Figure:
    """Horizontal bars, one per label (at most ``limit``: the best and the worst half with
    a count of the rest, said in the title). ``value_range``: fixed axis limits (accuracy:
    0 to 1 and room for the labels) instead of limits from the values."""
    labels, shown, rest = top_bottom(labels, values, limit)
    if rest:
        title = f"{title}\n(the {limit // 2} highest and lowest of {len(values):,} {what})"
    fig, ax = plt.subplots(figsize=(6.4, bar_height(len(labels))))
    y = np.arange(len(labels))
    drawn = [np.nan if v is None else v for v in shown]
    ax.barh(y, drawn, color="#4c72b0")
    ax.set_yticks(y, [short_label(x) for x in labels], fontsize=8)
    if rest:
        ax.get_yticklabels()[len(labels) // 2].set_color("#666")
    bars_top_down(ax, len(labels))
    for yi, v in zip(y, shown, strict=True):
        if v is not None:
            ax.text(v, yi, " " + fmt.format(v), va="center", fontsize=8)
    if reference is not None:
        ax.axvline(reference, color="#cf222e", ls="--", lw=1)
    if value_range is None:
        value_axis(ax, [v for v in shown if v is not None] + [reference or 0.0])
    else:
        ax.set_xlim(*value_range)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    return fig


def confusion_figure(cm: list[list[int]], names: list[str]) -> Figure:
    """Row-normalized colours with the window counts written in while they fit."""
    m = np.asarray(cm, dtype=float)
    n = len(names)
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = min(max(4.0, 0.42 * n + 2.2), 22.0)
    tick_pt = 8 if n <= 30 else max(4.0, 8 * 30 / n)
    fig, ax = plt.subplots(figsize=(size, size * 0.88))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:  # cell counts stay legible up to here
        count_pt = 8 if n <= 12 else 6
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=count_pt,
                        color="white" if frac[i, j] > 0.5 else "black")
    short = [short_label(x, 20) for x in names]
    # upright names side by side only when few and short; else at 90 degrees, one per cell
    upright = n <= 3 and max(len(x) for x in short) <= 8
    ax.set_xticks(range(n), short, rotation=0 if upright else 90, fontsize=tick_pt)
    ax.set_yticks(range(n), short, fontsize=tick_pt)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (held-out test windows)" +
                 ("" if n <= 30 else ": colour = share of the true class"), fontsize=10)
    return fig


def grid_shape(n_panels: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, max(1, n_panels))
    return math.ceil(n_panels / cols), cols
