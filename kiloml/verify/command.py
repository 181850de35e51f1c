"""`kiloml verify`: check an existing run's library on an (emulated) MCU target."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from kiloml.codegen.library import FirmwareLibrary
from kiloml.errors import KilomlError
from kiloml.pipeline import Pipeline
from kiloml.project import TargetConfig, load_project
from kiloml.results import METRICS_FILE, read_metrics, record_target, run_ok, write_results
from kiloml.targets.budget import Budget
from kiloml.targets.estimate import estimate_resources
from kiloml.verify.reference import REFERENCE_FILE, Reference
from kiloml.verify.target import TargetResult, verify_target


@dataclass
class VerifyOutcome:
    output_dir: Path
    target: str
    result: TargetResult
    ok: bool


def firmware_library(firmware: Path, n_features: int) -> FirmwareLibrary:
    sources = sorted(firmware.glob("*.c"))
    return FirmwareLibrary(firmware, sources, sorted(firmware.glob("*.h")), n_features)


def verify_project(project_path: str | Path, target: str | None = None) -> VerifyOutcome:
    project = load_project(project_path)
    cfg = project.config
    out = project.output_dir
    needed = [out / "pipeline.pkl", out / "verify" / REFERENCE_FILE, out / METRICS_FILE,
              out / "firmware" / "kiloml_model.c"]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise KilomlError(f"no complete `kiloml run` output here ({missing[0].name} is "
                          f"missing); run `kiloml run {project.path}` first", file=out)
    try:
        own_file = target is not None and target.endswith(".toml")  # relative to the cwd
        profile = project.target_profile(str(Path(target).resolve()) if own_file else target)
    except KilomlError as exc:
        raise KilomlError(exc.message, where="--target") from None
    same = profile.name == cfg.target.name
    budget = Budget.for_target(profile, cfg.target if same else TargetConfig(name=profile.name))
    pipeline = Pipeline.load(out / "pipeline.pkl")
    reference = Reference.load(out / "verify" / REFERENCE_FILE)
    library = firmware_library(out / "firmware", len(pipeline.feature_names()))
    work = out / "verify" / profile.name
    shutil.rmtree(work, ignore_errors=True)
    estimate = estimate_resources(pipeline, profile, library.n_features)
    result = verify_target(pipeline, library, reference, profile, budget, work,
                           latency_budget_ms=cfg.target.latency_budget_ms if same else None,
                           estimate=estimate)
    metrics = read_metrics(out)
    metrics.setdefault("estimates", {})[profile.name] = estimate
    record_target(metrics, profile, result)
    write_results(out, metrics, pipeline)
    return VerifyOutcome(out, profile.name, result, result.ok and run_ok(metrics))
