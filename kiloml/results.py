"""metrics.json and report.html: written together, replaced atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

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


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(out: Path, metrics: dict, pipeline: Pipeline) -> None:
    from kiloml.report.html import render_report

    html = render_report(metrics, pipeline)
    _atomic_write(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    _atomic_write(out / REPORT_FILE, html)


def read_metrics(out: Path) -> dict:
    return json.loads((out / METRICS_FILE).read_text())
