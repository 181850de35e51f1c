"""The release gate (docs/registry.md, Gates): the checks a version must pass before it
may be promoted, each with its value, its limit and whether it holds.

parity_host / parity_qemu: every held-out and streamed decision of the package's C on the
host / on the emulated MCU equal to Python's (the package's metrics.json). budgets: every
target within flash, RAM and latency (and no fused multiply-add). accuracy_drop /
balanced_accuracy_drop: points lost against the baseline ([gate] max_accuracy_drop).
false_alarms_per_hour: the decision layer's on the held-out stream ([gate]
max_false_alarms_per_hour, when set). changed_fraction: the share of decisions that change
against the baseline on the baseline's held-out streams (the behaviour diff; [gate]
max_changed_fraction). interface: the same interface hash, or a major version bump. With
no baseline the checks that need one pass, saying so."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from kiloml.project import GateConfig
from kiloml.registry.contents import Package
from kiloml.registry.diff import behaviour_diff, comparable
from kiloml.registry.recordings import held_out_streams
from kiloml.registry.semver import parse_version

CHECKS = ("parity_host", "parity_qemu", "budgets", "accuracy_drop", "balanced_accuracy_drop",
          "false_alarms_per_hour", "changed_fraction", "interface")
NO_BASELINE = "no baseline"
SLACK = 1e-9  # a value equal to its limit up to float rounding passes


@dataclass
class Check:
    name: str
    passed: bool
    value: Any  # a number, a hash, or None (not measured)
    limit: Any
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Baseline:
    version: str
    package: Package


def _fraction(equal: int, n: int) -> float:
    return equal / n if n else 1.0


def _parity(name: str, where: str, p: dict) -> Check:
    stream = p.get("streaming", {})
    n, e = int(p.get("n", 0)), int(p.get("decisions_equal", 0))
    sn, se = int(stream.get("n_windows", 0)), int(stream.get("decisions_equal", 0))
    ok = bool(p.get("all_decisions_equal")) and bool(stream.get("all_decisions_equal"))
    fractions = [_fraction(e, n), _fraction(se, sn)]
    detail = f"{where}: {e:,}/{n:,} held-out windows, {se:,}/{sn:,} streamed windows"
    layer = stream.get("decision_layer")
    if layer is not None:
        le, ln = int(layer.get("decisions_equal", 0)), int(layer.get("n", 0))
        fractions.append(_fraction(le, ln))
        detail += f", decision layer {le:,}/{ln:,}"
    return Check(name, ok, min(fractions), 1.0, detail)


def parity_host(metrics: dict) -> Check:
    host = metrics.get("parity", {}).get("host")
    if not isinstance(host, dict):
        return Check("parity_host", False, None, 1.0, "no host parity in metrics.json")
    return _parity("parity_host", "host gcc", host)


def parity_qemu(metrics: dict) -> Check:
    """Every target of the run checked on its emulated MCU, every decision equal."""
    parity = metrics.get("parity", {})
    targets = list(metrics.get("resources", {})) or [k for k in parity if k != "host"]
    checks = []
    for target in targets:
        p = parity.get(target)
        if not isinstance(p, dict) or not p.get("emulated", False):
            why = "the run was made with --no-emulator" if p is None else \
                str(p.get("note", "its target has no emulator"))
            return Check("parity_qemu", False, None, 1.0,
                         f"{target}: not checked on the emulated MCU ({why}); run `kiloml "
                         "run` with the emulator (or `kiloml verify`) and release that run")
        checks.append(_parity("parity_qemu", f"{target} (QEMU {p.get('machine', '?')})", p))
    if not checks:
        return Check("parity_qemu", False, None, 1.0, "no target in metrics.json")
    return Check("parity_qemu", all(c.passed for c in checks), min(c.value for c in checks),
                 1.0, "; ".join(c.detail for c in checks))


def budgets(metrics: dict) -> Check:
    resources = metrics.get("resources", {})
    parts, ok, worst = [], bool(resources), 0.0
    for target, r in resources.items():
        flash, ram = r.get("flash_bytes"), r.get("ram_with_stack_bytes", r.get("ram_bytes"))
        fb, rb = r.get("flash_budget_bytes"), r.get("ram_budget_bytes")
        within = bool(r.get("within_budget")) and not r.get("fused_multiply_add", {}).get("found")
        ok = ok and within
        text = f"{target}: flash {flash:,} of {fb:,} B, RAM {ram:,} of {rb:,} B" \
            if all(isinstance(x, int) for x in (flash, ram, fb, rb)) else f"{target}"
        if isinstance(r.get("latency_us"), int | float) and \
                isinstance(r.get("latency_budget_us"), int | float):
            text += f", latency {r['latency_us']:,.1f} of {r['latency_budget_us']:,.1f} us"
        if not within:
            text += " (" + ("; ".join(r.get("notes", [])) or "over budget") + ")"
        parts.append(text)
        fractions = [r.get(k) for k in ("flash_fraction", "ram_fraction")]
        worst = max([worst, *(x for x in fractions if isinstance(x, int | float))])
    return Check("budgets", ok, worst, 1.0, "; ".join(parts) or "no target in metrics.json")


def _drop(name: str, key: str, package: Package, baseline: Baseline | None,
          limit: float) -> Check:
    mine = package.metrics.get("evaluation", {}).get(key)
    if baseline is None:
        return Check(name, True, None, limit, f"{NO_BASELINE} ({key} {mine:.4f})"
                     if isinstance(mine, int | float) else NO_BASELINE)
    theirs = baseline.package.metrics.get("evaluation", {}).get(key)
    if not isinstance(mine, int | float) or not isinstance(theirs, int | float):
        return Check(name, False, None, limit, f"no {key} in metrics.json")
    points = 100.0 * (theirs - mine)
    return Check(name, points <= limit + SLACK, round(points, 6), limit,
                 f"{key} {mine:.4f} against {theirs:.4f} of {baseline.version} "
                 f"(points lost; [gate] max_accuracy_drop)")


def false_alarms(metrics: dict, limit: float | None) -> Check:
    events = metrics.get("decision", {}).get("decision", {})
    value = events.get("false_alarms_per_hour")
    if limit is None:
        return Check("false_alarms_per_hour", True, value, None,
                     "no limit ([gate] max_false_alarms_per_hour is not set)")
    if not isinstance(value, int | float):
        return Check("false_alarms_per_hour", False, None, limit,
                     "no decision events on a held-out stream in metrics.json")
    hours = events.get("hours", 0.0)
    return Check("false_alarms_per_hour", value <= limit + SLACK, value, limit,
                 f"{events.get('false_alarms', 0):,} false alarms in {hours * 60:.1f} min of "
                 "held-out stream, with the decision layer")


def changed_fraction(package: Package, baseline: Baseline | None, limit: float) -> Check:
    if baseline is None:
        return Check("changed_fraction", True, None, limit, NO_BASELINE)
    why = comparable(baseline.package, package)
    if why is not None:
        return Check("changed_fraction", False, None, limit,
                     f"the libraries cannot be fed the same samples: {why}")
    diff = behaviour_diff(baseline.package, package, held_out_streams(baseline.package))
    s = diff.summary
    return Check("changed_fraction", diff.changed_fraction <= limit + SLACK,
                 diff.changed_fraction, limit,
                 f"{s['changed_windows']:,} of {s['n_windows']:,} decisions change on the "
                 f"{s['recordings']['n']} held-out streams of {baseline.version} "
                 f"({len(s['segments']):,} segments)")


def interface(package: Package, version: str, baseline: Baseline | None) -> Check:
    mine = package.interface_hash
    if baseline is None:
        return Check("interface", True, mine, None, NO_BASELINE)
    theirs = baseline.package.interface_hash
    if mine == theirs:
        return Check("interface", True, mine, theirs, f"the same as {baseline.version}'s")
    a, b = baseline.package.interface, package.interface
    changed = ", ".join(f"{k} {a[k]} -> {b[k]}" for k in a if a.get(k) != b.get(k)) or \
        "the interface hash"
    bumped = parse_version(version)[0] > parse_version(baseline.version)[0]
    return Check("interface", bumped, mine, theirs,
                 f"changed from {baseline.version}'s ({changed}); " + (
                     f"allowed by the major version bump to {version}" if bumped else
                     f"a changed interface needs a major version bump ({version} has the "
                     f"major version of {baseline.version})"))


def gate_checks(package: Package, version: str, baseline: Baseline | None,
                limits: GateConfig) -> list[Check]:
    m = package.metrics
    return [parity_host(m), parity_qemu(m), budgets(m),
            _drop("accuracy_drop", "accuracy", package, baseline, limits.max_accuracy_drop),
            _drop("balanced_accuracy_drop", "balanced_accuracy", package, baseline,
                  limits.max_accuracy_drop),
            false_alarms(m, limits.max_false_alarms_per_hour),
            changed_fraction(package, baseline, limits.max_changed_fraction),
            interface(package, version, baseline)]


def gate_result(version: str, baseline: Baseline | None, checks: list[Check]) -> dict:
    """gates/<X.Y.Z>.json (docs/registry.md)."""
    return {"version": version, "against": None if baseline is None else baseline.version,
            "passed": all(c.passed for c in checks),
            "gated_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "checks": [c.as_dict() for c in checks]}
