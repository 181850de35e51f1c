"""Report sections: parity of the C library with Python (host and emulated targets), and
the resources on each target against its budget (table, by stage, size and latency
figures)."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from kiloml.report.elements import Section, html_table, png_img, status_cell
from kiloml.report.figures import bar_height, bars_top_down, value_axis


def budget_figure(resources: dict) -> Figure:
    labels, used = [], []
    for target, r in resources.items():
        labels += [f"{target} flash", f"{target} RAM" + (" + stack" if "stack_bytes" in r
                                                           else "")]
        used += [100 * r["flash_fraction"], 100 * r["ram_fraction"]]
    fig, ax = plt.subplots(figsize=(6.4, bar_height(len(labels))))
    y = np.arange(len(labels))
    colors = ["#cf222e" if u > 100 else "#d4a72c" if u > 70 else "#1a7f37" for u in used]
    ax.barh(y, used, color=colors)
    ax.set_yticks(y, labels, fontsize=8)
    bars_top_down(ax, len(labels))
    ax.axvline(100, color="#cf222e", lw=1)
    ax.axvline(70, color="#d4a72c", lw=1, ls="--")
    for yi, u in zip(y, used, strict=True):
        ax.text(u, yi, f" {u:.1f}%", va="center", fontsize=8)
    ax.set_xlim(0, max(110, max(used) * 1.15))
    ax.set_xlabel("% of budget")
    ax.set_title("Library size against the target budget", fontsize=10)
    return fig


def latency_figure(resources: dict) -> Figure:
    """Latency per inference on each target (max over the held-out set; mean and budget
    marked). Linear unless the targets' latencies span more than a factor LOG_SPAN."""
    names = [t for t, r in resources.items() if "latency_us" in r]
    fig, ax = plt.subplots(figsize=(6.4, max(2.0, bar_height(len(names)))))
    y = np.arange(len(names))
    worst = [resources[t]["latency_us"] / 1000 for t in names]
    colors = ["#9a9a9a" if resources[t].get("estimated") else "#4c72b0" for t in names]
    ax.barh(y, worst, color=colors)
    marks = list(worst)
    for yi, t in zip(y, names, strict=True):
        r = resources[t]
        if "instructions_mean" in r and r["instructions_per_inference"]:
            mean_ms = r["latency_us"] * r["instructions_mean"] / r["instructions_per_inference"]
            ax.plot([mean_ms / 1000], [yi], "k|", markersize=14)
        label = f" {r['latency_us'] / 1000:.3g} ms" + (" (est.)" if r.get("estimated") else "")
        ax.text(r["latency_us"] / 1000, yi, label, va="center", fontsize=8)
        if r.get("latency_budget_us"):
            ax.plot([r["latency_budget_us"] / 1000], [yi], "r|", markersize=16)
            marks.append(r["latency_budget_us"] / 1000)
    ax.set_yticks(y, names, fontsize=8)
    bars_top_down(ax, len(names))
    value_axis(ax, marks)
    ax.set_xlabel("ms per inference at the target clock (black |: mean, red |: budget)")
    ax.set_title("Inference latency (worst held-out window)", fontsize=10)
    return fig


def parity_section(metrics: dict) -> Section | None:
    if not metrics["parity"]:
        return None
    s = Section("parity", "Parity: C library against Python")
    s.body.append("<p class='muted'>Every held-out window through <code>kml_classify</code>, "
                  "and every held-out recording fed sample by sample through "
                  "<code>kml_push_sample</code>, compared with the Python reference.</p>")
    rows = []
    for where, p in metrics["parity"].items():
        if where != "host" and not p.get("emulated", False):
            rows.append((html.escape(where), html.escape(p.get("note", "not checked")), "", "",
                         "<span class='warn'>not run</span>"))
            continue
        st = p["streaming"]
        label = "host (gcc)" if where == "host" else f"{where} (QEMU {p.get('machine', '')})"
        rows.append((
            html.escape(label),
            f"{p['decisions_equal']} / {p['n']} decisions equal",
            ("features bit-exact" if p["features_bit_exact"]
             else f"features differ (max {p['max_abs_feature_diff']:.1e})")
            + f", max |score diff| {p['max_abs_score_diff']:.1e}",
            f"streaming {st['decisions_equal']} / {st['n_windows']} on {st['n_recordings']} "
            f"recordings" + ("" if st["windows_equal"] else ", windows differ"),
            status_cell(p["all_decisions_equal"] and st["all_decisions_equal"])))
    s.body.append(html_table(rows, header=("where", "kml_classify", "detail", "kml_push_sample",
                                           "status")))
    stage_rows = []
    for where, p in metrics["parity"].items():
        for stage, st in p.get("features_by_stage", {}).items():
            stage_rows.append((html.escape(where), html.escape(stage), st["n_features"],
                               f"{st['max_abs_error']:.1e}", f"{st['max_rel_error']:.1e}",
                               "yes" if st["bit_exact"] else "no"))
    if stage_rows:
        s.body.append("<h3>Features by stage</h3>")
        s.body.append(html_table(stage_rows, header=("where", "stage", "features",
                                                     "max abs error", "max rel error",
                                                     "bit-exact")))
    return s


def _figure_text(r: dict, key: str, fmt: str) -> str:
    if key not in r or r[key] is None:
        return "&ndash;"
    text = fmt.format(r[key])
    return f"{text} <span class='muted'>(est.)</span>" if key in set(r.get("estimated", [])) \
        else text


def resources_section(metrics: dict) -> Section | None:
    if not metrics["resources"]:
        return None
    s = Section("resources", "Resources against the budget")
    rows = []
    for target, r in metrics["resources"].items():
        rows.append((html.escape(target),
                     f"{r['flash_bytes']:,} / {r['flash_budget_bytes']:,} B",
                     f"{r['ram_bytes']:,} + stack {_figure_text(r, 'stack_bytes', '{:,}')} / "
                     f"{r['ram_budget_bytes']:,} B",
                     _figure_text(r, "instructions_per_inference", "{:,}"),
                     _figure_text(r, "latency_us", "{:,.1f} &micro;s"),
                     _figure_text(r, "energy_uj", "{:.3f} &micro;J"),
                     html.escape(r["measured_on"]), status_cell(r["status"])))
    s.body.append(html_table(rows, header=("target", "flash / budget", "RAM / budget",
                                           "instructions per inference (max)", "latency",
                                           "energy", "measured on", "status")))
    for target, r in metrics["resources"].items():
        if "cycles_per_instruction" in r:
            s.body.append(f"<p class='muted'>{html.escape(target)}: latency and energy assume "
                          f"{r['cycles_per_instruction']:g} cycles per instruction at "
                          f"{r['clock_hz'] / 1e6:g} MHz and {html.escape(r['power_source'])}. "
                          f"Flash includes the runtime support the library pulls from libgcc "
                          f"and newlib ({r['runtime_support_flash_bytes']:,} B). Built with "
                          f"{html.escape(r['compiler'])}.</p>")
        for note in r["notes"]:
            s.body.append(f"<p class='warn'>{html.escape(target)}: {html.escape(note)}</p>")
    for target, res in metrics["resources"].items():
        if not res.get("stages"):
            continue
        rows = [(html.escape(st["stage"]), f"{st['flash_bytes']:,} B", f"{st['ram_bytes']:,} B",
                 "&ndash;" if st["instructions"] is None else f"{st['instructions']:,.0f}")
                for st in res["stages"]]
        s.body.append(f"<h3>{html.escape(target)}: by stage</h3>")
        s.body.append(html_table(rows, header=("stage", "flash", "static RAM",
                                               "instructions per window")))
        s.body.append(f"<p class='muted'>Measured in QEMU: flash and RAM from the symbols of "
                      f"the linked firmware (helpers from libgcc/newlib are not attributed), "
                      f"instructions from a build with a marker between stages (mean of the "
                      f"first windows). Each pushed sample costs "
                      f"{res.get('push_sample_instructions_mean', 0):,.1f} instructions on "
                      f"average (max {res.get('push_sample_instructions_max', 0):,}), "
                      f"preprocessing included.</p>")
    figs = [png_img(budget_figure(metrics["resources"]), "library size against the budget")]
    if any("latency_us" in r for r in metrics["resources"].values()):
        figs.append(png_img(latency_figure(metrics["resources"]), "inference latency"))
    s.body.append("<div class='figs'>" + "".join(figs) + "</div>")
    return s
