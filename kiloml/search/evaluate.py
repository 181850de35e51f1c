"""One candidate of a search: its cost before training (to reject it early), then
grouped cross-validation on the training groups and its cost after training.

Runs in worker processes (a local pool or Ray): everything goes in and out as plain
data. Data and features are cached per process and features also on disk, keyed by
what they depend on, so candidates that differ only in the model share them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError
from kiloml.families import OOF_KEY, family_for
from kiloml.persist.archive import read_npz
from kiloml.project import LoadedProject, Project

_DATA: dict[str, tuple] = {}  # per process: prepare_data results by what they depend on


@dataclass(frozen=True)
class SearchBudget:
    flash_bytes: int
    ram_bytes: int  # static RAM + stack
    latency_us: float | None
    margin: float = 0.0  # headroom kept for the estimator's error, a fraction of each budget

    def reasons(self, estimate: dict) -> list[str]:
        """Why an estimate does not fit within the budgets less the margin (empty: fits)."""
        out = []
        keep = 1.0 - self.margin
        less = f" less the {self.margin:.0%} margin" if self.margin else ""
        if estimate["flash_bytes"] > self.flash_bytes * keep:
            out.append(f"flash {estimate['flash_bytes']:,} B > {self.flash_bytes:,} B{less}")
        ram = estimate["ram_bytes"] + estimate["stack_bytes"]
        if ram > self.ram_bytes * keep:
            out.append(f"RAM {ram:,} B > {self.ram_bytes:,} B{less}")
        if self.latency_us is not None and estimate["latency_us"] > self.latency_us * keep:
            out.append(f"latency {estimate['latency_us'] / 1000:,.2f} ms > "
                       f"{self.latency_us / 1000:g} ms{less}")
        return out

    def describe(self) -> str:
        lat = f", latency {self.latency_us / 1000:g} ms" if self.latency_us is not None else ""
        margin = f" ({self.margin:.0%} margin kept)" if self.margin else ""
        return f"flash {self.flash_bytes:,} B, RAM {self.ram_bytes:,} B{lat}{margin}"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def candidate_project(job: dict) -> LoadedProject:
    path = Path(job["project_path"])
    return LoadedProject(config=Project.model_validate(job["raw"]), path=path, root=path.parent)


def prepared(project: LoadedProject):
    """(raw recordings, recordings, pipeline, windows, split) for the candidate, with the
    model's input stages in place (a raw-window network reads the window itself)."""
    from kiloml.pipeline import make_feature_stages
    from kiloml.prepare import prepare_data

    cfg = project.config
    key = _digest([cfg.data.model_dump(), [p.model_dump() for p in cfg.preprocess],
                   cfg.window.model_dump(), cfg.augment.model_dump(),
                   cfg.evaluation.model_dump(), str(project.root)])
    if key not in _DATA:
        _DATA.clear()  # one data set at a time is enough and bounds the memory
        _DATA[key] = prepare_data(project, announce=False)
    raw, recs, pipeline, windows, split = _DATA[key]
    pipeline = copy.copy(pipeline)  # the cached one keeps its own stages
    pipeline.features = make_feature_stages(project, windows.sample_rate_hz,
                                            windows.window_samples, windows.channels)
    family_for(project).prepare_pipeline(pipeline)
    return raw, recs, pipeline, windows, split


def estimate_before(job: dict) -> dict:
    """The candidate's cost before training, and whether it fits the budget."""

    started = time.time()
    project = candidate_project(job)
    _, _, pipeline, windows, split = prepared(project)
    n_features = feature_count(pipeline, windows)
    profile = project.target_profile()
    family = family_for(project)
    probe = None
    if family.needs_probe():
        # a forest's size depends on the data: grow its first trees on the training windows
        parts = _features(pipeline, windows, Path(job["cache_dir"]), project)
        features = pipeline.assemble(parts, fit_rows=split.train, y=windows.y)
        probe = (features[split.train], windows.y[split.train])
    estimate = family.estimate_before_training(pipeline, profile, n_features,
                                               len(split.train), probe)
    budget = SearchBudget(**job["budget"])
    return {"estimate_before_training": estimate, "n_features": n_features,
            "over_budget": budget.reasons(estimate),
            "window_samples": pipeline.window_samples,
            "seconds_estimate": round(time.time() - started, 3)}


def feature_count(pipeline, windows) -> int:
    """Features per window, from one window through the stages (exact, cheap)."""
    parts = pipeline.window_features(windows.x[:1])
    return int(sum(p.reshape(1, -1).shape[1] for p in parts))


def evaluate(job: dict) -> dict:
    """Cross-validate and fit the candidate; never raises (a failure is a row)."""
    from kiloml.progress import set_quiet

    set_quiet(True)
    started = time.time()
    try:
        row = _evaluate(job)
        row["status"] = "over budget after training" if row["over_budget"] else "evaluated"
    except KilomlError as exc:
        row = {"status": "failed", "error": str(exc)}
    except Exception as exc:
        row = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc(limit=5)}
    row["seconds"] = round(time.time() - started, 2)
    row["worker"] = f"{os.uname().nodename}:{os.getpid()}"
    return row


def _evaluate(job: dict) -> dict:
    from kiloml.targets.estimate import estimate_resources
    from kiloml.targets.profiles import load_profile, profile_names

    project = candidate_project(job)
    _, _, pipeline, windows, split = prepared(project)
    parts = _features(pipeline, windows, Path(job["cache_dir"]), project)
    # the model family's contract, in the order `kiloml run` walks it
    family = family_for(project)
    inputs = family.model_inputs(pipeline, windows, split, parts=parts)
    cv = family.cross_validate(pipeline, inputs, windows, split)
    cv.pop(OOF_KEY, None)
    if not cv.get("folds"):
        raise KilomlError("too few training groups for cross-validation: a search needs at "
                          "least 2 folds", file=project.path)
    x = family.assemble(pipeline, inputs, split.train, windows.y)
    pipeline.model = family.new_model(pipeline, inputs.sample_shape)
    family.fit(pipeline.model, x[split.train], windows.y[split.train],
               windows.group[split.train], progress=False)
    extra = family.search_columns(pipeline.model)
    features = inputs.features
    profile = project.target_profile()
    estimate = estimate_resources(pipeline, profile, features.shape[1])
    by_target = {name: estimate_resources(pipeline, load_profile(name), features.shape[1])
                 for name in profile_names()}
    by_target[profile.name] = estimate
    budget = SearchBudget(**job["budget"])
    return {"cv": {k: v for k, v in cv.items() if k != "note"},
            "accuracy": float(cv["accuracy_mean"]),
            "balanced_accuracy": float(cv["balanced_accuracy_mean"]),
            "estimate": estimate, "over_budget": budget.reasons(estimate),
            "n_features": int(features.shape[1]), "estimates_by_target": by_target, **extra}


def read_feature_cache(path: Path, n_windows: int, widths: list[int]
                       ) -> list[np.ndarray] | None:
    """The cached outputs of the window stages (p0 .. p<n-1>, float32 [n_windows, width]
    each), or None when the file is damaged or not what this search computes (it is
    then computed again). Read without pickle, its sizes bounded."""
    try:
        arrays = read_npz(path)
    except KilomlError:
        return None
    if sorted(arrays) != sorted(f"p{i}" for i in range(len(widths))):
        return None
    parts = [arrays[f"p{i}"] for i in range(len(widths))]
    if any(p.dtype != np.float32 or p.shape != (n_windows, w)
           for p, w in zip(parts, widths, strict=True)):
        return None
    return parts


def _features(pipeline, windows, cache_dir: Path, project: LoadedProject) -> list[np.ndarray]:
    """The window stages' outputs for every window, cached on disk by what they depend on."""
    from kiloml.prepare import window_features_in_batches

    cfg = project.config
    reads_window = family_for(project).reads_window
    key = _digest([cfg.data.model_dump(), [p.model_dump() for p in cfg.preprocess],
                   cfg.window.model_dump(), cfg.augment.model_dump(), str(project.root),
                   "raw" if reads_window else [f.model_dump() for f in cfg.features]])
    path = cache_dir / f"features-{key}.npz"
    widths = [len(s.feature_names(list(pipeline.channels))) for s in pipeline.features
              if s.reads == "window"]
    parts = read_feature_cache(path, len(windows), widths) if path.exists() else None
    if parts is not None:
        return parts
    parts = window_features_in_batches(pipeline, windows)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".features-", suffix=".npz", dir=cache_dir)
    os.close(fd)
    np.savez(tmp, **{f"p{i}": p for i, p in enumerate(parts)})
    os.replace(tmp, path)  # atomic: a concurrent worker sees all or nothing
    return parts
