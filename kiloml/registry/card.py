"""The model card of a release (model_card.json and model_card.md): what the model was
trained on, how it was tested, what it decides on the held-out stream, what it costs on
each target against its budgets, and where its parity was proven. Every figure comes from
the run's metrics.json; nothing is measured again."""

from __future__ import annotations

from kiloml.version import __version__

CARD_FORMAT = 1
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
CALIBRATION_KEYS = ("false_alarm_every", "false_alarm_every_s", "budget_windows",
                    "arl_estimate_windows", "arl_interval_s", "limits", "devices", "rule")
RESOURCE_KEYS = ("flash_bytes", "ram_bytes", "stack_bytes", "ram_with_stack_bytes",
                 "instructions_per_inference", "latency_us", "energy_uj", "status",
                 "within_budget", "measured_on", "notes")
BUDGET_KEYS = ("flash_budget_bytes", "ram_budget_bytes", "latency_budget_us")
POWER_KEYS = ("average_power_uw", "power_budget_uw", "within_power_budget",
              "energy_per_inference_uj", "battery_life_days", "instructions_from")


def model_card(metrics: dict, *, version: str, notes: str | None, released_utc: str,
               model_id: str, interface_hash: str) -> dict:
    """The card as JSON (model_card.json)."""
    data, ev = metrics.get("data", {}), metrics.get("evaluation", {})
    return {
        "format": CARD_FORMAT,
        "version": version,
        "released_utc": released_utc,
        "notes": notes,
        "project": metrics.get("project"),
        "model": {"id": model_id, "interface_hash": interface_hash,
                  "kind": metrics.get("model", {}).get("kind"),
                  "kiloml_version": metrics.get("kiloml_version"),
                  "released_with_kiloml": __version__},
        "data": {"source": data.get("source"), "recordings": data.get("n_recordings"),
                 "windows": data.get("n_windows"), "classes": data.get("class_names"),
                 "windows_per_class": data.get("windows_per_class"),
                 "channels": data.get("channels"), "sample_rate_hz": data.get("sample_rate_hz"),
                 "window_ms": data.get("window_ms"), "stride_ms": data.get("stride_ms")},
        "split": {"held_out_groups": ev.get("test_groups"),
                  "training_groups": ev.get("train_groups"),
                  "test_windows": ev.get("n_test_windows"),
                  "training_windows": ev.get("n_train_windows")},
        "evaluation": {"accuracy": ev.get("accuracy"),
                       "balanced_accuracy": ev.get("balanced_accuracy"),
                       "macro_f1": ev.get("macro_f1"),
                       "cross_validation_accuracy_mean":
                           ev.get("cross_validation", {}).get("accuracy_mean")},
        "events": _events(metrics.get("decision", {})),
        "targets": _targets(metrics),
        "parity": _parity(metrics),
        "monitor": _monitor(metrics.get("monitor")),
    }


def _events(d: dict) -> dict | None:
    if "decision" not in d or "raw" not in d:
        return None
    e, r = d["decision"], d["raw"]
    return {"stream_hours": d.get("stream", {}).get("hours"), "events": e.get("events"),
            "false_alarms_per_hour": e.get("false_alarms_per_hour"),
            "missed_events": e.get("missed_events"),
            "without_decision_layer": {"false_alarms_per_hour": r.get("false_alarms_per_hour"),
                                       "missed_events": r.get("missed_events")}}


def _targets(metrics: dict) -> dict:
    out = {}
    power = metrics.get("power", {})
    for target, r in metrics.get("resources", {}).items():
        p = power.get(target)
        out[target] = {"budgets": {k: r.get(k) for k in BUDGET_KEYS},
                       "resources": {k: r[k] for k in RESOURCE_KEYS if k in r},
                       "power": None if p is None else {k: p.get(k) for k in POWER_KEYS}}
    return out


def _parity_summary(p: dict) -> dict:
    st = p.get("streaming", {})
    return {"windows": p.get("n"), "decisions_equal": p.get("decisions_equal"),
            "all_equal": bool(p.get("all_decisions_equal")
                              and st.get("all_decisions_equal")),
            "streamed_windows": st.get("n_windows"),
            "streamed_decisions_equal": st.get("decisions_equal"),
            "features_bit_exact": p.get("features_bit_exact"),
            "max_abs_score_diff": p.get("max_abs_score_diff")}


def _parity(metrics: dict) -> dict:
    parity = metrics.get("parity", {})
    qemu = {}
    for target in metrics.get("resources", {}):
        p = parity.get(target)
        if p is not None and p.get("emulated", False):
            qemu[target] = {"checked": True, "machine": p.get("machine"),
                            **_parity_summary(p)}
        else:
            note = "run with --no-emulator" if p is None else p.get("note", "not emulated")
            qemu[target] = {"checked": False, "note": note}
    return {"host": _parity_summary(parity.get("host", {})), "qemu": qemu,
            "device_checked": bool(qemu) and all(q["checked"] for q in qemu.values())}


def _monitor(monitor: dict | None) -> dict | None:
    if monitor is None:
        return None
    cal = monitor.get("calibration")
    return {"calibration": None if cal is None else
            {k: cal[k] for k in CALIBRATION_KEYS if k in cal}}


# --- markdown ------------------------------------------------------------------------


def _num(value: object, fmt: str = ".4f") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return format(value, fmt)
    return str(value)


def card_markdown(card: dict) -> str:
    """The card as text (model_card.md)."""
    m, d, s, ev = card["model"], card["data"], card["split"], card["evaluation"]
    lines = [f"# Model card: {card['project']} {card['version']}", "",
             f"- released: {card['released_utc']} (kiloml {m['released_with_kiloml']})",
             f"- model id: {m['id']}, interface hash {m['interface_hash']}",
             f"- model: {m['kind']}, built by kiloml {m['kiloml_version']}"]
    if card["notes"]:
        lines.append("- notes: " + "\n  ".join(card["notes"].splitlines()))
    classes = ", ".join(d["classes"] or [])
    lines += ["", "## Data", "",
              f"- source: {d['source']}, {d['recordings']} recordings, {d['windows']} windows",
              f"- classes: {classes}",
              f"- channels: {', '.join(d['channels'] or [])} at {_num(d['sample_rate_hz'], 'g')}"
              f" Hz; windows of {_num(d['window_ms'], 'g')} ms every "
              f"{_num(d['stride_ms'], 'g')} ms",
              "", "## Evaluation", "",
              f"- held-out groups: {', '.join(s['held_out_groups'] or [])} "
              f"({s['test_windows']} windows; trained on {s['training_windows']})",
              f"- accuracy {_num(ev['accuracy'])}, balanced accuracy "
              f"{_num(ev['balanced_accuracy'])}, macro F1 {_num(ev['macro_f1'])}"]
    e = card["events"]
    if e is not None:
        lines.append(f"- events on the held-out stream ({_num(e['stream_hours'] * 60, '.1f')}"
                     f" min, {e['events']} events): {_num(e['false_alarms_per_hour'], '.1f')} "
                     f"false alarms per hour, {e['missed_events']} missed (decision layer)")
    lines += ["", "## Targets", ""]
    for target, t in card["targets"].items():
        b, r, p = t["budgets"], t["resources"], t["power"]
        line = (f"- {target}: flash {_num(r.get('flash_bytes'), ',')} of "
                f"{_num(b['flash_budget_bytes'], ',')} B, RAM "
                f"{_num(r.get('ram_with_stack_bytes', r.get('ram_bytes')), ',')} of "
                f"{_num(b['ram_budget_bytes'], ',')} B")
        if r.get("latency_us") is not None:
            line += f", latency {_num(r['latency_us'], ',.1f')} us"
            if b["latency_budget_us"] is not None:
                line += f" of {_num(b['latency_budget_us'], ',.1f')}"
        line += f" [{r.get('status')}] measured on {r.get('measured_on')}"
        lines.append(line)
        if p is not None:
            met = "met" if p["within_power_budget"] else "NOT met"
            lines.append(f"  - power: {_num(p['average_power_uw'], ',.0f')} uW average, "
                         f"budget {_num(p['power_budget_uw'], 'g')} uW {met}")
    par = card["parity"]
    h = par["host"]
    lines += ["", "## Parity", "",
              f"- host: {h['decisions_equal']}/{h['windows']} decisions equal, streaming "
              f"{h['streamed_decisions_equal']}/{h['streamed_windows']}"]
    for target, q in par["qemu"].items():
        if q["checked"]:
            lines.append(f"- {target} (QEMU {q['machine']}): {q['decisions_equal']}/"
                         f"{q['windows']} decisions equal, streaming "
                         f"{q['streamed_decisions_equal']}/{q['streamed_windows']}")
        else:
            lines.append(f"- {target}: NOT checked on the emulated MCU ({q['note']})")
    mon = card["monitor"]
    if mon is not None:
        cal = mon["calibration"]
        lines += ["", "## Monitor", ""]
        if cal is None:
            lines.append("- limits: the defaults (not calibrated)")
        else:
            lines.append(f"- limits calibrated for one false alarm every "
                         f"{cal.get('false_alarm_every')} on "
                         f"{', '.join(cal.get('devices') or []) or 'no'} held-out devices")
    return "\n".join(lines) + "\n"
