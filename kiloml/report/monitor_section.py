"""Report section: the on-device monitor (what it watches, its cost on the target, parity
with the C), its alarm limits against the false-alarm budget, false alarms on the clean
held-out devices and the detection delay of gradual drifts next to the baselines."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from kiloml.report.elements import Section, html_table, png_img, status_cell

DETECTOR_COLORS = {"kiloml monitor (calibrated)": "#1f77b4",
                   "kiloml monitor (training defaults)": "#9ecae1",
                   "ADWIN (river defaults)": "#ff7f0e", "KSWIN (river defaults)": "#2ca02c"}


def timeline_figure(timelines: list[dict], ood_limit: float, z_limit: float) -> Figure:
    """Per device stream: the running OOD score and the largest |EWMA z| over time, the
    windows the monitor flagged shaded, the limits dashed."""
    n = len(timelines)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.9 * n + 0.6), squeeze=False)
    for ax, tl in zip(axes[:, 0], timelines, strict=True):
        t = np.asarray(tl["time_s"]) / 60.0
        ax.plot(t, tl["ood"], color="#1f77b4", lw=1.0, label="OOD score (running)")
        ax.plot(t, tl["drift_z"], color="#ff7f0e", lw=1.0, label="largest |EWMA z|")
        top = max([1.0, *tl["ood"], *tl["drift_z"]])
        flagged = np.asarray(tl["flagged"], bool)
        if flagged.any():
            ax.fill_between(t, 0, top, where=flagged, step="post", color="#cf222e",
                            alpha=0.15, lw=0, label="flagged")
        for v, c in ((ood_limit, "#1f77b4"), (z_limit, "#ff7f0e")):
            if v < top * 10:
                ax.axhline(v, color=c, ls="--", lw=0.8)
        if "onset_s" in tl:
            ax.axvline(tl["onset_s"] / 60.0, color="k", lw=1.0, ls=":", label="drift onset")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(f"device {tl['device']}: {tl['what']}", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[-1, 0].set_xlabel("device time (min)")
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=5)
    fig.tight_layout()
    return fig


def delay_figure(summary: dict, ramp_s: float) -> Figure:
    """Per perturbation: median delay (onset to first alarm) against severity per detector;
    a severity where no device was detected is drawn at the top as x."""
    perts: dict[str, list] = {}
    for det, s in summary.items():
        for e in s["drift"]:
            perts.setdefault(e["perturbation"], []).append((det, e))
    n = len(perts)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.5 * rows + 0.8), squeeze=False)
    worst = max([ramp_s, *(e["delay_s_max"] or 0 for v in perts.values() for _, e in v)])
    ceiling = worst * 1.3
    for ax, (pert, rows_) in zip(axes.flat, perts.items(), strict=False):
        by_det: dict[str, list] = {}
        for det, e in rows_:
            by_det.setdefault(det, []).append(e)
        for det, es in by_det.items():
            if det == "do-nothing" or det.startswith("periodic"):
                continue  # never within the plotted range (missed / half a period)
            x = [f"{e['severity']:g}" for e in es]
            y = [e["delay_s_median"] if e["delay_s_median"] is not None else ceiling
                 for e in es]
            # a detector already alarming before the onset is "fast" by chance: dashed
            early = any(e["alarms_before_onset"] for e in es)
            ax.plot(x, y, marker="o", lw=1.2, color=DETECTOR_COLORS.get(det),
                    ls="--" if early else "-",
                    label=det + (" (alarms before the onset)" if early else ""))
            miss = [i for i, e in enumerate(es) if e["delay_s_median"] is None]
            if miss:
                ax.scatter([x[i] for i in miss], [ceiling] * len(miss), marker="x",
                           color="#cf222e", zorder=3)
        ax.axhline(ramp_s, color="#888", lw=0.7, ls=":")
        ax.set_ylim(0, ceiling * 1.05)
        ax.set_title(pert, fontsize=9)
        ax.set_xlabel("severity", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes[0, 0].set_ylabel("median delay (s)", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    fig.suptitle(f"Detection delay against severity (drift ramps in over {ramp_s:g} s, "
                 "dotted; x: missed on every device)", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return fig


def _cost(m: dict, feature_names: list[str]) -> list[str]:
    p = m["params"]
    t = p["thresholds"]
    # a raw-window network's monitor names its own inputs (the channels' means, variances)
    names = p.get("names") or [feature_names[i] if 0 <= i < len(feature_names) else str(i)
                               for i in p["index"]]
    rows = [("monitored features", html.escape(", ".join(names))),
            ("channels watched for stuck", str(p["n_channels"])),
            ("OOD score", f"energy of the network's logits less a training offset "
             f"({p['energy_offset']:.4g})" if p.get("ood") == "energy"
             else "mean squared z of the monitored features"),
            ("EWMA weight", f"{p['alpha']:g}"), ("limits", html.escape(t["source"])),
            ("RAM estimate", f"{m['ram_estimate']['total']} B"),
            ("telemetry record", f"48 B every {m['snapshot_every']} windows")]
    for target, r in m.get("resources", {}).items():
        if "flash_bytes" in r:
            rows.append((html.escape(f"on {target}"),
                         f"+{r['flash_bytes']:,} B flash, +{r['ram_bytes']:,} B RAM, "
                         + (f"{r['instructions_per_update_mean']:,.0f} instructions per "
                            "update" if r.get("instructions_per_update_mean") else "")))
    return [html_table(rows)]


def _calibration(c: dict) -> list[str]:
    lo, hi = c["arl_interval_s"]
    return [f"<p>Limits for a false alarm every <b>{html.escape(c['false_alarm_every'])}</b> "
            f"of device time ({c['budget_windows']:,} windows at {c['stride_s']:g} s), from "
            f"{c['clean_windows']:,} clean windows of {c['clean_streams']} held-out device(s) "
            f"({html.escape(', '.join(map(str, c.get('devices', []))))}): moving blocks of "
            f"{c['block_windows']} windows, {c['bootstrap_streams']} bootstrapped streams of "
            f"{c['stream_windows']:,}, each stream's maxima Gumbel-fitted; limits set for "
            f"{c['safety']:g} x the budget; estimated run length to a false alarm 5-95 %: "
            f"{lo / 3600:.1f}-{hi / 3600:.1f} h.</p>"]


def _clean(e: dict) -> list[str]:
    dets = e["detectors"]
    rows = []
    for det in dets:
        s = e["summary"][det]
        cells = [f"{r['detectors'][det]['alarms']}" for r in e["clean"]]
        boot = s["bootstrap_per_device_day"]
        rows.append((html.escape(det), *cells,
                     f"{s['clean_per_device_day']:.1f}" if s["clean_per_device_day"]
                     is not None else "-", "-" if boot is None else f"{boot:.1f}"))
    header = ("detector", *(f"device {r['device']}: alarms in {r['hours'] * 60:.0f} min"
                            for r in e["clean"]), "per device-day",
              "per bootstrapped device-day")
    out = ["<h3>False alarms on the clean held-out devices</h3>", html_table(rows, header)]
    loo = [r for r in e.get("leave_one_device_out", [])]
    if loo:
        rows = [(html.escape(str(r["device"])),
                 html.escape(r["error"]) if "error" in r else
                 f"{r['alarms']} in {r['windows']} windows; "
                 f"{r['bootstrap_per_device_day']:.1f} per bootstrapped device-day")
                for r in loo]
        out += ["<p>Each device with the limits calibrated on the other devices only (a "
                "device the calibration never saw: the figure that transfers to new "
                "devices):</p>", html_table(rows, ("device", "false alarms"))]
    return out


def _delays(e: dict) -> list[str]:
    dets = [d for d in e["detectors"] if d != "do-nothing"]
    keys = [(x["perturbation"], x["severity"]) for x in e["summary"][dets[0]]["drift"]]
    rows = []
    for i, (pert, sev) in enumerate(keys):
        cells = []
        for det in dets:
            x = e["summary"][det]["drift"][i]
            text = "missed" if x["delay_s_median"] is None else \
                f"{x['delay_s_median']:.0f} s ({x['detected']}/{x['streams']})"
            if x["alarms_before_onset"]:
                text += f", {x['alarms_before_onset']} FA before"
            cells.append(text)
        rows.append((pert, f"{sev:g}", *cells))
    return ["<h3>Detection delay of gradual drifts</h3>",
            f"<p class='muted'>kiloml stress's perturbations grow from 0 to full severity over "
            f"{e['ramp_s']:g} s; median delay from the onset to the first alarm (drifted "
            "streams detected / streams: each held-out device from several onsets for the "
            "monitors, from the first for the baselines). The do-nothing detector misses "
            "everything.</p>",
            html_table(rows, ("perturbation", "severity", *map(html.escape, dets)))]


def monitor_section(metrics: dict) -> Section | None:
    m = metrics.get("monitor")
    if not m:
        return None
    section = Section("monitor", "On-device monitor and alarms")
    parts = section.body
    parts += _cost(m, metrics.get("features", {}).get("names", []))
    rows = []
    for where, par in metrics.get("parity", {}).items():
        mon = par.get("streaming", {}).get("monitor")
        if mon:
            rows.append((html.escape(where), f"{mon['n']}", mon.get("n_snapshots", "-"),
                         mon.get("windows_flagged", "-"),
                         status_cell(mon["flags_equal"] and mon["snapshots_equal"])))
    if rows:
        parts.append("<h3>kml_monitor.c against the Python twin</h3>")
        parts.append(html_table(rows, ("where", "windows", "telemetry records",
                                       "windows flagged", "flags and records equal")))
    if "calibration" in m:
        parts.append("<h3>Alarm limits from the false-alarm budget</h3>")
        parts += _calibration(m["calibration"])
    e = m.get("evaluation")
    if e:
        if not e["river"]:
            parts.append("<p class='muted'>river is not installed (pip install "
                         "'kiloml[bench]'): ADWIN and KSWIN left out.</p>")
        parts += _clean(e)
        t = m["params"]["thresholds"]
        if e.get("timelines"):
            parts.append(png_img(timeline_figure(e["timelines"], t["ood_limit"],
                                                 t["z_limit"]), "monitor alarm timeline"))
        if e["drift"]:
            parts += _delays(e)
            parts.append(png_img(delay_figure(e["summary"], e["ramp_s"]),
                                 "detection delay against severity"))
    return section
