"""metrics.json and report.html: written together, replaced atomically."""

from __future__ import annotations

import json
from pathlib import Path

from kiloml.atomic import write_text_atomically
from kiloml.pipeline import Pipeline
from kiloml.targets.profiles import TargetProfile

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"


def record_target(metrics: dict, profile: TargetProfile, result) -> None:
    """Put one target's parity and resources into the metrics."""
    metrics["parity"][profile.name] = result.parity
    metrics["resources"][profile.name] = result.resources
    metrics.setdefault("targets", {})[profile.name] = profile.model_dump()


def run_ok(metrics: dict) -> bool:
    """Every parity check that ran holds, and every target is within its budget."""
    for name, parity in metrics["parity"].items():
        if name != "host" and not parity.get("emulated", False):
            continue
        if not (parity["all_decisions_equal"] and parity["streaming"]["all_decisions_equal"]):
            return False
    return all(r["within_budget"] for r in metrics["resources"].values())


def write_results(out: Path, metrics: dict, pipeline: Pipeline) -> None:
    from kiloml.report.html import render_report

    html = render_report(metrics, pipeline)
    write_text_atomically(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    write_text_atomically(out / REPORT_FILE, html)


def read_metrics(out: Path) -> dict:
    return json.loads((out / METRICS_FILE).read_text())
