"""Report section for `kiloml search`: the Pareto chart, the trade-off table of the
front, and the chosen candidate's budget use on each target (estimates)."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from kiloml.report.elements import STYLE, Section, html_table, png_img, status_cell
from kiloml.report.figures import value_axis

AXES = (("flash_bytes", "flash (KB)", 1 / 1024), ("ram", "RAM + stack (KB)", 1 / 1024),
        ("latency_us", "latency (ms)", 1 / 1000), ("energy_uj", "energy / inference (uJ)", 1))


def _value(row: dict, what: str) -> float:
    e = row["estimate"]
    return e["ram_bytes"] + e["stack_bytes"] if what == "ram" else e[what]


def pareto_figure(summary: dict) -> Figure:
    rows = summary["rows"]
    scored = [r for r in rows if "score" in r]
    front = set(summary["front"])
    budget = summary["budget"]
    limits = {"flash_bytes": budget["flash_bytes"], "ram": budget["ram_bytes"],
              "latency_us": budget["latency_us"], "energy_uj": None}
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), sharey=True)
    for ax, (what, label, scale) in zip(axes, AXES, strict=True):
        others = [r for r in scored if r["key"] not in front]
        ax.scatter([_value(r, what) * scale for r in others], [r["score"] for r in others],
                   s=14, c="#bbb", label="evaluated")
        over = [r for r in scored if r["status"] != "evaluated"]
        if over:
            ax.scatter([_value(r, what) * scale for r in over], [r["score"] for r in over],
                       s=18, marker="x", c="#c0504d", label="over budget after training")
        fr = sorted((r for r in scored if r["key"] in front), key=lambda r: _value(r, what))
        ax.plot([_value(r, what) * scale for r in fr], [r["score"] for r in fr], "o",
                c="#1f77b4", ms=5, label="Pareto front")
        chosen = next(r for r in scored if r["key"] == summary["chosen"])
        ax.plot([_value(chosen, what) * scale], [chosen["score"]], "*", c="#ff7f0e", ms=15,
                label="picked")
        if limits[what]:
            ax.axvline(limits[what] * scale, color="#c0504d", ls="--", lw=1, label="budget")
        ax.set_xlabel(label)
        # logarithmic only where the candidates span decades (a log axis over less than a
        # decade labels every minor tick and the labels run together)
        value_axis(ax, [_value(r, what) * scale for r in scored]
                   + ([limits[what] * scale] if limits[what] else []), start_at_zero=False,
                   nbins=4)  # 3.5-inch panels
    axes[0].set_ylabel(f"cross-validated {summary['score'].replace('_', ' ')}")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{summary['project']}: candidates on {summary['target']} (estimates)",
                 fontsize=10)
    return fig


def tradeoff_table(summary: dict) -> str:
    by_key = {r["key"]: r for r in summary["rows"]}
    rows = []
    for key in summary["front"]:
        r = by_key[key]
        e = r["estimate"]
        rows.append(("&#9733;" if key == summary["chosen"] else "", html.escape(r["label"]),
                     f"{r['score']:.4f}", f"{r.get('cv', {}).get('accuracy_std', 0):.3f}",
                     f"{e['flash_bytes']:,}", f"{e['ram_bytes'] + e['stack_bytes']:,}",
                     f"{e['instructions_per_inference']:,}", f"{e['latency_us'] / 1000:.3f}",
                     f"{e['energy_uj']:.2f}"))
    return html_table(rows, header=("", "candidate", summary["score"], "std over folds",
                                "flash B", "RAM+stack B", "instructions", "latency ms",
                                "uJ / inference"))


def budget_use_table(summary: dict) -> str:
    from kiloml.targets.profiles import load_profile

    chosen = next(r for r in summary["rows"] if r["key"] == summary["chosen"])
    rows = []
    for name, e in sorted(chosen.get("estimates_by_target", {}).items()):
        try:
            p = load_profile(name)
        except Exception:  # a user profile that moved since the search
            continue
        flash = e["flash_bytes"] / p.flash_bytes
        ram = (e["ram_bytes"] + e["stack_bytes"]) / p.ram_bytes
        fits = flash <= 1 and ram <= 1
        rows.append((html.escape(name), f"{p.clock_hz / 1e6:g} MHz",
                     f"{e['flash_bytes']:,} ({flash:.0%})",
                     f"{e['ram_bytes'] + e['stack_bytes']:,} ({ram:.0%})",
                     f"{e['latency_us'] / 1000:.3f}", f"{e['energy_uj']:.2f}", status_cell(fits)))
    return html_table(rows, header=("target", "clock", "flash B (of the part)",
                                "RAM+stack B (of the part)", "latency ms", "uJ / inference",
                                "fits"))


def search_section(metrics: dict) -> Section | None:
    summary = metrics.get("search")
    if not summary:
        return None
    counts = ", ".join(f"{n} {html.escape(s)}" for s, n in summary["status_counts"].items())
    b = summary["budget"]
    lat = f", latency {b['latency_us'] / 1000:g} ms" if b["latency_us"] else ""
    pol = summary["policy"]
    how = ("the best score" if pol["pick"] == "most_accurate" else
           f"the lowest {pol['cost']} within {pol['accuracy_tolerance_points']:g} points of "
           f"the best score")
    section = Section("search", "Search")
    parts = section.body
    parts += [f"<p>{summary['n_candidates']} candidates ({counts}) under the budget of "
             f"{html.escape(summary['target'])}: flash {b['flash_bytes']:,} B, RAM "
             f"{b['ram_bytes']:,} B{lat}. Scores are {summary['folds']}-fold grouped "
             f"cross-validation on the training groups; costs are the estimator's. Picked by "
             f"{how}: <b>{html.escape(summary['chosen_label'])}</b>.</p>",
             png_img(pareto_figure(summary), "Pareto chart"),
             "<p class='muted'>Blue: the Pareto front, no other candidate at least as good on "
             "the score and on all four costs together (so a blue point can look dominated "
             "in one panel). Dashed: the budget.</p>",
             "<h3>Trade-offs on the Pareto front</h3>", tradeoff_table(summary),
             "<h3>The chosen candidate on each target (estimates)</h3>",
             budget_use_table(summary)]
    run = summary.get("chosen_run")
    if run and run.get("measured"):
        m = run["measured"]
        parts.append(f"<p class='muted'>Measured after the search (kiloml run): flash "
                     f"{m['flash_bytes']:,} B, RAM {m['ram_bytes']:,} B + stack "
                     f"{m['stack_bytes']:,} B, {m['instructions_per_inference']:,} "
                     f"instructions ({html.escape(m['measured_on'])}).</p>")
    return section


def render_search_report(summary: dict) -> str:
    head = (f"<!doctype html><html><head><meta charset='utf-8'><title>kiloml search: "
            f"{html.escape(summary['project'])}</title><style>{STYLE}</style></head><body>"
            f"<h1>kiloml search: {html.escape(summary['project'])}</h1>")
    section = search_section({"search": summary})
    body = section.html() if section else ""
    return head + body + "</body></html>"
