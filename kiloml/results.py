"""metrics.json and report.html: written together, replaced atomically."""

from __future__ import annotations

import json
from pathlib import Path

from kiloml.atomic import write_text_atomically
from kiloml.errors import KilomlError
from kiloml.persist.archive import describe, read_json
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
    return all(r["within_budget"] and not r.get("fused_multiply_add", {}).get("found")
               for r in metrics["resources"].values())


def write_results(out: Path, metrics: dict, pipeline: Pipeline) -> None:
    from kiloml.report.html import render_report

    html = render_report(metrics, pipeline)
    write_text_atomically(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    write_text_atomically(out / REPORT_FILE, html)


def read_metrics(out: Path) -> dict:
    """A run's metrics.json (the folder may come from elsewhere: bounded, one line when it
    is not a JSON object)."""
    path = out / METRICS_FILE
    data = read_json(path)
    if not isinstance(data, dict):
        raise KilomlError(f"expected a JSON object, got {describe(data)}; run `kiloml run` "
                          "again", file=path)
    return data
