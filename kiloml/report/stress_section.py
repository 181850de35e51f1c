"""Report section: accuracy under sensor perturbations (`kiloml stress`), with and without
training-time augmentation, and the breaking points."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kiloml.report.elements import Section, html_table, name_list, png_img
from kiloml.report.figures import grid_shape


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "none within range"
    return f"{value:.3g} {html.escape(unit)}"


def stress_figure(stress: dict, augmented: dict, drop_points: float) -> Figure:
    names = list(stress)
    rows, cols = grid_shape(len(names))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for entry, label, color in ((stress[name], "trained as run", "#4c72b0"),
                                    (augmented.get(name), "with augmentation", "#dd8452")):
            if entry is None:
                continue
            acc = [np.nan if a is None else a for a in entry["accuracy"]]
            ax.plot(entry["severities"], acc, "o-", color=color, ms=3, lw=1.4, label=label)
            ax.axhline(entry["baseline_accuracy"] - drop_points / 100.0, color=color, lw=0.8,
                       ls=":")
            if entry["breaking_point"] is not None:
                ax.axvline(entry["breaking_point"], color=color, lw=0.8, ls="--")
        if stress[name]["more_severe"] == "lower":
            ax.invert_xaxis()  # severity grows to the right in every panel
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xlabel(stress[name]["unit"], fontsize=8)
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # 3.4-inch panels: few labels
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("held-out accuracy", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"Accuracy against severity (dotted: {drop_points:g} points below the "
                 f"unperturbed accuracy;\ndashed: breaking point)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    return fig


def stress_section(metrics: dict) -> Section | None:
    """The stress results in ``metrics`` (None when `kiloml stress` has not run)."""
    stress = metrics.get("stress")
    if not stress:
        return None
    info = metrics.get("stress_info", {})
    augmented = metrics.get("stress_augmented", {})
    drop = info.get("drop_points", 5.0)
    section = Section("stress", "Stress: accuracy under sensor perturbations")
    parts = section.body
    parts += [f"<p class='muted'>The held-out recordings (groups "
             f"{name_list(info.get('test_groups', []))}) perturbed before "
             f"preprocessing, evaluated with the Python reference (the C library decides the "
             f"same). Breaking point: {html.escape(info.get('breaking_point', ''))}. "
             f"Unperturbed accuracy {info.get('baseline_accuracy', float('nan')):.4f}"]
    aug = info.get("augmentation")
    if aug and augmented:
        parts[-1] += (f"; with augmentation {aug['baseline_accuracy']:.4f} (the model "
                      f"retrained on {aug['training_recordings']} training recordings plus "
                      f"{aug['perturbed_copies']} perturbed copies, {aug['training_windows']:,} "
                      f"windows; each copy one perturbation at a random severity within the "
                      f"span tried)")
    parts[-1] += ".</p>"
    if info.get("note"):
        parts.append(f"<p class='warn'>{html.escape(info['note'])}</p>")
    rows = []
    for name, e in stress.items():
        a = augmented.get(name)
        worst = e["accuracy"][-1]
        rows.append((
            html.escape(name.replace("_", " ")),
            html.escape(e["description"]),
            f"{e['severities'][0]:g} &rarr; {e['severities'][-1]:g} {html.escape(e['unit'])}",
            _fmt(e["breaking_point"], e["unit"])
            + ("" if e["breaking_point_interpolated"] or e["breaking_point"] is None
               else " <span class='muted'>(tried)</span>"),
            "&ndash;" if a is None else _fmt(a["breaking_point"], a["unit"]),
            "&ndash;" if worst is None else f"{worst:.3f}",
            "&ndash;" if a is None or a["accuracy"][-1] is None
            else f"{a['accuracy'][-1]:.3f}"))
    parts.append(html_table(rows, header=("perturbation", "what", "severities",
                                      "breaking point", "with augmentation",
                                      "accuracy at the worst", "with augmentation")))
    swaps = [(n, stress[n]["channels"]) for n in ("axis_swap", "sign_flip")
             if n in stress and stress[n].get("channels")]
    if swaps:
        text = "; ".join(f"{n.replace('_', ' ')} takes "
                         + ", ".join("&harr;".join(html.escape(x) for x in c)
                                     if isinstance(c, list) else html.escape(c)
                                     for c in chans) + " in that order"
                         for n, chans in swaps)
        parts.append(f"<p class='muted'>{text}.</p>")
    parts.append(png_img(stress_figure(stress, augmented, drop), "accuracy against severity"))
    return section
