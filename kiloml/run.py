"""`kiloml run`: recordings -> windows -> features -> model -> C library -> verified on the host.

Everything is written into a staging folder next to the output folder and
moved into place only when the run has finished, so an error never leaves a
half-written output folder behind.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.library import write_library
from kiloml.data.order import natural_sorted
from kiloml.data.recording import Recording
from kiloml.decision.project import (
    check_recordings_long_enough,
    decision_params,
    stream_events,
    threshold_warnings,
)
from kiloml.errors import KilomlError
from kiloml.evaluate.metrics import classification_metrics, misclassified_windows
from kiloml.evaluate.per_recording import per_recording_vote
from kiloml.families import family_for
from kiloml.monitor.project import check_ram as check_monitor_ram
from kiloml.monitor.project import fit_for_run as fit_monitor_for_run
from kiloml.outputs import check_output_folder, make_staging, project_inputs, replace_folder
from kiloml.persist.pipeline_state import save_pipeline
from kiloml.pipeline import Pipeline
from kiloml.prepare import check_finite, prepare_data
from kiloml.project import LoadedProject, load_project, locate
from kiloml.results import record_target, run_ok, write_results
from kiloml.targets.budget import Budget, check_budget
from kiloml.targets.estimate import estimate_resources
from kiloml.verify.host_parity import verify_host
from kiloml.verify.reference import REFERENCE_FILE, Reference
from kiloml.verify.sizes import measure_library
from kiloml.verify.target import verify_target
from kiloml.version import __version__


@dataclass
class RunResult:
    output_dir: Path
    metrics: dict
    ok: bool  # parity holds and the library is within budget


def run_project(project_path: str | Path, *, emulate: bool = True,
                extra_metrics: dict | None = None) -> RunResult:
    """The whole job. ``emulate=False`` skips the emulated-MCU step (host parity and
    host-measured sizes only, labelled as such). ``extra_metrics`` (e.g. the search that
    chose this project) go into metrics.json and the report."""
    project = load_project(project_path)
    out_dir = project.output_dir
    check_run_output(project)
    staging = _prepare_output(out_dir)
    try:
        metrics = _run(project, staging, emulate, extra_metrics or {})
        replace_folder(staging, out_dir, "run")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    ok = run_ok(metrics)
    return RunResult(out_dir, metrics, ok)


# --- output folder -----------------------------------------------------------


def check_run_output(project: LoadedProject) -> None:
    """The run's output folder must be new, empty or an earlier run's (never the data or
    the project folder, never a folder of the user's)."""
    if project.config.output.dir:
        name, line = "[output] dir", locate(project, ("output",), "dir")
    else:
        name, line = "output folder (build/<name> in the current folder)", None
    check_output_folder(project.output_dir, "run", project_inputs(project), name=name,
                        file=project.path, line=line)


def _prepare_output(out_dir: Path) -> Path:
    try:
        return make_staging(out_dir, "run")
    except OSError as exc:
        raise KilomlError(f"the output folder cannot be written: {exc.strerror or exc}",
                          file=out_dir) from None


# --- the job -------------------------------------------------------------------


def _run(project: LoadedProject, out: Path, emulate: bool, extra: dict) -> dict:
    # which file made the run and its bytes' hash (at the start: the run's own reading of
    # it): `kiloml release` stores that file with the version and refuses one edited since
    project_file = {"path": str(project.path.resolve()),
                    "sha256": hashlib.sha256(project.path.read_bytes()).hexdigest()}
    cfg = project.config
    profile = project.target_profile()
    started = time.time()
    raw_recordings, recordings, pipeline, windows, split = prepare_data(project)
    n_aug = int(windows.augmented.sum()) if windows.augmented is not None else 0
    # the model family's contract (kiloml.families.base), in its order
    if cfg.monitor is not None:  # before any fitting: a configuration that cannot fit
        check_monitor_ram(cfg.monitor, pipeline.n_channels, pipeline.n_classes,
                          len(pipeline.feature_names()), project.path)
    family = family_for(project)
    inputs = family.model_inputs(pipeline, windows, split)
    check_finite(inputs.features, pipeline.feature_names(), windows, recordings)
    cv = family.cross_validate(pipeline, inputs, windows, split)
    x = family.assemble(pipeline, inputs, split.train, windows.y)  # vector stages on all
    pipeline.model = family.new_model(pipeline, inputs.sample_shape)
    family.fit(pipeline.model, x[split.train], windows.y[split.train],
               windows.group[split.train])
    oof_scores = family.out_of_fold_scores(cv, pipeline.model, x, split)
    test_pred = pipeline.model.predict(x[split.test])
    test_scores = pipeline.model.predict_proba(x[split.test])
    own_metrics = family.finish(out, pipeline.model, x, windows, split)
    features = x.reshape(len(x), -1)
    test_groups = set(split.test_groups)
    streamed = [(raw, rec) for raw, rec in zip(raw_recordings, recordings, strict=False)
                if rec.group in test_groups and rec.n_samples >= pipeline.window_samples]
    try:
        check_recordings_long_enough(cfg.decision, [p for _, p in streamed],
                                     pipeline.window_samples, pipeline.stride_samples)
    except KilomlError as exc:
        exc.file = str(project.path)
        raise
    pipeline.decision = decision_params(cfg.decision, windows, split, oof_scores, project.path)
    if cfg.monitor is not None:
        pipeline.monitor = fit_monitor_for_run(
            cfg.monitor, pipeline.model, features, windows.x, split.train, oof_scores,
            pipeline.n_classes, len(pipeline.feature_names()), project.path,
            labels=windows.y, channels=list(pipeline.channels))
        pipeline.monitor_snapshot_every = cfg.monitor.snapshot_every
        monitor_alarms = _monitor_alarms(project, pipeline, raw_recordings, split)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = classification_metrics(windows.y[split.test], test_pred,
                                            windows.group[split.test], windows.class_names)
    evaluation.update(
        n_train_windows=len(split.train), n_test_windows=len(split.test),
        n_augmented_train_windows=n_aug,
        test_groups=split.test_groups,
        train_groups=natural_sorted(windows.group[split.train].tolist()),
        cross_validation=cv, windows_dropped_low_label_coverage=windows.dropped_low_coverage,
        recordings_skipped_short=windows.skipped_recordings,
        misclassified=misclassified_windows(
            windows.y[split.test], test_pred, test_scores, windows.recording[split.test],
            windows.start[split.test], [r.source for r in recordings], windows.sample_rate_hz,
            windows.class_names))
    if cfg.evaluation.per_recording == "vote":
        evaluation["per_recording"] = per_recording_vote(
            windows.y[split.test], test_pred, windows.recording[split.test],
            windows.group[split.test], [r.source for r in recordings], windows.class_names)

    library = write_library(pipeline, out / "firmware")
    reference = Reference.build(pipeline, windows.x[split.test], features[split.test],
                                test_pred, test_scores, [r for r, _ in streamed],
                                [p for _, p in streamed],
                                whole=[r for r in raw_recordings if r.group in test_groups],
                                model_id=bytes.fromhex(library.info["model_id"]))
    (out / "verify").mkdir(parents=True, exist_ok=True)
    reference.save(out / "verify" / REFERENCE_FILE)
    save_pipeline(pipeline, out / "pipeline.json")

    host_parity = verify_host(pipeline, library, reference, out / "verify" / "host")
    sizes = measure_library(library, out / "verify" / "host" / "sizes")
    budget = Budget.for_target(profile, cfg.target)
    estimate = estimate_resources(pipeline, profile, library.n_features)

    metrics = {
        "kiloml_version": __version__,
        "project": cfg.name,
        "project_file": project_file,
        # the held-out recordings verify/reference.npz streams, in its order (kiloml diff
        # names its segments and groups its changes by them)
        "held_out_streams": [{"source": r.source, "group": r.group} for r, _ in streamed],
        "data": {
            "source": cfg.data.source,
            "n_recordings": len(raw_recordings),
            "n_augmented_recordings": len(recordings) - len(raw_recordings),
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
            "groups": natural_sorted(windows.group.tolist()),
            **({} if windows.fit is None else {"recording_fit": windows.fit}),
        },
        "features": {"n": library.n_features, "names": pipeline.feature_names(),
                     "stages": [s.kind for s in pipeline.features]},
        "model": pipeline.model.describe(),
        **own_metrics,
        "evaluation": evaluation,
        "decision": {**_decision_metrics(pipeline, [p for _, p in streamed]),
                     "warnings": threshold_warnings(pipeline.decision_params, test_scores,
                                                    windows.y[split.test],
                                                    windows.class_names)},
        "library": library.info,
        "parity": {"host": host_parity},
        "resources": {},
        "host_library": {"flash_bytes": sizes.flash_bytes, "ram_bytes": sizes.ram_bytes,
                         "sections": {"text": sizes.text, "rodata": sizes.rodata,
                                      "data": sizes.data, "bss": sizes.bss},
                         "measured_on": f"host-gcc-{platform.machine()} -Os"},
        "estimates": {profile.name: estimate},
        "targets": {},
    }
    if emulate:
        result = verify_target(pipeline, library, reference, profile, budget,
                               out / "verify" / profile.name,
                               latency_budget_ms=cfg.target.latency_budget_ms,
                               estimate=estimate)
        record_target(metrics, profile, result)
    else:
        check = check_budget(sizes.flash_bytes, sizes.ram_bytes, budget)
        metrics["resources"][profile.name] = {
            **check.as_dict(),
            "measured_on": f"host-gcc-{platform.machine()} (not run on the MCU: --no-emulator)",
        }
        metrics["targets"][profile.name] = profile.model_dump()
    if pipeline.monitor is not None:
        metrics["monitor"] = {**_monitor_metrics(pipeline, library, reference, profile, out,
                                                 emulate), **monitor_alarms}
    metrics["power"] = {profile.name: _power(pipeline, profile, cfg.target,
                                             metrics["resources"][profile.name], estimate)}
    family.after_target(metrics, pipeline.model, x, split, profile, out, emulate)
    from kiloml.evaluate.rule_baseline import rule_baseline

    metrics["rule_baseline"] = rule_baseline(
        pipeline, windows, split, streamed, out / "rule_baseline", profile, budget, emulate,
        evaluation["balanced_accuracy"], metrics["resources"].get(profile.name))
    metrics.update(extra)
    metrics["elapsed_s"] = round(time.time() - started, 2)
    write_results(out, metrics, pipeline)
    return metrics


def _monitor_alarms(project: LoadedProject, pipeline: Pipeline, raw_recordings: list,
                    split) -> dict:
    """[monitor] false_alarm_every: the limits calibrated on the held-out devices' clean
    streams (pipeline.monitor replaced); with [monitor] evaluate, the alarms evaluated on
    them (metrics.json monitor.calibration and monitor.evaluation); the training samples'
    per-channel scale that drift severities are in (monitor.channel_scale)."""
    from kiloml.evaluate.perturb import ChannelScale
    from kiloml.monitor import assess

    section = project.config.monitor
    defaults = pipeline.monitor
    held = set(split.test_groups)  # severities in units of the training samples
    scale = ChannelScale.of_samples(np.concatenate(
        [r.samples for r in raw_recordings if r.group not in held] or
        [r.samples for r in raw_recordings]))
    out: dict = {"channel_scale": {"std": scale.std.tolist(), "low": scale.low.tolist(),
                                   "high": scale.high.tolist()}}
    if section.false_alarm_every is None and not section.evaluate:
        return out
    devices = assess.held_out_devices(pipeline, raw_recordings, list(split.test_groups))
    calibration = None
    if section.false_alarm_every is not None:
        calibration = assess.calibrate_for_run(
            section.false_alarm_every, defaults, pipeline, devices, project.path,
            locate(project, ("monitor",), "false_alarm_every"))
        pipeline.monitor = calibration.params
        out["calibration"] = {**calibration.report, "devices": devices.names}
    out["reference"] = assess.reference_values(pipeline.monitor, devices)
    if section.evaluate and devices.names:
        out["evaluation"] = assess.evaluate_for_run(
            pipeline, calibration, defaults, devices, scale, section.false_alarm_every)
    return out


def _monitor_metrics(pipeline: Pipeline, library, reference: Reference, profile, out: Path,
                     emulate: bool) -> dict:
    """The monitor's parameters, its RAM estimate, and (with the emulator) what it adds to
    the library on the target, with its instructions per update on QEMU."""
    from kiloml.monitor.project import ram_estimate
    from kiloml.monitor.resources import monitor_instructions, monitor_resources
    from kiloml.verify.target import DEFAULT_OPTIMIZATION

    m = pipeline.monitor
    assert m is not None
    info: dict = {"params": m.describe(), "snapshot_every": pipeline.monitor_snapshot_every,
                  "ram_estimate": ram_estimate(m.n_monitored, m.n_channels, m.n_classes),
                  "resources": {}}
    if emulate and profile.qemu_machine:
        work = out / "verify" / profile.name / "monitor"
        res = monitor_resources(pipeline, library, profile, DEFAULT_OPTIMIZATION, work,
                                created_utc=library.info.get("created_utc"))
        res.update(monitor_instructions(pipeline, reference, profile, DEFAULT_OPTIMIZATION,
                                        work))
        info["resources"][profile.name] = res
    else:
        info["resources"][profile.name] = {"note": "not measured (--no-emulator)"}
    return info


def _power(pipeline: Pipeline, profile, target_cfg, resources: dict, estimate: dict) -> dict:
    """Energy per inference, average power, battery life and the highest inference rate
    within the power budget, from the measured instructions (estimated without QEMU)."""
    from kiloml.targets.power import power_report

    measured = "instructions_mean" in resources
    instructions = resources["instructions_mean"] if measured else \
        estimate["instructions_per_inference"]
    push = resources.get("push_sample_instructions_mean", 0.0)
    rate = target_cfg.inference_rate_hz or pipeline.sample_rate_hz / pipeline.stride_samples
    out = power_report(profile, instructions, push, pipeline.input_rate_hz, rate,
                       target_cfg.battery_mah, target_cfg.power_budget_uw)
    out["instructions_from"] = resources["measured_on"] if measured else "estimate"
    return out


def _decision_metrics(pipeline: Pipeline, held_out: list[Recording]) -> dict:
    """The layer's parameters and its events on the held-out recordings end to end, with
    the model's raw arg-max for comparison (timeline kept for the report's plot)."""
    params = pipeline.decision_params
    out: dict = {"params": params.describe()}
    if held_out:
        events = stream_events(pipeline, held_out, params)
        timeline = events.pop("_timeline")
        out.update(events)
        out["timeline"] = {"time_s": np.round(timeline["time_s"], 3).tolist(),
                           **{k: timeline[k].astype(int).tolist()
                              for k in ("truth", "raw", "decision")}}
    return out
