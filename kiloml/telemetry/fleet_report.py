"""`kiloml fleet report`: one self-contained HTML file (plots as embedded PNGs, in the
style of kiloml's run report) and optionally the same content as JSON; both written whole
or not at all."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from kiloml.atomic import write_text_atomically
from kiloml.optional import needs
from kiloml.outputs import Protected, check_output_file
from kiloml.report.elements import FAIL_COLOR, STYLE, Section, html_table, name_list, png_img
from kiloml.report.figures import grid_shape
from kiloml.telemetry.db import open_database
from kiloml.telemetry.fleet_data import (
    CONFIRM_RECORDS,
    SIGNALS,
    DeviceSeries,
    fleet_summary,
    read_reference,
)

with needs("sqlalchemy", "kiloml fleet"):
    from sqlalchemy.engine import make_url

__all__ = ["render_fleet_report", "write_fleet_report"]

DEVICES_PLOTTED = 12  # per-device panels: the top of the ranking
CLEAN_COLOR = "#8c959f"
# boxplot's orientation= arrived in Matplotlib 3.10 and vert= is deprecated from 3.11
HORIZONTAL = ({"orientation": "horizontal"}
              if tuple(int(p) for p in matplotlib.__version__.split(".")[:2]) >= (3, 10)
              else {"vert": False})


def write_fleet_report(url: str, out: Path, json_out: Path | None = None,
                       run: Path | None = None, confirm: int = CONFIRM_RECORDS
                       ) -> dict[str, Any]:
    """Read the database at ``url``, write the report (and the JSON); returns the JSON."""
    protected = ([Protected("the run's metrics.json", Path(run) / "metrics.json", folder=False)]
                 if run is not None else [])
    database = make_url(url).database if url.startswith("sqlite") else None
    if database:
        protected.append(Protected("the database", Path(database), folder=False))
    check_output_file(out, protected, name="--out")
    if json_out is not None:
        check_output_file(json_out, [*protected, Protected("the HTML report", out, False)],
                          name="--json")
    reference = read_reference(run) if run is not None else None
    engine = open_database(url, create=False)
    try:
        with engine.connect() as conn:
            summary, series = fleet_summary(conn, reference, confirm)
    finally:
        engine.dispose()
    if not series:
        from kiloml.errors import KilomlError
        from kiloml.telemetry.db import shown_url

        raise KilomlError(f"{shown_url(url)} holds no telemetry records (kiloml fleet ingest "
                          "fills it)", where="--db")
    text = render_fleet_report(summary, series)
    if json_out is not None:
        write_text_atomically(json_out, json.dumps(summary, indent=1) + "\n")
    write_text_atomically(out, text)
    return summary


def render_fleet_report(summary: dict[str, Any], series: list[DeviceSeries]) -> str:
    devices = summary["devices"]
    in_alarm = [d for d in devices if d["alarm"]]
    confirm = summary["confirm_records"]
    sections = [_ranking_section(devices, confirm), _alarm_section(summary["alarms"], confirm),
                _trend_section(series, devices),
                _model_section(summary["models"], summary["reference"], series)]
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>kiloml: "
             f"fleet</title><style>{STYLE}</style></head><body>",
             "<h1>kiloml fleet report</h1>",
             f"<p class='verdict'>{len(in_alarm)} of {len(devices)} devices in alarm"
             f" <span class='muted'>&middot; {summary['records']:,} records &middot; "
             f"{len(summary['models'])} model versions</span></p>"]
    parts.extend(s.html() for s in sections)
    parts.append("</body></html>")
    return "\n".join(parts)


def _ranking_section(devices: list[dict[str, Any]], confirm: int) -> Section:
    rows = []
    for d in devices:
        state = ("<span class='fail'>alarm</span>" if d["alarm"]
                 else "<span class='ok'>ok</span>")
        rows.append((html.escape(d["device"]), state,
                     "" if d["first_alarm_s"] is None else f"{d['first_alarm_s']:,}",
                     f"{d['flagged_records']:,} / {d['records']:,}",
                     name_list(d["flags"], 7), name_list(d["model_ids"], 3),
                     f"{d['max_drift_z']:.2f}", f"{d['max_ood_score']:.2f}",
                     f"{d['last']['top_score_p50']:.2f}"))
    return Section("devices", "Devices, ranked by alarm", [
        f"<p class='muted'>A device is in alarm when {confirm} consecutive records have a "
        "monitor flag; first alarm = the uptime of the record that confirms it.</p>",
        html_table(rows, ("device", "state", "first alarm (s)", "flagged records", "flags",
                          "model", "max |drift z|", "max OOD", "last top p50"))])


def _alarm_section(alarms: list[dict[str, Any]], confirm: int) -> Section:
    if not alarms:
        return Section("alarms", "Alarms", [f"<p>No device has {confirm} consecutive "
                                            "flagged records.</p>"])
    rows = [(html.escape(a["device"]), f"{a['start_s']:,}", f"{a['end_s']:,}",
             f"{a['records']:,}", name_list(a["flags"], 7), html.escape(a["model_id"]),
             "cleared" if a["cleared"] else "<span class='fail'>ongoing</span>")
            for a in alarms]
    return Section("alarms", f"Alarms ({len(alarms)})", [
        f"<p class='muted'>One row per run of at least {confirm} consecutive flagged "
        "records, earliest first.</p>",
        html_table(rows, ("device", "from (s)", "to (s)", "records", "flags", "model",
                          "state"))])


def _trend_section(series: list[DeviceSeries], devices: list[dict[str, Any]]) -> Section:
    alarm = {d["device"]: d["alarm"] for d in devices}
    first_s = {d["device"]: d["first_alarm_s"] for d in devices}
    fig, axes = plt.subplots(1, len(SIGNALS), figsize=(4.0 * len(SIGNALS), 3.2))
    for ax, (key, label) in zip(axes, SIGNALS.items(), strict=True):
        for s in reversed(series):  # the ranking's top drawn last, on top
            y = np.abs(s.signals[key]) if key == "drift_z" else s.signals[key]
            red = alarm[s.device]
            ax.plot(s.uptime_s / 3600, y, lw=1.1 if red else 0.7, alpha=0.9 if red else 0.5,
                    color=FAIL_COLOR if red else CLEAN_COLOR)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("uptime (h)", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    body = ["<p class='muted'>Every device: in alarm red, the others grey.</p>",
            png_img(fig, "fleet trends")]
    shown = series[:DEVICES_PLOTTED]
    rows, cols = grid_shape(len(shown), 3)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    for ax, s in zip(axes.flat, shown, strict=False):
        hours = s.uptime_s / 3600
        ax.plot(hours, np.abs(s.signals["drift_z"]), lw=1, label="|drift z|")
        ax.plot(hours, s.signals["ood_score"], lw=1, label="OOD")
        ax.plot(hours, s.signals["top_score_p50"], lw=1, label="top p50")
        first = first_s[s.device]
        if first is not None:
            ax.axvline(first / 3600, color=FAIL_COLOR, ls="--", lw=1)
            flagged = s.flags != 0
            ax.fill_between(hours, 0, 1, where=flagged, color=FAIL_COLOR, alpha=0.12,
                            transform=ax.get_xaxis_transform(), step="mid")
        ax.set_title(s.device, fontsize=9, color=FAIL_COLOR if first is not None else "#222")
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.supxlabel("uptime (h)", fontsize=8)
    fig.tight_layout()
    more = len(series) - len(shown)
    body += [f"<p class='muted'>The top {len(shown)} of the ranking: flagged records shaded, "
             "the first alarm dashed" + (f"; {more:,} more devices in the figure above"
                                         if more > 0 else "") + ".</p>",
             png_img(fig, "per-device trends")]
    return Section("trends", "Trends", body)


def _model_section(models: list[dict[str, Any]], reference: dict[str, Any] | None,
                   series: list[DeviceSeries]) -> Section:
    rows = []
    for m in models:
        cells = [html.escape(m["model_id"]), f"{m['devices']:,}", f"{m['records']:,}"]
        for key in SIGNALS:
            q = m["distributions"][key]
            ref = (m["reference"] or {}).get(key)
            cells.append(f"{q['p10']:.2f} / {q['p50']:.2f} / {q['p90']:.2f}"
                         + (f" <span class='muted'>(ref {ref:.2f})</span>"
                            if ref is not None else ""))
        rows.append(tuple(cells))
    if reference is None:
        note = "No training reference (give --run RUN_DIR)."
    elif not reference["values"]:
        note = (f"{html.escape(reference['run'])}/metrics.json has no monitor.reference: "
                "no training reference.")
    else:
        note = f"Training reference from {html.escape(reference['run'])} (ref)."
    fig, axes = plt.subplots(1, len(SIGNALS), figsize=(4.0 * len(SIGNALS),
                                                       1.2 + 0.35 * len(models)))
    for ax, (key, label) in zip(axes, SIGNALS.items(), strict=True):
        data = [_samples(series, m["model_id"], key) for m in models]
        ax.boxplot(data, whis=(5, 95), showfliers=False, **HORIZONTAL)
        ax.set_yticks(range(1, len(models) + 1), [m["model_id"] for m in models],
                      fontsize=7)
        for i, m in enumerate(models, start=1):
            ref = (m["reference"] or {}).get(key)
            if ref is not None:
                ax.plot([ref], [i], marker="D", color="#1a7f37", ms=5)
        ax.set_title(label, fontsize=10)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return Section("models", "Per model version", [
        f"<p class='muted'>p10 / p50 / p90 over every record of the model version; {note}"
        "</p>",
        html_table(rows, ("model id", "devices", "records", *SIGNALS.values())),
        png_img(fig, "per-model distributions")])


def _samples(series: list[DeviceSeries], model_id: str, key: str) -> np.ndarray:
    """Every record's value of ``key`` under ``model_id`` (|z| for the drift)."""
    parts = [s.signals[key][np.array(s.model_ids) == model_id] for s in series]
    values = np.concatenate(parts) if parts else np.zeros(0)
    return np.abs(values) if key == "drift_z" else values
