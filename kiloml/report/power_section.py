"""Report section: energy per inference, average power against the inference rate,
battery life and the highest rate within the power budget."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from kiloml.report.elements import Section, html_table, png_img, status_cell
from kiloml.report.figures import value_axis


def power_figure(pw: dict, target: str) -> Figure:
    rates = np.logspace(-2, 3, 200)
    busy_push = pw["sample_rate_hz"] * pw["energy_per_sample_push_uj"]
    t_inf = pw["active_time_per_inference_us"] / 1e6
    sleep = pw["sleep_power_uw"]
    # the same model as kiloml/targets/power.py (push time is a tiny share of the sleep)
    avg = rates * pw["energy_per_inference_uj"] + busy_push + sleep * np.clip(
        1 - rates * t_inf, 0, 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(rates, avg, label="average power")
    ax.set_xscale("log")
    ax.axhline(pw["power_budget_uw"], color="#c0504d", ls="--", label="budget")
    ax.axhline(sleep, color="#999", ls=":", label="sleep floor")
    ax.axvline(pw["inference_rate_hz"], color="k", lw=0.8, label="this project's rate")
    # logarithmic in power only across decades (budget, sleep floor and curve together)
    value_axis(ax, [float(avg.min()), float(avg.max()), pw["power_budget_uw"], sleep], "y",
               start_at_zero=False)
    ax.set_xlabel("inferences per second")
    ax.set_ylabel("uW")
    ax.set_title(f"{target}: processor power", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def power_section(metrics: dict) -> Section | None:
    power = metrics.get("power")
    if not power:
        return None
    section = Section("power", "Power")
    parts = section.body
    rows = [(html.escape(t), f"{p['energy_per_inference_uj']:.2f}",
             f"{p['average_power_uw']:,.1f}", f"{p['inference_rate_hz']:g}",
             f"{p['battery_life_days']:,.1f} ({p['battery_mah']:g} mAh)",
             f"{p['max_inference_rate_hz_within_budget']:g}",
             status_cell(bool(p["within_power_budget"])))
            for t, p in power.items()]
    parts.append(html_table(rows, header=("target", "uJ / inference", "average uW",
                                      "inferences / s", "battery days",
                                      "max rate in budget", "budget")))
    for target, p in power.items():
        parts.append(f"<p class='muted'>{html.escape(target)}: budget "
                     f"{p['power_budget_uw']:g} uW; instructions from "
                     f"{html.escape(p['instructions_from'])}; currents: "
                     f"{html.escape(p['assumptions'])}. Sensor, ADC and radio power are not "
                     f"included.</p>")
    parts.append("<div class='figs'>" + "".join(png_img(power_figure(p, t), f"{t} power")
                                                for t, p in power.items()) + "</div>")
    return section
