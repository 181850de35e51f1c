"""`kiloml run`: recordings -> windows -> features -> model -> C library -> verified on the host.

Everything is written into a staging folder next to the output folder and
moved into place only when the run has finished, so an error never leaves a
half-written output folder behind.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml import __version__
from kiloml.codegen.library import write_library
from kiloml.data.recording import Recording
from kiloml.data.sources import load_recordings
from kiloml.data.splits import Split, make_split
from kiloml.data.windows import WindowSet, make_windows, window_starts
from kiloml.errors import KilomlError
from kiloml.evaluate.metrics import classification_metrics
from kiloml.models.trees import TreeModel
from kiloml.pipeline import Pipeline, make_feature_stages
from kiloml.progress import track
from kiloml.project import LoadedProject, load_project
from kiloml.targets.budget import Budget, check_budget
from kiloml.targets.profiles import load_profile
from kiloml.verify import host
from kiloml.verify.parity import expected_stream, stream_parity, window_parity
from kiloml.verify.sizes import measure_library


@dataclass
class RunResult:
    output_dir: Path
    metrics: dict
    ok: bool  # parity holds and the library is within budget


def run_project(project_path: str | Path) -> RunResult:
    project = load_project(project_path)
    out_dir = project.output_dir
    staging = _prepare_output(out_dir)
    try:
        metrics = _run(project, staging)
        _commit_output(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    ok = (metrics["parity"]["host"]["all_decisions_equal"]
          and metrics["parity"]["host"]["streaming"]["all_decisions_equal"]
          and all(r["within_budget"] for r in metrics["resources"].values()))
    return RunResult(out_dir, metrics, ok)


# --- output folder -----------------------------------------------------------


def _prepare_output(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise KilomlError("the output folder is a file", file=out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should not be
        return staging
    except OSError as exc:
        raise KilomlError(f"the output folder cannot be written: {exc.strerror or exc}",
                          file=out_dir) from None


def _commit_output(staging: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{time.time_ns()}")
        out_dir.rename(old)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- the job -------------------------------------------------------------------


def _run(project: LoadedProject, out: Path) -> dict:
    cfg = project.config
    profile = load_profile(cfg.target.name)
    started = time.time()

    recordings = load_recordings(project)
    try:
        windows = make_windows(recordings, cfg.window.window_ms, cfg.window.stride_ms,
                               min_label_coverage=cfg.data.min_label_coverage,
                               short_recordings=cfg.data.short_recordings)
        split = make_split(windows, cfg.evaluation)
    except KilomlError as exc:
        if exc.file is None:
            exc.file = str(project.path)
        raise
    print(f"{cfg.name}: {len(recordings)} recordings, {len(windows)} windows "
                  f"of {windows.window_samples} samples x {len(windows.channels)} channels, "
                  f"{len(windows.class_names)} classes; test groups: "
                  f"{', '.join(split.test_groups)}")

    pipeline = Pipeline(
        name=cfg.name, channels=windows.channels, sample_rate_hz=windows.sample_rate_hz,
        window_samples=windows.window_samples, stride_samples=windows.stride_samples,
        class_names=windows.class_names, features=make_feature_stages(cfg),
        model=TreeModel(cfg.model, len(windows.class_names)))

    features = _features_in_batches(pipeline, windows)
    _check_finite(features, pipeline.feature_names(), windows, recordings)

    cv = _cross_validate(pipeline, features, windows, split)

    pipeline.model.fit(features[split.train], windows.y[split.train])
    test_scores = pipeline.model.predict_proba(features[split.test])
    test_pred = pipeline.model.predict(features[split.test])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = classification_metrics(windows.y[split.test], test_pred,
                                            windows.group[split.test], windows.class_names)
    evaluation.update(
        n_train_windows=len(split.train), n_test_windows=len(split.test),
        test_groups=split.test_groups,
        train_groups=sorted(set(windows.group[split.train].tolist())),
        cross_validation=cv, windows_dropped_low_label_coverage=windows.dropped_low_coverage,
        recordings_skipped_short=windows.skipped_recordings)

    library = write_library(pipeline, out / "firmware")
    model_info = pipeline.model.describe()

    parity = _verify_host(pipeline, library, features[split.test], test_pred, test_scores,
                          windows, split, recordings, out / "verify" / "host")

    sizes = measure_library(library, out / "verify" / "sizes")
    budget = Budget.for_target(profile, cfg.target)
    check = check_budget(sizes.flash_bytes, sizes.ram_bytes, budget)
    resources = {profile.name: {
        **check.as_dict(),
        "sections": {"text": sizes.text, "rodata": sizes.rodata, "data": sizes.data,
                     "bss": sizes.bss},
        "measured_on": f"host-gcc-{platform.machine()}",
        "estimate": _estimate(pipeline, profile, library.n_features),
    }}

    metrics = {
        "kiloml_version": __version__,
        "project": cfg.name,
        "data": {
            "source": cfg.data.source,
            "n_recordings": len(recordings),
            "n_windows": len(windows),
            "channels": windows.channels,
            "sample_rate_hz": windows.sample_rate_hz,
            "window_samples": windows.window_samples,
            "stride_samples": windows.stride_samples,
            "window_ms": windows.window_samples * 1000.0 / windows.sample_rate_hz,
            "stride_ms": windows.stride_samples * 1000.0 / windows.sample_rate_hz,
            "class_names": windows.class_names,
            "windows_per_class": np.bincount(windows.y,
                                             minlength=len(windows.class_names)).tolist(),
            "groups": sorted(set(windows.group.tolist())),
        },
        "features": {"n": library.n_features, "names": pipeline.feature_names(),
                     "stages": [s.kind for s in pipeline.features]},
        "model": model_info,
        "evaluation": evaluation,
        "parity": {"host": parity},
        "resources": resources,
        "target": profile.model_dump(),
        "elapsed_s": round(time.time() - started, 2),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    pipeline.save(out / "pipeline.pkl")
    from kiloml.report.html import write_report

    write_report(metrics, pipeline, out / "report.html")
    return metrics


def _features_in_batches(pipeline: Pipeline, windows: WindowSet, batch: int = 2048) -> np.ndarray:
    parts = []
    starts = range(0, len(windows), batch)
    for s in track(starts, "computing features", total=len(starts)):
        parts.append(pipeline.compute_features(windows.x[s:s + batch]))
    return np.concatenate(parts)


def _check_finite(features: np.ndarray, names: list[str], windows: WindowSet,
                  recordings: list[Recording]) -> None:
    bad = np.argwhere(~np.isfinite(features))
    if len(bad):
        w, f = bad[0]
        rec = recordings[int(windows.recording[w])]
        raise KilomlError(f"feature '{names[f]}' overflows float32 in the window starting at "
                          f"sample {int(windows.start[w])}; scale the samples down",
                          file=rec.source)


def _cross_validate(pipeline: Pipeline, features: np.ndarray, windows: WindowSet,
                    split: Split) -> dict:
    if not split.folds:
        return {"folds": 0, "note": "too few training groups for cross-validation"}
    accuracies, balanced = [], []
    for fit_idx, val_idx in track(split.folds, "cross-validating"):
        model = TreeModel(pipeline.model.config, pipeline.n_classes)
        model.fit(features[fit_idx], windows.y[fit_idx])
        pred = model.predict(features[val_idx])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = classification_metrics(windows.y[val_idx], pred, windows.group[val_idx],
                                       windows.class_names)
        accuracies.append(m["accuracy"])
        balanced.append(m["balanced_accuracy"])
    return {
        "folds": len(split.folds),
        "accuracy_per_fold": accuracies,
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "balanced_accuracy_mean": float(np.mean(balanced)),
    }


def _verify_host(pipeline: Pipeline, library, test_features: np.ndarray, test_pred: np.ndarray,
                 test_scores: np.ndarray, windows: WindowSet, split: Split,
                 recordings: list[Recording], work: Path) -> dict:
    exe = host.build_host(library, work)
    test_x = windows.x[split.test]
    outputs = []
    batch = 4096
    for s in track(range(0, len(test_x), batch), "host parity (windows)",
                   total=(len(test_x) + batch - 1) // batch):
        outputs.append(host.run_windows(exe, test_x[s:s + batch], pipeline.n_classes,
                                        library.n_features, work))
    c_out = host.WindowOutputs(
        np.concatenate([o.labels for o in outputs]) if outputs else np.zeros(0, np.int32),
        np.concatenate([o.scores for o in outputs]) if outputs else np.zeros((0, 1), np.float32),
        np.concatenate([o.features for o in outputs]) if outputs else
        np.zeros((0, 1), np.float32))
    result = window_parity(test_pred, test_scores, test_features, c_out)

    # Streaming: feed each held-out recording sample by sample.
    test_groups = set(split.test_groups)
    stream_recs = [r for r in recordings
                   if r.group in test_groups and r.n_samples >= pipeline.window_samples]
    exp_rec, _exp_start, exp_last = expected_stream([r.n_samples for r in stream_recs],
                                                   pipeline.window_samples,
                                                   pipeline.stride_samples)
    exp_labels, exp_scores = [], []
    for i in track(range(len(stream_recs)), "host parity (streaming)"):
        rec = stream_recs[i]
        starts = window_starts(rec.n_samples, pipeline.window_samples, pipeline.stride_samples)
        view = np.lib.stride_tricks.sliding_window_view(rec.samples, pipeline.window_samples,
                                                        axis=0)
        x = np.ascontiguousarray(view[starts].transpose(0, 2, 1))
        f = pipeline.compute_features(x)
        exp_labels.append(pipeline.model.predict(f))
        exp_scores.append(pipeline.model.predict_proba(f))
    events = host.run_stream(exe, [r.samples for r in stream_recs], pipeline.n_classes, work)
    empty = np.zeros((0, pipeline.n_classes))
    result["streaming"] = stream_parity(
        exp_rec, exp_last,
        np.concatenate(exp_labels) if exp_labels else np.zeros(0, np.int64),
        np.concatenate(exp_scores) if exp_scores else empty, events)
    result["streaming"]["n_recordings"] = len(stream_recs)
    return result


def _estimate(pipeline: Pipeline, profile, n_features: int) -> dict:
    costs = [s.cost(profile, pipeline.window_samples, pipeline.n_channels)
             for s in pipeline.features]
    costs.append(pipeline.model.cost(profile, n_features))
    ring = 4 * pipeline.window_samples * pipeline.n_channels + 4 * n_features
    return {
        "flash_bytes": sum(c.flash_bytes for c in costs),
        "ram_bytes": sum(c.ram_bytes for c in costs) + ring,
        "instructions_per_inference": sum(c.instructions for c in costs),
        "note": "uncalibrated estimate",
    }
