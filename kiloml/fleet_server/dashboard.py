"""The dashboard page (GET /): server-rendered HTML, no script and nothing fetched from
elsewhere (the page must work on a network without internet): the counts, the devices
ranked by alarm with their latest values and flags, the alarm list."""

from __future__ import annotations

import html
import time
from typing import Any

from kiloml.report.elements import STYLE, html_table
from kiloml.telemetry.flags import flag_names
from kiloml.telemetry.fleet_data import SIGNALS, DeviceSeries

__all__ = ["REFRESH_S", "render_dashboard"]

REFRESH_S = 60  # the page reloads itself: a wall screen stays current
EXTRA_STYLE = """
body{max-width:1500px}#devices-table{font-size:.92em}#devices-table th{font-size:.9em}
td.device{text-align:left;white-space:nowrap;font-weight:600}
tr.alarm td{background:#ffebe9}tr.alarm td.status{color:#cf222e;font-weight:700}
td.status{color:#1a7f37;font-weight:600}
.counts{display:flex;flex-wrap:wrap;gap:.8em;margin:.6em 0}
.count{border:1px solid #ddd;border-radius:4px;padding:.4em .8em;min-width:7em}
.count b{display:block;font-size:1.5em}.count.alarm b{color:#cf222e}
td.flags{text-align:left;font-size:.9em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def duration(seconds: float | None) -> str:
    """Device time (seconds since boot) as people read it: 3d 04:10, 2:05:00, 4:10."""
    if seconds is None:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}"
    return f"{hours}:{minutes:02d}:{s:02d}" if hours else f"{minutes}:{s:02d}"


def _count(key: str, label: str, value: int, alarm: bool = False, note: str = "") -> str:
    cls = "count alarm" if alarm else "count"
    return (f"<div class='{cls}' data-count='{key}'><b>{value:,}</b>{_e(label)}"
            + (f" <span class='muted'>{_e(note)}</span>" if note else "") + "</div>")


def _counts(summary: dict[str, Any], stats: dict[str, Any]) -> str:
    devices = summary["devices"]
    in_alarm = sum(d["alarm"] for d in devices)
    kinds = ", ".join(f"{n} {k}" for k, n in stats["bad_by_kind"].items())
    return "<div class='counts'>" + "".join([
        _count("devices", "devices", len(devices)),
        _count("in-alarm", "in alarm", in_alarm, alarm=in_alarm > 0),
        _count("records", "records stored", summary["records"]),
        _count("alarms", "alarm episodes", len(summary["alarms"])),
        _count("posts", "POSTs since start", stats["requests"]),
        _count("stored", "stored by POST", stats["stored"]),
        _count("duplicates", "duplicates", stats["duplicates"]),
        _count("bad", "bad records", stats["bad"], alarm=stats["bad"] > 0, note=kinds),
        _count("rejected", "bodies rejected (400)", stats["rejected"]),
        _count("unauthorized", "bad tokens (401)", stats["unauthorized"]),
    ]) + "</div>"


def _device_rows(summary: dict[str, Any], series: list[DeviceSeries]) -> str:
    header = ("#", "device", "status", "flags now", "flags since first record",
              "first alarm", "records", "flagged", "last record", *SIGNALS.values(),
              "uncertain rate", "model")
    out = ["<table id='devices-table'><tr>"
           + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for rank, (d, s) in enumerate(zip(summary["devices"], series, strict=True), start=1):
        now = flag_names(int(s.flags[-1])) if len(s.flags) else []
        rate = d["uncertain_rate"]
        cells = [str(rank), _e(d["device"]),
                 "ALARM" if d["alarm"] else "ok",
                 _e(", ".join(now) or "-"), _e(", ".join(d["flags"]) or "-"),
                 duration(d["first_alarm_s"]), f"{d['records']:,}",
                 f"{d['flagged_records']:,}", duration(d["last_s"]),
                 *(f"{d['last'][k]:.3f}" for k in SIGNALS),
                 f"{rate:.3f}" if rate is not None else "-",
                 _e(", ".join(d["model_ids"]))]
        classes = {1: "device", 2: "status", 3: "flags", 4: "flags"}
        tds = "".join(f"<td class='{classes[i]}'>{c}</td>" if i in classes else f"<td>{c}</td>"
                      for i, c in enumerate(cells))
        out.append(f"<tr data-device='{_e(d['device'])}' data-alarm='{int(d['alarm'])}'"
                   + (" class='alarm'" if d["alarm"] else "") + f">{tds}</tr>")
    out.append("</table>")
    return "".join(out)


def _alarm_table(alarms: list[dict[str, Any]]) -> str:
    if not alarms:
        return "<p class='muted' id='no-alarms'>No alarm: no record carries a monitor flag.</p>"
    rows = [(_e(a["device"]), duration(a["start_s"]), duration(a["end_s"]), f"{a['records']:,}",
             _e(", ".join(a["flags"])), _e(a["model_id"]),
             "cleared" if a["cleared"] else "<span class='fail'>ongoing</span>")
            for a in alarms]
    table = html_table(rows, ("device", "from", "to", "records", "flags", "model", "state"))
    return table.replace("<table>", "<table id='alarms-table'>", 1)


def render_dashboard(summary: dict[str, Any], series: list[DeviceSeries],
                     stats: dict[str, Any], database: str) -> str:
    """The page: ``summary`` and ``series`` as fleet_summary returns them (ranked),
    ``stats`` the server's counters, ``database`` the URL without its password."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    if summary["devices"]:
        devices = _device_rows(summary, series)
    else:
        devices = "<p class='muted' id='no-devices'>No telemetry yet: POST /telemetry.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<link rel="icon" href="data:,"><title>kiloml fleet</title><style>{STYLE}{EXTRA_STYLE}</style></head>
<body>
<h1>kiloml fleet</h1>
<p class="muted">{_e(database)} &middot; page of {when} (reloads every {REFRESH_S} s) &middot;
times are device uptime &middot; JSON: <a href="/api/devices">/api/devices</a>,
<a href="/api/stats">/api/stats</a></p>
<section id="counts"><h2>Counts</h2>{_counts(summary, stats)}</section>
<section id="devices"><h2>Devices, ranked by alarm</h2>
<p class="muted">A device is in alarm when {summary["confirm_records"]} consecutive records
carry a monitor flag (first alarm: the record that confirms it). In alarm first (a larger
share of flagged records, then an earlier first alarm); the signal columns are each
device's latest record.</p>
{devices}</section>
<section id="alarms"><h2>Alarms</h2>{_alarm_table(summary["alarms"])}</section>
</body></html>
"""
