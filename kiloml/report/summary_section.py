"""The report's first section: accuracy, parity on every place it ran, every budget
(flash, RAM with stack, latency, power) on every target, the decision layer's and the data
checks' warnings; what failed in red, and whether it sets the run's exit status."""

from __future__ import annotations

import html
from dataclasses import dataclass

from kiloml.report.data_checks_section import TITLES
from kiloml.report.elements import Section, status_cell


@dataclass
class Check:
    """One line of the summary. ``status`` is "ok", "warn", "fail" or "" (a figure with
    nothing to meet); ``exit_code`` says whether a failure makes `kiloml run` exit 1."""

    key: str  # stable name, e.g. "power:cortex-m4f" (data-check attribute, tests)
    what: str
    result: str  # HTML
    limit: str = ""  # HTML: the budget or what it is compared with
    status: str = ""
    exit_code: bool = False
    headline: str = ""  # HTML: how the verdict line names a failure

    def named(self) -> str:
        return self.headline or f"{self.what}: {self.result} against {self.limit}"


def _accuracy_checks(metrics: dict) -> list[Check]:
    ev = metrics["evaluation"]
    out = [Check("accuracy", "held-out accuracy",
                 f"<b>{ev['accuracy']:.4f}</b> (balanced {ev['balanced_accuracy']:.4f}, "
                 f"macro F1 {ev['macro_f1']:.4f}) on {ev['n_test_windows']:,} windows of "
                 f"{len(ev['test_groups']):,} held-out group"
                 f"{'' if len(ev['test_groups']) == 1 else 's'}")]
    cv = ev["cross_validation"]
    if cv.get("folds"):
        out.append(Check("cross-validation", "cross-validation",
                         f"{cv['accuracy_mean']:.4f} &plusmn; {cv['accuracy_std']:.4f} over "
                         f"{cv['folds']} grouped folds of the training groups"))
    n = metrics.get("neural")
    if n and n.get("float_accuracy") is not None:
        out.append(Check("int8", "int8 against float32",
                         f"{n['int8_accuracy']:.4f} against {n['float_accuracy']:.4f} "
                         f"({n['int8_minus_float_points']:+.2f} points)"))
    return out


def _parity_checks(metrics: dict) -> list[Check]:
    out = []
    for where, p in metrics["parity"].items():
        if where != "host" and not p.get("emulated", False):
            out.append(Check(f"parity:{where}", f"parity on {where}",
                             html.escape(p.get("note", "not checked")), status="warn"))
            continue
        st = p["streaming"]
        ok = p["all_decisions_equal"] and st["all_decisions_equal"]
        label = "host (gcc)" if where == "host" else f"{where} (QEMU {p.get('machine', '')})"
        out.append(Check(f"parity:{where}", f"parity on {html.escape(label)}",
                         f"{p['decisions_equal']:,} / {p['n']:,} windows and "
                         f"{st['decisions_equal']:,} / {st['n_windows']:,} streamed decisions "
                         f"equal", "Python reference", "ok" if ok else "fail", exit_code=True,
                         headline=f"parity on {html.escape(label)}"))
    return out


def _fraction_status(used: float, budget: float, noted: bool) -> str:
    if used > budget:
        return "fail"
    return "warn" if noted else "ok"


def _resource_checks(metrics: dict) -> list[Check]:
    out = []
    for target, r in metrics["resources"].items():
        est = set(r.get("estimated", []))
        t = html.escape(target)
        notes = r.get("notes", [])
        flash_noted = any(n.startswith("flash") for n in notes)
        ram_noted = any(n.startswith("RAM") for n in notes)
        ram = r.get("ram_with_stack_bytes", r["ram_bytes"])
        stack = " + stack" if "stack_bytes" in r else ""
        out.append(Check(f"flash:{target}", f"flash on {t}", f"{r['flash_bytes']:,} B",
                         f"{r['flash_budget_bytes']:,} B ({r['flash_fraction']:.1%} used)",
                         _fraction_status(r["flash_bytes"], r["flash_budget_bytes"],
                                          flash_noted), exit_code=True,
                         headline=f"flash budget on {t} ({r['flash_bytes']:,} B against "
                                  f"{r['flash_budget_bytes']:,} B)"))
        out.append(Check(f"ram:{target}", f"RAM{stack} on {t}",
                         f"{ram:,} B" + (" <span class='muted'>(stack est.)</span>"
                                         if "stack_bytes" in est else ""),
                         f"{r['ram_budget_bytes']:,} B ({r['ram_fraction']:.1%} used)",
                         _fraction_status(ram, r["ram_budget_bytes"], ram_noted),
                         exit_code=True,
                         headline=f"RAM budget on {t} ({ram:,} B against "
                                  f"{r['ram_budget_bytes']:,} B)"))
        if r.get("latency_us") is not None:
            budget = r.get("latency_budget_us")
            out.append(Check(f"latency:{target}", f"latency on {t}",
                             f"{r['latency_us'] / 1000:.3g} ms per inference (worst window)"
                             + (" <span class='muted'>(est.)</span>" if "latency_us" in est
                                else ""),
                             f"{budget / 1000:g} ms" if budget else
                             "<span class='muted'>no budget set</span>",
                             ("fail" if r["latency_us"] > budget else "ok") if budget else "",
                             exit_code=True,
                             headline=f"latency budget on {t} ({r['latency_us'] / 1000:.3g} "
                                      f"ms against {(budget or 0) / 1000:g} ms)"))
    for target, p in metrics.get("power", {}).items():
        t = html.escape(target)
        out.append(Check(f"power:{target}", f"power on {t}",
                         f"{p['average_power_uw']:,.1f} &micro;W average at "
                         f"{p['inference_rate_hz']:g} inferences/s "
                         f"({p['energy_per_inference_uj']:.2f} &micro;J each, sleep "
                         f"{p['sleep_power_uw']:,.0f} &micro;W)",
                         f"{p['power_budget_uw']:g} &micro;W",
                         "ok" if p["within_power_budget"] else "fail",
                         headline=f"power budget on {t} ({p['average_power_uw']:,.1f} &micro;W "
                                  f"average against {p['power_budget_uw']:g} &micro;W)"))
        rate = p["max_inference_rate_hz_within_budget"]
        out.append(Check(f"battery:{target}", f"battery on {t}",
                         f"{p['battery_life_days']:,.1f} days on {p['battery_mah']:g} mAh; "
                         + (f"at most {rate:g} inferences/s within the power budget" if rate
                            else "no inference rate is within the power budget"
                            + (" (the sleep floor alone is over it)"
                               if p["sleep_power_uw"] > p["power_budget_uw"] else ""))))
    return out


def _warning_checks(metrics: dict) -> list[Check]:
    out = []
    for w in (metrics.get("decision") or {}).get("warnings", []):
        out.append(Check(f"decision:{w['class']}", "decision layer",
                         html.escape(w["message"]), status="warn"))
    for key, c in (metrics.get("data_checks") or {}).items():
        if c.get("status") in ("warn", "fail"):
            out.append(Check(f"data:{key}", f"data check: {html.escape(TITLES.get(key, key))}",
                             html.escape(c.get("summary", "")), status="warn"))
    return out


def summary_checks(metrics: dict) -> list[Check]:
    return (_accuracy_checks(metrics) + _parity_checks(metrics) + _resource_checks(metrics)
            + _warning_checks(metrics))


def exit_status(checks: list[Check]) -> int:
    """What `kiloml run` exits with on these checks (results.run_ok: parity and the
    flash, RAM and latency budgets; the power budget and the warnings do not count)."""
    return 1 if any(c.status == "fail" and c.exit_code for c in checks) else 0


def summary_section(metrics: dict) -> Section:
    checks = summary_checks(metrics)
    failed = [c for c in checks if c.status == "fail"]
    warned = [c for c in checks if c.status == "warn"]
    s = Section("summary", "Summary")
    if failed:
        code = exit_status(checks)
        why = ("" if code else "; the exit status covers parity and the flash, RAM and "
               "latency budgets only, so read this line")
        s.body.append(
            "<p class='verdict fail' id='summary-verdict'>Not met: "
            + "; ".join(c.named() for c in failed)
            + f".<br><span class='muted'>kiloml run exits {code} on this{why}.</span></p>")
    else:
        s.body.append("<p class='verdict ok' id='summary-verdict'>Parity holds and every "
                      "budget is met" + (f"; {len(warned)} warning"
                                         f"{'s' if len(warned) != 1 else ''} below"
                                         if warned else "") + ".</p>")
    rows = []
    for c in checks:
        mark = f" class='{c.status}'" if c.status in ("fail", "warn") else ""
        status = status_cell(c.status) if c.status else ""
        rows.append(f"<tr data-check='{html.escape(c.key)}'><td{mark}>{c.what}</td>"
                    f"<td class='text'>{c.result}</td><td>{c.limit}</td><td>{status}</td></tr>")
    s.body.append("<table id='summary-table'><tr><th>check</th><th class='text'>result</th>"
                  "<th>budget</th><th>status</th></tr>" + "".join(rows) + "</table>")
    return s
