"""A fleet report scored against a simulation's truth (`kiloml fleet simulate`'s
truth.json): which devices the report put in alarm against which drifted, and each
detection's delay against the calibrated delay.

The calibrated delay of a drift is the run's evaluation's (metrics.json
monitor.evaluation.summary, the calibrated monitor's ``calibrated_delay_s`` for that
perturbation and severity: its worst delay from onset to the first flagged window over
dense onsets on the held-out devices, plus the onsets' spacing) plus the fleet's
reporting lag: a flagged window is in the record that closes at most one record period
later, and an alarm is ``confirm`` consecutive flagged records, so the report knows at
most ``confirm`` record periods after the window."""

from __future__ import annotations

from typing import Any

CALIBRATED = "kiloml monitor (calibrated)"


def calibrated_delay_s(metrics: dict, perturbation: str, severity: float) -> float | None:
    """The evaluation's calibrated delay for this drift (None: not evaluated, or missed
    from some onset)."""
    summary = (metrics.get("monitor", {}).get("evaluation", {}).get("summary", {})
               .get(CALIBRATED))
    for e in (summary or {}).get("drift", []):
        if e["perturbation"] == perturbation and float(e["severity"]) == float(severity):
            return e.get("calibrated_delay_s")
    return None


def score(truth: dict, fleet: dict, metrics: dict) -> dict[str, Any]:
    """Per device: drifting or not, in alarm or not, and for a drift its delay and bound;
    ``exact``: the devices in alarm are the drifting ones; ``within``: every drift was
    flagged after its onset within its bound."""
    confirm = int(fleet.get("confirm_records", 1))
    every = float(truth["record_every_s"])
    drift = {d["device"]: d for d in truth["drifting"]}
    reported = {d["device"]: d for d in fleet["devices"]}
    rows = []
    for name in truth["devices"]:
        dev = reported.get(name) or {}
        row: dict[str, Any] = {"device": name, "drifting": name in drift,
                               "alarm": bool(dev.get("alarm")),
                               "first_alarm_s": dev.get("first_alarm_s")}
        if name in drift:
            d = drift[name]
            base = calibrated_delay_s(metrics, d["perturbation"], d["severity"])
            bound = None if base is None else base + confirm * every
            delay = (None if row["first_alarm_s"] is None
                     else row["first_alarm_s"] - float(d["onset_s"]))
            row.update(perturbation=d["perturbation"], severity=d["severity"],
                       onset_s=float(d["onset_s"]), delay_s=delay,
                       calibrated_delay_s=base, bound_s=bound,
                       within=delay is not None and bound is not None and 0 <= delay <= bound)
        rows.append(row)
    false_alarms = [r["device"] for r in rows if r["alarm"] and not r["drifting"]]
    missed = [r["device"] for r in rows if r["drifting"] and not r["alarm"]]
    late = [r["device"] for r in rows if r["drifting"] and r["alarm"] and not r["within"]]
    return {"devices": rows, "confirm_records": confirm, "record_every_s": every,
            "false_alarms": false_alarms, "missed": missed, "late_or_early": late,
            "exact": not false_alarms and not missed,
            "within": not missed and not late}
