"""Report section: the decision layer (parameters, parity) and what it does to events on
the held-out stream (false alarms per hour, missed events, latency, chatter)."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from kiloml.report.elements import Section, html_table, png_img, short_label, status_cell


def timeline_figure(timeline: dict, class_names: list[str]) -> Figure:
    t = np.asarray(timeline["time_s"]) / 60.0
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(10, max(3.2, 0.22 * k + 1.6)))
    offsets = {"truth": 0.0, "raw": 0.15, "decision": -0.15}
    styles = {"truth": ("k", 2.5), "raw": ("#c0504d", 0.8), "decision": ("#1f77b4", 1.5)}
    for key in ("truth", "raw", "decision"):
        y = np.asarray(timeline[key], dtype=float)
        y = np.where(y < 0, np.nan, y) + offsets[key]  # uncertain: a gap in the line
        color, width = styles[key]
        ax.step(t, y, where="post", color=color, lw=width,
                label={"truth": "true class", "raw": "model arg-max",
                       "decision": "decision layer"}[key])
    ax.set_yticks(range(k), [short_label(c, 24) for c in class_names],
                  fontsize=8 if k <= 24 else max(4.0, 8 * 24 / k))
    ax.set_xlabel("time (min), held-out recordings end to end")
    ax.set_title("Decisions on the held-out stream (gaps: uncertain)", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=8, ncol=3)
    return fig


def decision_section(metrics: dict) -> Section | None:
    d = metrics.get("decision")
    if not d:
        return None
    p = d["params"]
    names = metrics["data"]["class_names"]
    section = Section("decision", "Decision layer")
    parts = section.body
    for w in d.get("warnings", []):
        parts.append(f"<p class='warn'>Warning: {html.escape(w['message'])}</p>")
    setting = [
        ("thresholds", html.escape(
            "calibrated for " + p["calibration"]["target"].replace("_", " ")
            + f" {p['calibration']['target_value']:g} on "
            f"{p['calibration']['validation_windows']} out-of-fold windows"
            if p.get("calibration") else "none")),
        ("uncertain below", f"score {p['min_score']:g}, margin {p['min_margin']:g}"),
        ("smoothing", html.escape(f"{p['smoothing']} over {p['smoothing_windows']} windows")),
        ("hysteresis", f"{p['on_windows']} windows to switch on, {p['off_windows']} to "
                       f"switch off"),
    ]
    parts.append(html_table(setting))
    if p.get("calibration"):
        low = {w["class"] for w in d.get("warnings", [])}
        rows = [(f"<span class='warn'>{html.escape(c)}</span>" if c in low else html.escape(c),
                 f"{v['threshold']:.4f}", f"{v['precision']:.3f}", f"{v['recall']:.3f}",
                 "&ndash;" if "argmax_recall" not in v else f"{v['argmax_recall']:.3f}",
                 f"{v['false_alarms_per_hour']:.1f}")
                for c, v in p["calibration"]["per_class"].items()]
        parts.append(html_table(rows, header=("class", "threshold", "precision (validation)",
                                              "recall", "recall of the arg-max alone",
                                              "false alarms / h")))
    if "raw" in d:
        s = d["stream"]
        parts.append(f"<p class='muted'>{s['recordings']} held-out recordings end to end "
                     f"({s['hours'] * 60:.1f} min, {s['windows']} windows). An event is a run "
                     f"of one true class; a false alarm is a switch to a class that is not "
                     f"the true one.</p>")
        rows = []
        for key, label in (("raw", "model arg-max"), ("decision", "decision layer")):
            e = d[key]
            lat = "-" if e["latency_s_mean"] is None else \
                f"{e['latency_s_mean']:.1f} / {e['latency_s_max']:.1f}"
            rows.append((label, f"{e['false_alarms_per_hour']:.1f}",
                         f"{e['missed_events']} / {e['events']}", lat,
                         f"{e['switches_per_hour']:.0f}", f"{e['uncertain_fraction']:.1%}",
                         f"{e['window_accuracy']:.3f}"))
        parts.append(html_table(rows, header=("", "false alarms / h", "missed events",
                                          "latency s (mean / max)", "switches / h",
                                          "uncertain", "window accuracy")))
        if "timeline" in d:
            parts.append(png_img(timeline_figure(d["timeline"], names), "decision timeline"))
    rows = []
    for where, par in metrics.get("parity", {}).items():
        layer = par.get("streaming", {}).get("decision_layer")
        if layer:
            rows.append((html.escape(where), f"{layer['decisions_equal']} / {layer['n']}",
                         "yes" if layer["device_scores_bit_exact"] else "no",
                         "yes" if layer["smoothed_bit_exact"] else "no",
                         layer["switches"], status_cell(layer["all_equal"])))
    if rows:
        parts.append("<h3>kml_decide_latest against the Python twin</h3>")
        parts.append(html_table(rows, header=("where", "decisions and switches equal",
                                          "scores bit-exact", "smoothed bit-exact",
                                          "switches", "status")))
    return section


def rule_section(metrics: dict) -> Section | None:
    r = metrics.get("rule_baseline")
    if not r:
        return None
    res = next(iter(metrics.get("resources", {}).values()), {})
    ev = metrics["evaluation"]
    section = Section("rule", "Is ML needed? The best simple rule")
    parts = section.body
    parts.append(f"<p><b>Verdict:</b> {html.escape(r['verdict'])}.</p>")
    instr = r.get("instructions_per_inference")
    rows = [("rule (depth-" + str(r["depth"]) + " tree)", f"{r['accuracy']:.4f}",
             f"{r['balanced_accuracy']:.4f}", f"{r['flash_bytes']:,}",
             "-" if instr is None else f"{instr:,}"),
            ("model", f"{ev['accuracy']:.4f}", f"{ev['balanced_accuracy']:.4f}",
             f"{res['flash_bytes']:,}" if "flash_bytes" in res else "-",
             f"{res['instructions_per_inference']:,}"
             if res.get("instructions_per_inference") else "-")]
    parts.append(html_table(rows, header=("", "accuracy", "balanced accuracy", "flash B",
                                      "instructions / inference")))
    parts.append(f"<p class='muted'>{html.escape(r['note'])}; chosen by grouped "
                 f"cross-validation among depths "
                 f"{', '.join(map(str, r['cv_balanced_accuracy_by_depth']))}; its C is "
                 f"verified like the model's (host parity "
                 f"{'ok' if r['parity_host'] else 'FAILED'}).</p>")
    parts.append(f"<pre>{html.escape(r['rule'])}</pre>")
    return section
