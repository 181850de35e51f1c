"""Report section: the data checks of `kiloml check-data` (class balance, groups, duplicates
across the split, group bias, feature shift, suspect labels, constant or clipped channels)."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from kiloml.report.elements import Section, html_table, name_list, png_img, short_label, status_cell
from kiloml.report.figures import bar_height, bars_top_down, top_bottom

GROUPS_SHOWN = 30  # accuracy per group: the 15 best and the 15 worst beyond this

TITLES = {"class_balance": "class balance", "groups": "windows per group",
          "duplicates": "duplicates across the split", "group_bias": "group bias",
          "feature_shift": "train/test feature shift", "suspect_labels": "suspect labels",
          "channels": "constant or clipped channels"}


def balance_figure(check: dict) -> Figure:
    names = list(check["train_windows_per_class"])
    train = np.array(list(check["train_windows_per_class"].values()))
    test = np.array(list(check["test_windows_per_class"].values()))
    fig, ax = plt.subplots(figsize=(5.6, bar_height(len(names))))
    y = np.arange(len(names))
    ax.barh(y, train, color="#4c72b0", label="training groups")
    ax.barh(y, test, left=train, color="#dd8452", label="held-out groups")
    ax.set_yticks(y, [short_label(n) for n in names], fontsize=8)
    bars_top_down(ax, len(names))
    ax.set_xlabel("windows")
    ax.set_title(f"Windows per class (imbalance {check['imbalance_ratio']:.2f})")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def bias_figure(check: dict) -> Figure:
    acc = check["accuracy_per_group"]
    groups, values, rest = top_bottom(list(acc), list(acc.values()), GROUPS_SHOWN)
    held = set(check.get("held_out_groups", []))
    low = set(check["low_groups"])
    fig, ax = plt.subplots(figsize=(5.6, bar_height(len(groups))))
    y = np.arange(len(groups))
    colors = ["#cf222e" if g in low else "#dd8452" if g in held else "#4c72b0" for g in groups]
    ax.barh(y, [np.nan if v is None else v for v in values], color=colors)
    ax.set_yticks(y, [short_label(f"{g} (held out)" if g in held else g)
                      for g in groups], fontsize=8)
    bars_top_down(ax, len(groups))
    ax.axvline(check["median_accuracy"], color="0.4", lw=1, label="median")
    ax.axvline(check["median_accuracy"] - check["margin"], color="#cf222e", ls="--", lw=1,
               label=f"median - {check['margin']:g}")
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("accuracy")
    ax.set_title("Accuracy per group (cross-validation; held out: final model)"
                 + (f"\nthe {GROUPS_SHOWN // 2} highest and lowest of {len(acc):,} groups"
                    if rest else ""), fontsize=10)
    # below the axis label, the same distance whatever the figure's height
    ax.legend(fontsize=8, loc="upper center", ncol=2,
              bbox_to_anchor=(0.5, -0.55 / (bar_height(len(groups)) - 1.0)))
    return fig


def _details(checks: dict) -> list[str]:
    parts: list[str] = []
    dup = checks["duplicates"]
    if dup["examples"]:
        parts.append("<h3>Held-out windows matching a training window</h3>")
        parts.append(html_table([(html.escape(e["test_recording"]), f"{e['test_offset_s']:g} s",
                              html.escape(e["train_recording"]), f"{e['train_offset_s']:g} s",
                              f"{e['distance']:.3g}") for e in dup["examples"]],
                            header=("held-out recording", "offset", "training recording",
                                    "offset", "RMS distance (stds)")))
    sus = checks["suspect_labels"]
    if sus["suspects"]:
        parts.append("<h3>Recordings with suspect labels</h3>")
        parts.append(html_table([(html.escape(s["recording"]), html.escape(s["group"]),
                              html.escape(s["label"]), f"{s['label_probability']:.2f}",
                              html.escape(s["looks_like"]), f"{s['other_probability']:.2f}",
                              s["windows"]) for s in sus["suspects"]],
                            header=("recording", "group", "label", "mean p(label)",
                                    "looks like", "mean p", "windows")))
    ch = checks["channels"]
    if ch["issues"]:
        parts.append("<h3>Constant or clipped channels</h3>")
        parts.append(html_table([(html.escape(i["recording"]), html.escape(i["channel"]),
                              i["issue"], f"{i['value']:g}",
                              f"{i['fraction_at_min_or_max']:.1%} at its {i['at']}"
                              if i["issue"] == "clipped" else "") for i in ch["issues"]],
                            header=("recording", "channel", "issue", "value", "detail")))
    shift = checks["feature_shift"]
    parts.append("<h3>Most shifted features (training against held-out windows)</h3>")
    parts.append(html_table([(html.escape(t["feature"]), f"{t['ks']:.3f}",
                          status_cell("warn" if t["ks"] > shift["threshold"] else "ok"))
                         for t in shift["top"]], header=("feature", "KS statistic", "")))
    return parts


def data_checks_section(metrics: dict) -> Section | None:
    """``metrics["data_checks"]`` (None when `kiloml check-data` has not run)."""
    checks = metrics.get("data_checks")
    if not checks:
        return None
    info = metrics.get("data_checks_info", {})
    section = Section("data-checks", "Data checks")
    parts = section.body
    parts.append(
             f"<p class='muted'>From <code>kiloml check-data</code> on "
             f"{info.get('n_windows', '?')} windows of {info.get('n_recordings', '?')} "
             f"recordings, split as the run splits "
             f"them (held-out groups {name_list(info.get('test_groups', []))}). "
             f"Predictions: {html.escape(info.get('model', ''))}, "
             f"{html.escape(info.get('predictions', ''))}. Augmentation "
             f"{html.escape(info.get('augmentation', 'not applied'))}. Thresholds are in "
             f"metrics.json under <code>data_checks</code>.</p>")
    if "note" in info:
        parts.append(f"<p class='warn'>{html.escape(info['note'])}</p>")
    parts.append(html_table([(html.escape(TITLES.get(k, k)), status_cell(c["status"]),
                          html.escape(c["summary"])) for k, c in checks.items()],
                        header=("check", "status", "finding")))
    figs = []
    if "train_windows_per_class" in checks.get("class_balance", {}):
        figs.append(png_img(balance_figure(checks["class_balance"]), "windows per class"))
    if checks.get("group_bias", {}).get("median_accuracy") is not None:
        figs.append(png_img(bias_figure(checks["group_bias"]), "accuracy per group"))
    if figs:
        parts.append("<div class='figs'>" + "".join(figs) + "</div>")
    parts.extend(_details(checks))
    return section
