"""What the fleet report says, from the database: each device's series and alarm state,
the alarm episodes, per-model-version distributions (JSON-ready, no HTML here).

A device is in alarm when CONFIRM_RECORDS consecutive records have a monitor flag set (a
drift keeps the monitor's level flags raised; a false alarm of the calibrated limits is an
excursion of a few windows, inside one record); first_alarm_s is the uptime of the record
that confirms it (when the fleet knows). Records are ordered by uptime (then window count):
the record carries device time since boot, so a reboot restarts a device's time axis."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kiloml.errors import KilomlError
from kiloml.optional import needs
from kiloml.telemetry.db import devices, records
from kiloml.telemetry.flags import flag_names

with needs("sqlalchemy", "kiloml fleet"):
    from sqlalchemy import Connection, select

__all__ = ["SIGNALS", "DeviceSeries", "fleet_summary", "load_series", "read_reference"]

# The trend signals (record field -> how the report names it).
SIGNALS = {"top_score_p50": "top score p50", "drift_z": "input drift |z|",
           "ood_score": "OOD score", "out_of_range_rate": "out-of-range rate"}
REFERENCE_KEYS = tuple(SIGNALS)
QUANTILES = (0.1, 0.5, 0.9)
CONFIRM_RECORDS = 2  # consecutive flagged records that make an alarm (kiloml fleet --confirm)


@dataclass
class DeviceSeries:
    device: str
    uptime_s: np.ndarray
    model_ids: list[str]  # per record
    signals: dict[str, np.ndarray]
    flags: np.ndarray
    uncertain: np.ndarray
    decisions: np.ndarray  # records x 6

    def first_alarm_index(self, confirm: int = CONFIRM_RECORDS) -> int | None:
        """The record that completes the first run of ``confirm`` flagged records."""
        run = 0
        for i, f in enumerate(self.flags):
            run = run + 1 if f else 0
            if run >= confirm:
                return i
        return None


def load_series(conn: Connection) -> list[DeviceSeries]:
    """Every device's records in uptime order."""
    cols = [records.c[k] for k in ("uptime_s", "model_id", *SIGNALS, "flags", "uncertain")]
    decisions = [records.c[f"decisions_{c}"] for c in range(6)]
    query = (select(devices.c.name, *cols, *decisions)
             .join(devices, devices.c.id == records.c.device_id)
             .order_by(devices.c.name, records.c.uptime_s, records.c.windows, records.c.id))
    rows = conn.execute(query).all()
    out: list[DeviceSeries] = []
    start = 0
    for end in range(1, len(rows) + 1):
        if end == len(rows) or rows[end][0] != rows[start][0]:
            part = rows[start:end]
            table = np.array([r[1:2] + r[3:] for r in part], dtype=float)
            n_sig = len(SIGNALS)
            out.append(DeviceSeries(
                device=part[0][0], uptime_s=table[:, 0],
                model_ids=[r[2] for r in part],
                signals={k: table[:, 1 + i] for i, k in enumerate(SIGNALS)},
                flags=table[:, 1 + n_sig].astype(np.int64),
                uncertain=table[:, 2 + n_sig], decisions=table[:, 3 + n_sig:]))
            start = end
    return out


def read_reference(run: Path) -> dict[str, Any]:
    """The training reference of a kiloml run folder: metrics.json's library.model_id and
    monitor.reference (the signals' values on the held-out streams, keys as in SIGNALS)."""
    path = run / "metrics.json" if run.is_dir() else run
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise KilomlError("is not a kiloml run folder (no metrics.json)", file=run) from None
    except (OSError, ValueError) as exc:
        raise KilomlError(f"cannot be read as JSON ({exc})", file=path) from None
    monitor = metrics.get("monitor") if isinstance(metrics, dict) else None
    reference = monitor.get("reference") if isinstance(monitor, dict) else None
    values = {k: float(v) for k, v in (reference or {}).items()
              if k in REFERENCE_KEYS and isinstance(v, int | float)}
    library = metrics.get("library") if isinstance(metrics, dict) else None
    return {"run": str(run), "model_id": (library or {}).get("model_id"), "values": values}


def _quantiles(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    return {f"p{round(q * 100)}": float(np.quantile(values, q)) for q in QUANTILES}


def _episodes(s: DeviceSeries, confirm: int) -> list[dict[str, Any]]:
    """Runs of at least ``confirm`` consecutive flagged records: one alarm each."""
    out: list[dict[str, Any]] = []
    i, n = 0, len(s.flags)
    while i < n:
        if not s.flags[i]:
            i += 1
            continue
        j = i
        bits = 0
        while j < n and s.flags[j]:
            bits |= int(s.flags[j])
            j += 1
        if j - i < confirm:
            i = j
            continue
        out.append({"device": s.device, "start_s": int(s.uptime_s[i]),
                    "end_s": int(s.uptime_s[j - 1]), "records": j - i,
                    "flags": flag_names(bits), "model_id": s.model_ids[i],
                    "cleared": j < n})
        i = j
    return out


def _device(s: DeviceSeries, confirm: int) -> dict[str, Any]:
    first = s.first_alarm_index(confirm)
    bits = int(np.bitwise_or.reduce(s.flags)) if s.flags.size else 0
    total = s.decisions.sum()
    return {
        "device": s.device,
        "alarm": first is not None,
        "first_alarm_s": int(s.uptime_s[first]) if first is not None else None,
        "records": len(s.flags),
        "flagged_records": int(np.count_nonzero(s.flags)),
        "flags": flag_names(bits),
        "model_ids": sorted(set(s.model_ids)),
        "first_s": int(s.uptime_s[0]), "last_s": int(s.uptime_s[-1]),
        "uncertain_rate": float(s.uncertain.sum() / total) if total else None,
        "last": {k: float(v[-1]) for k, v in s.signals.items()},
        "max_drift_z": float(np.max(np.abs(s.signals["drift_z"]))),
        "max_ood_score": float(np.max(s.signals["ood_score"])),
    }


def _rank_key(d: dict[str, Any]) -> tuple:
    """In alarm first; among them the larger share of flagged records, then the earlier
    alarm; then by name."""
    share = d["flagged_records"] / d["records"]
    return (not d["alarm"], -share, d["first_alarm_s"] or 0, d["device"])


def _models(series: list[DeviceSeries], reference: dict[str, Any] | None
            ) -> list[dict[str, Any]]:
    by_model: dict[str, dict[str, list]] = {}
    for s in series:
        ids = np.array(s.model_ids)
        for model_id in sorted(set(s.model_ids)):
            mask = ids == model_id
            entry = by_model.setdefault(model_id, {"devices": [], **{k: [] for k in SIGNALS}})
            entry["devices"].append(s.device)
            for k in SIGNALS:
                v = s.signals[k][mask]
                entry[k].append(np.abs(v) if k == "drift_z" else v)
    out = []
    for model_id, entry in sorted(by_model.items()):
        values = {k: np.concatenate(entry[k]) for k in SIGNALS}
        ref = None
        if reference and reference["values"] and reference["model_id"] in (None, model_id):
            ref = reference["values"]
        out.append({"model_id": model_id, "devices": len(entry["devices"]),
                    "records": int(values["top_score_p50"].size),
                    "distributions": {k: _quantiles(v) for k, v in values.items()},
                    "reference": ref})
    return out


def fleet_summary(conn: Connection, reference: dict[str, Any] | None = None,
                  confirm: int = CONFIRM_RECORDS) -> tuple[dict[str, Any], list[DeviceSeries]]:
    """The report's JSON ({"devices", "alarms", "models", ...}) and the series behind it."""
    if confirm < 1:
        raise KilomlError(f"must be at least 1, not {confirm}", where="--confirm")
    series = load_series(conn)
    by_name = {s.device: s for s in series}
    ranked = sorted((_device(s, confirm) for s in series), key=_rank_key)
    alarms = sorted((a for d in ranked if d["alarm"]
                     for a in _episodes(by_name[d["device"]], confirm)),
                    key=lambda a: (a["start_s"], a["device"]))
    summary = {"records": sum(d["records"] for d in ranked), "confirm_records": confirm,
               "devices": ranked,
               "alarms": alarms, "models": _models(series, reference),
               "reference": reference}
    return summary, [by_name[d["device"]] for d in ranked]
