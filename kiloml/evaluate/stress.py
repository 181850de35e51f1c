"""`kiloml stress`: the trained pipeline under sensor perturbations of increasing severity.

Loads a finished run (pipeline.json, metrics.json), perturbs the held-out recordings
(the run's test groups) at each severity, and measures the Python reference's accuracy
(the model's arg-max, as the run's test accuracy; the C library makes the same decisions,
which `kiloml run` verified). Perturbations act on the raw sensor samples, before the
pipeline's preprocessing, as a real sensor fault would.

The breaking point of a perturbation is the first severity, from mild to severe, at which
accuracy is ``drop_points`` (5) points or more below the unperturbed accuracy; linearly
interpolated between that severity and the previous one (or the perturbation's identity,
e.g. 0 %), except for whole-number perturbations (axes), and None when accuracy never
falls that far within the severities tried.

Augmentation: the project's model retrained on the same training recordings plus
perturbed copies of them (each copy one perturbation at a random severity within the
span tried), the held-out groups unchanged; it is stressed the same way, against its own
unperturbed accuracy.

metrics.json gets ``stress.<perturbation>`` and ``stress_augmented.<perturbation>`` =
{severities, accuracy, breaking_point, ...} and ``stress_info`` (settings, baselines,
the augmented training set); report.html gets a section. Both are rewritten only at the
end, atomically.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.data.augment import augment as project_augment
from kiloml.data.recording import Recording
from kiloml.data.sources import load_recordings
from kiloml.data.windows import make_recording_windows, make_windows
from kiloml.errors import KilomlError
from kiloml.evaluate.perturb import (
    PERTURBATIONS,
    ChannelScale,
    Perturbation,
    affected_channels,
    get_perturbation,
    perturb_recording,
)
from kiloml.families import family_for
from kiloml.outputs import require_kiloml_folder
from kiloml.persist.pipeline_state import PIPELINE_FILE, load_pipeline, refuse_old_run
from kiloml.pipeline import Pipeline
from kiloml.progress import track
from kiloml.project import SEED_MAX, LoadedProject, load_project
from kiloml.results import METRICS_FILE, read_metrics, write_results

DROP_POINTS = 5.0
AUGMENT_COPIES = 3  # perturbed copies per training recording (perturbations take turns)
MAX_COPIES = 100  # --copies: each copy is one more training set in memory


@dataclass
class StressOptions:
    perturbations: list[str] | None = None  # None: all
    severities: list[float] | None = None  # for exactly one perturbation
    augment: bool = True
    copies: int = AUGMENT_COPIES
    seed: int = 0
    drop_points: float = DROP_POINTS


@dataclass
class StressOutcome:
    output_dir: Path
    info: dict
    stress: dict
    augmented: dict | None


# --- inputs --------------------------------------------------------------------


def parse_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise KilomlError("no perturbation named; known: " + ", ".join(PERTURBATIONS),
                          where="--perturbations")
    return names


def parse_severities(text: str | None) -> list[float] | None:
    if text is None:
        return None
    out = []
    for part in (p.strip() for p in text.split(",")):
        try:
            out.append(float(part))
        except ValueError:
            raise KilomlError(f"'{part}' is not a number", where="--severities") from None
    if not out:
        raise KilomlError("no severity given", where="--severities")
    return out


def check_options(options: StressOptions) -> None:
    """The numeric options, before the run folder is read."""
    if not 0 <= options.copies <= MAX_COPIES:
        raise KilomlError(f"{options.copies} copies: give 0 to {MAX_COPIES}", where="--copies")
    if not 0 <= options.seed <= SEED_MAX:
        raise KilomlError(f"{options.seed}: a seed is 0 to {SEED_MAX}", where="--seed")
    if not 0 < options.drop_points < 100:
        raise KilomlError(f"{options.drop_points:g} points: must be between 0 and 100",
                          where="--drop-points")


def plan(options: StressOptions, n_channels: int) -> dict[str, list[float]]:
    """Perturbation -> severities (checked, mild to severe). User errors before any work."""
    names = options.perturbations or list(PERTURBATIONS)
    chosen = [get_perturbation(n) for n in dict.fromkeys(names)]
    if options.severities is not None and len(chosen) != 1:
        raise KilomlError("give --severities together with exactly one perturbation in "
                          "--perturbations (severities have different units)",
                          where="--severities")
    check_options(options)
    out: dict[str, list[float]] = {}
    for p in chosen:
        given = options.severities if options.severities is not None \
            else p.defaults_for(n_channels)
        checked = [p.check(s, n_channels) for s in given]
        out[p.name] = sorted(dict.fromkeys(checked), key=p.severity_key)
    return out


def _load_run(project: LoadedProject) -> tuple[Pipeline, dict]:
    out = project.output_dir
    refuse_old_run(out, project.path)  # never unpickled
    needed = [out / PIPELINE_FILE, out / METRICS_FILE]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise KilomlError(f"no complete `kiloml run` output here ({missing[0].name} is "
                          f"missing); run `kiloml run {project.path}` first", file=out)
    require_kiloml_folder(out, "run", what="the run's output folder")
    metrics = read_metrics(out)
    if "test_groups" not in metrics.get("evaluation", {}):
        raise KilomlError("evaluation.test_groups is missing; run `kiloml run` again",
                          file=out / METRICS_FILE)
    return load_pipeline(out / PIPELINE_FILE), metrics


# --- windows and accuracy -----------------------------------------------------------


def _windows(project: LoadedProject, pipeline: Pipeline, recordings: list[Recording]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x [N, T, C], y as indices into pipeline.class_names, group [N]) after the
    pipeline's preprocessing; recordings too short after a perturbation are skipped."""
    cfg = project.config
    recs = pipeline.preprocess_recordings(recordings)
    if pipeline.recording is not None and cfg.window.length_ms is not None:
        # one window per recording; those the crop rule refuses are left out, as the C does
        w = make_recording_windows(recs, cfg.window.length_ms, pipeline.recording,
                                   refused="skip")
        index = {name: k for k, name in enumerate(pipeline.class_names)}
        return w.x, np.array([index[w.class_names[k]] for k in w.y], np.int64), w.group
    if not any(r.n_samples >= pipeline.window_samples for r in recs):
        return (np.zeros((0, pipeline.window_samples, pipeline.n_channels), np.float32),
                np.zeros(0, np.int64), np.zeros(0, str))
    w = make_windows(recs, cfg.window.window_ms, cfg.window.stride_ms,
                     min_label_coverage=cfg.data.min_label_coverage, short_recordings="skip")
    index = {name: k for k, name in enumerate(pipeline.class_names)}
    y = np.array([index[w.class_names[k]] for k in w.y], dtype=np.int64)
    return w.x, y, w.group


def _predict(pipeline: Pipeline, x: np.ndarray, parts: list[np.ndarray] | None
             ) -> np.ndarray:
    if pipeline.model_reads_window or parts is None:
        return pipeline.predict(x)
    return pipeline.model.predict(pipeline.assemble(parts))


def breaking_point(p: Perturbation, severities: list[float], accuracy: list[float | None],
                   baseline: float, drop_points: float) -> tuple[float | None, bool]:
    """(severity, interpolated?): where accuracy first falls drop_points below baseline."""
    limit = baseline - drop_points / 100.0
    prev: tuple[float, float] | None = (p.identity, baseline) if p.identity is not None \
        else None
    for s, a in zip(severities, accuracy, strict=True):
        if a is None:
            continue
        if a <= limit + 1e-12:
            if p.discrete or prev is None or prev[1] <= limit:
                return s, False
            ps, pa = prev
            if (ps - (p.identity or 0.0)) * (s - (p.identity or 0.0)) < 0:
                return s, False  # mixed signs (rate +2 % then -5 %): no line between them
            return float(ps + (s - ps) * (pa - limit) / (pa - a)), True
        prev = (s, a)
    return None, False


# --- augmentation ----------------------------------------------------------------------


def severity_span(name: str, severities: list[float]) -> tuple[float, float]:
    """The severities augmentation draws from: the identity (if finite) to the most
    severe tried."""
    identity = PERTURBATIONS[name].identity
    span = [*severities, *([identity] if identity is not None else [])]
    return min(span), max(span)


def _augmented_copies(train: list[Recording], schedule: dict[str, list[float]],
                      scale: ChannelScale, copies: int, seed: int) -> list[Recording]:
    """``copies`` perturbed copies of each training recording: the perturbations take
    turns (a shuffled cycle, so each gets the same share), each at a uniformly random
    severity between the mildest and the most severe tried."""
    rng = np.random.default_rng([seed, 2])
    names = list(schedule)
    cycle: list[str] = []
    out = []
    for i, rec in enumerate(train):
        for c in range(copies):
            if not cycle:
                cycle = [names[k] for k in rng.permutation(len(names))]
            name = cycle.pop()
            p = PERTURBATIONS[name]
            lo, hi = severity_span(name, schedule[name])
            severity = float(rng.integers(int(lo), int(hi) + 1)) if p.discrete \
                else float(rng.uniform(lo, hi))
            copy_ = perturb_recording(rec, name, severity, scale, seed=seed + 1,
                                      index=i * copies + c)
            copy_.augmented = True
            out.append(copy_)
    return out


def _retrain(project: LoadedProject, pipeline: Pipeline, train: list[Recording],
             batch_recordings: int = 64) -> tuple[Pipeline, int]:
    """The project's model (same settings, same seed) trained on ``train`` by its family,
    as `kiloml run` trains it; the pipeline's vector stages (scaling) refitted on it.
    Returns (pipeline, training windows)."""
    family = family_for(project)
    if not family.retrainable:
        raise KilomlError("training-time augmentation retrains the model, and an imported "
                          "model (kiloml did not train it) cannot be retrained here; use "
                          "--no-augment",
                          file=project.path, where="[model] kind")
    new = copy.deepcopy(pipeline)
    parts_chunks, ys, groups = [], [], []
    starts = range(0, len(train), batch_recordings)
    # windows are cut and featurised a batch of recordings at a time: the augmented set
    # is several times the data set and its raw windows need not all be in memory at once
    for s in track(starts, "augmented features", total=len(starts)):
        x, y, g = _windows(project, new, train[s:s + batch_recordings])
        ys.append(y)
        groups.append(g)
        parts_chunks.append(new.window_features(x))
    y = np.concatenate(ys)
    parts = [np.concatenate([c[k] for c in parts_chunks]) for k in range(len(parts_chunks[0]))]
    flat = new.assemble(parts, fit_rows=np.arange(len(y)), y=y)
    shape = family.sample_shape(new, flat.shape[1])
    new.model = family.new_model(new, shape)
    print(f"retraining the {pipeline.model.config.kind} on {len(y)} windows")
    family.fit(new.model, flat.reshape(len(flat), *shape), y, np.concatenate(groups))
    return new, len(y)


# --- the command --------------------------------------------------------------------


def stress_project(project_path: str | Path, options: StressOptions | None = None
                   ) -> StressOutcome:
    options = options or StressOptions()
    check_options(options)
    project = load_project(project_path)
    pipeline, metrics = _load_run(project)
    schedule = plan(options, pipeline.n_channels)

    raw = load_recordings(project)
    if list(raw[0].channels) != list(pipeline.channels):
        raise KilomlError(f"the recordings' channels {raw[0].channels} are not the trained "
                          f"pipeline's {pipeline.channels}; run `kiloml run` again",
                          file=project.path)
    test_groups = set(metrics["evaluation"]["test_groups"])
    held_out = [r for r in raw if r.group in test_groups]
    train = [r for r in raw if r.group not in test_groups]
    # severities in channel stds / ranges are those of the training data (known at design
    # time; the held-out data stays unseen)
    scale = ChannelScale.of(train)

    aug_pipeline, aug_info = None, None
    if options.augment:
        train_set = list(train)
        if project.config.augment.copies:  # the run's own augmentation, as the run did it
            train_set += project_augment(train, project.config.augment)
        copies = _augmented_copies(train, schedule, scale, options.copies, options.seed)
        aug_pipeline, n_windows = _retrain(project, pipeline, train_set + copies)
        aug_info = {"copies_per_training_recording": options.copies,
                    "training_recordings": len(train_set),
                    "perturbed_copies": len(copies),
                    "training_windows": n_windows,
                    "perturbations": list(schedule),
                    "severity_spans": {n: list(severity_span(n, v))
                                       for n, v in schedule.items()}}

    models = {"stress": pipeline} | ({"stress_augmented": aug_pipeline} if aug_pipeline else {})
    x0, y0, _ = _windows(project, pipeline, held_out)
    parts0 = None if pipeline.model_reads_window else pipeline.window_features(x0)
    baselines = {k: float(np.mean(_predict(m, x0, parts0) == y0)) for k, m in models.items()}

    acc: dict[str, dict[str, list]] = {k: {n: [] for n in schedule} for k in models}
    n_windows: dict[str, list[int]] = {n: [] for n in schedule}
    jobs = [(n, s) for n, sev in schedule.items() for s in sev]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, severity in track(jobs, "stress", total=len(jobs)):
            recs = [perturb_recording(r, name, severity, scale, seed=options.seed, index=i)
                    for i, r in enumerate(held_out)]
            x, y, _ = _windows(project, pipeline, recs)
            n_windows[name].append(len(y))
            parts = None if pipeline.model_reads_window or not len(y) else \
                pipeline.window_features(x)
            for key, model in models.items():
                acc[key][name].append(float(np.mean(_predict(model, x, parts) == y))
                                      if len(y) else None)

    results: dict[str, dict] = {}
    for key in models:
        results[key] = {}
        for name, sev in schedule.items():
            p = PERTURBATIONS[name]
            bp, interp = breaking_point(p, sev, acc[key][name], baselines[key],
                                        options.drop_points)
            entry = {"severities": sev, "accuracy": acc[key][name], "breaking_point": bp,
                     "breaking_point_interpolated": interp, "unit": p.unit,
                     "more_severe": "lower" if p.lower_is_worse else "higher",
                     "baseline_accuracy": baselines[key], "n_windows": n_windows[name],
                     "description": p.description}
            if name in ("axis_swap", "sign_flip"):
                entry["channels"] = affected_channels(name, max(sev), pipeline.channels,
                                                      options.seed)
            results[key][name] = entry
    if "stress_augmented" in results:
        for name, entry in results["stress_augmented"].items():
            before = results["stress"][name]["breaking_point"]
            after = entry["breaking_point"]
            entry["breaking_point_without_augmentation"] = before
            entry["breaking_point_shift"] = None if before is None or after is None \
                else after - before
            # augmentation can cost clean accuracy; against the unaugmented model's
            # baseline, that cost shows as an earlier (or immediate) break
            entry["breaking_point_vs_unaugmented_baseline"] = breaking_point(
                PERTURBATIONS[name], entry["severities"], entry["accuracy"],
                baselines["stress"], options.drop_points)[0]

    run_accuracy = metrics["evaluation"]["accuracy"]
    info = {
        "drop_points": options.drop_points,
        "seed": options.seed,
        "baseline_accuracy": baselines["stress"],
        "run_test_accuracy": run_accuracy,
        "test_groups": sorted(test_groups),
        "n_test_windows": len(y0),
        "evaluated_with": "the Python reference (the model's arg-max, as the run's test "
                          "accuracy) on the held-out recordings, perturbed before "
                          "preprocessing",
        "breaking_point": f"first severity (mild to severe) with accuracy at least "
                          f"{options.drop_points:g} points below the unperturbed accuracy; "
                          f"interpolated linearly from the previous severity except for "
                          f"whole numbers of axes; null if never within the severities",
        "channel_scale": {"std": scale.std.tolist(), "min": scale.low.tolist(),
                          "max": scale.high.tolist(), "from": "training recordings"},
    }
    if not math.isclose(baselines["stress"], run_accuracy, abs_tol=1e-12):
        info["note"] = (f"the unperturbed accuracy here ({baselines['stress']:.4f}) differs "
                        f"from the run's ({run_accuracy:.4f}): the data changed since the run")
    if aug_info is not None:
        aug_info["baseline_accuracy"] = baselines["stress_augmented"]
        info["augmentation"] = aug_info

    # merge: perturbations not stressed this time keep their earlier results; the
    # augmented model is one model, so its results are replaced together (or dropped for
    # the perturbations re-stressed without it)
    stress = {**metrics.get("stress", {}), **results["stress"]}
    metrics["stress"] = stress
    if "stress_augmented" in results:
        metrics["stress_augmented"] = results["stress_augmented"]
    else:
        kept = {k: v for k, v in metrics.get("stress_augmented", {}).items()
                if k not in schedule}
        metrics.pop("stress_augmented", None)
        if kept:
            metrics["stress_augmented"] = kept
        old_aug = metrics.get("stress_info", {}).get("augmentation")
        if kept and old_aug:
            info["augmentation"] = old_aug
    metrics["stress_info"] = info
    write_results(project.output_dir, metrics, pipeline)
    return StressOutcome(project.output_dir, info, results["stress"],
                         results.get("stress_augmented"))
