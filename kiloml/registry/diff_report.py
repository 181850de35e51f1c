"""diff.html: the behaviour diff for people. The transition matrix as a heat map, a
timeline per recording with both libraries' decisions and the changed segments marked,
the confidence shift per class, and the tables of diff.json (matplotlib PNGs embedded, as
kiloml.report does)."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from kiloml.registry.alignment import UNCERTAIN_NAME, decision_names, label_index
from kiloml.registry.diff import BehaviourDiff
from kiloml.registry.streams import Decisions
from kiloml.report.elements import STYLE, Section, html_table, png_img, short_label

MAX_TIMELINES = 12  # recordings drawn (the most changed first)
MAX_ROWS = 50  # rows of the segment and event tables
CHANGED_COLOR = "#cf222e"


def transition_figure(summary: dict) -> Figure:
    t = summary["transitions"]
    m = np.asarray(t["counts"], dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    na, nb = len(t["a"]), len(t["b"])
    size = min(max(4.0, 0.45 * max(na, nb) + 2.4), 22.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.88))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    if max(na, nb) <= 30:
        for i in range(na):
            for j in range(nb):
                colour = "white" if frac[i, j] > 0.5 else ("black" if i == j or m[i, j] == 0
                                                           else CHANGED_COLOR)
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                        color=colour)
    ax.set_xticks(range(nb), [short_label(x, 20) for x in t["b"]], rotation=90, fontsize=8)
    ax.set_yticks(range(na), [short_label(x, 20) for x in t["a"]], fontsize=8)
    ax.set_xlabel(f"B: {summary['b']['label']}")
    ax.set_ylabel(f"A: {summary['a']['label']}")
    ax.set_title(f"Decisions A -> B ({summary['changed_windows']:,} of "
                 f"{summary['n_windows']:,} changed); colour: share of A's row", fontsize=10)
    return fig


def _steps(d: Decisions, r: int, n_samples: int, rate: float, n_classes: int
           ) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(d.recording == r)
    t = np.append((d.sample[rows] + 1) / rate, n_samples / rate)
    y = label_index(d.decision[rows], n_classes)
    return t, np.append(y, y[-1:]) if len(y) else y


def timeline_figure(diff: BehaviourDiff, recordings: list[int]) -> Figure:
    """Both libraries' decisions over time in each recording, changed segments shaded."""
    s, streams = diff.summary, diff.streams
    names = sorted(set(decision_names(diff.decisions_a.class_names))
                   | set(decision_names(diff.decisions_b.class_names)),
                   key=lambda x: (x == UNCERTAIN_NAME, x))
    level = {n: i for i, n in enumerate(names)}
    fig, axes = plt.subplots(len(recordings), 1, squeeze=False,
                             figsize=(10, 0.3 * len(names) * len(recordings)
                                      + 1.2 * len(recordings) + 0.6))
    for ax, r in zip(axes[:, 0], recordings, strict=True):
        n = streams.lengths[r]
        for d, colour, label, offset in (
                (diff.decisions_a, "#0969da", f"A: {s['a']['label']}", -0.1),
                (diff.decisions_b, "#9a6700", f"B: {s['b']['label']}", 0.1)):
            own = decision_names(d.class_names)
            t, y = _steps(d, r, n, streams.rate_hz, len(d.class_names))
            if len(t) > 1:
                ax.step(t, [level[own[k]] + offset for k in y], where="post", color=colour,
                        lw=1.4, label=label)
        for seg in s["segments"]:
            if seg["recording_index"] == r:
                ax.axvspan(seg["start_s"], seg["end_s"], color=CHANGED_COLOR, alpha=0.18, lw=0)
        ax.set_yticks(range(len(names)), [short_label(x, 16) for x in names], fontsize=7)
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.set_xlim(0, n / streams.rate_hz)
        ax.set_title(short_label(streams.names[r], 60), fontsize=9, loc="left")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time (s); shaded: B decides otherwise")
    fig.tight_layout()
    return fig


def confidence_figure(summary: dict) -> Figure:
    per = summary["confidence"]["per_class"]
    names = [n for n, v in per.items() if v["a"] is not None or v["b"] is not None]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 0.55 * max(len(names), 1) + 1.3))
    for values, offset, colour, who in (
            ([per[n]["a"] for n in names], -0.2, "#0969da", f"A: {summary['a']['label']}"),
            ([per[n]["b"] for n in names], 0.2, "#9a6700", f"B: {summary['b']['label']}")):
        ax.barh(y + offset, [v if v is not None else 0.0 for v in values], height=0.38,
                color=colour, label=who)
    ax.set_yticks(y, [short_label(n, 24) for n in names], fontsize=8)
    ax.set_ylim(max(len(names), 1) - 0.5, -0.5)
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("mean top smoothed score where the library decides the class")
    ax.set_title("Confidence shift per class", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _most_changed(summary: dict) -> list[int]:
    per = summary["per_recording"]
    order = sorted(range(len(per)), key=lambda i: (-per[i]["changed"], i))
    return [i for i in order if per[i]["windows"]][:MAX_TIMELINES]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def render_diff(diff: BehaviourDiff) -> str:
    s = diff.summary
    a, b = s["a"], s["b"]
    e = html.escape
    head = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>kiloml diff: "
            f"{e(a['label'])} -> {e(b['label'])}</title><style>{STYLE}</style></head><body>",
            f"<h1>Behaviour diff: {e(a['label'])} -> {e(b['label'])}</h1>",
            f"<p class='muted'>both C libraries compiled on the host and fed "
            f"{e(s['recordings']['source'])}: {s['recordings']['n']} recordings, "
            f"{s['recordings']['seconds']:,.1f} s at {s['recordings']['rate_hz']:g} Hz. "
            f"{e(s['alignment'])}.</p>"]
    ev = s["events"]
    summary = Section("summary", "Summary", [html_table([
        ("decisions compared", f"{s['n_windows']:,}"),
        ("changed", f"{s['changed_windows']:,} ({_pct(s['changed_fraction'])})"),
        ("changed segments", f"{len(s['segments']):,}"),
        ("events (A / B)", f"{ev['a']:,} / {ev['b']:,}"),
        ("events lost / gained", f"{ev['n_lost']:,} / {ev['n_gained']:,}"),
        ("mean confidence (A / B)", _scores(s["confidence"]["a"], s["confidence"]["b"])),
        ("unaligned instants", f"{s['unaligned_windows']:,}"),
    ], ("", "value")), html_table([
        (k, e(str(a[k])), e(str(b[k]))) for k in ("model_id", "interface_hash",
                                                   "window_samples", "stride_samples",
                                                   "window_rate_hz", "decisions")],
        ("", f"A: {a['label']}", f"B: {b['label']}"))])
    figures = Section("figures", "Transitions and confidence", [
        "<div class='figs'>" + png_img(transition_figure(s), "transition matrix")
        + png_img(confidence_figure(s), "confidence shift") + "</div>"])
    shown = _most_changed(s)
    timeline = Section("timelines", "Timelines", [
        png_img(timeline_figure(diff, shown), "decision timelines") if shown else
        "<p class='muted'>no decisions to draw</p>",
        *([f"<p class='muted'>the {len(shown)} most changed of {len(s['per_recording'])} "
           "recordings</p>"] if len(shown) < len(s["per_recording"]) else [])])
    segments = Section("segments", "Changed segments", [_segment_table(s["segments"])])
    classes = Section("classes", "Per class", [html_table(
        [(e(n), f"{v['windows_a']:,}", f"{v['windows_b']:,}", f"{v['changed_from']:,}",
          f"{v['changed_to']:,}", _pct(v["changed_fraction"]),
          _scores(s["confidence"]["per_class"][n]["a"], s["confidence"]["per_class"][n]["b"]),
          f"{ev['per_class'].get(n, {}).get('lost', 0):,} / "
          f"{ev['per_class'].get(n, {}).get('gained', 0):,}")
         for n, v in s["per_class"].items()],
        ("class", "A decides", "B decides", "changed from", "changed to", "share changed",
         "confidence A / B", "events lost / gained"))])
    groups = Section("groups", "Per group and recording", [html_table(
        [(e(g), f"{v['windows']:,}", f"{v['changed']:,}", _pct(v["changed_fraction"]))
         for g, v in s["per_group"].items()], ("group", "decisions", "changed", "share")),
        html_table([(e(r["recording"]), e(r["group"]), f"{r['seconds']:,.1f}",
                     f"{r['windows']:,}", f"{r['changed']:,}", _pct(r["changed_fraction"]))
                    for r in s["per_recording"][:MAX_ROWS]],
                   ("recording", "group", "seconds", "decisions", "changed", "share"))])
    events = Section("events", "Events lost and gained", [
        _event_table("lost (A's events B does not have)", ev["lost"]),
        _event_table("gained (B's events A does not have)", ev["gained"])])
    body = [summary, figures, timeline, segments, classes, groups, events]
    return "\n".join([*head, *(x.html() for x in body), "</body></html>"])


def _scores(a: float | None, b: float | None) -> str:
    def one(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"
    return f"{one(a)} / {one(b)}"


def _more(n: int) -> str:
    return f"<p class='muted'>and {n - MAX_ROWS:,} more in diff.json</p>" if n > MAX_ROWS else ""


def _segment_table(segments: list[dict]) -> str:
    if not segments:
        return "<p>no decision changes</p>"
    e = html.escape
    return html_table([(e(g["recording"]), f"{g['start_s']:.2f}", f"{g['end_s']:.2f}",
                        e(g["a"]), e(g["b"]), f"{g['windows']:,}")
                       for g in segments[:MAX_ROWS]],
                      ("recording", "start (s)", "end (s)", "A", "B", "decisions")) \
        + _more(len(segments))


def _event_table(title: str, events: list[dict]) -> str:
    e = html.escape
    if not events:
        return f"<p>{e(title)}: none</p>"
    return f"<h3>{e(title)}</h3>" + html_table(
        [(e(x["recording"]), e(x["class"]), f"{x['start_s']:.2f}", f"{x['end_s']:.2f}")
         for x in events[:MAX_ROWS]], ("recording", "class", "start (s)", "end (s)")) \
        + _more(len(events))
