"""`kiloml check-data`: is the data fit to train and to judge a model on?

The project's recordings are loaded, preprocessed, windowed and split exactly as
`kiloml run` does it (``make_split``: the same held-out test groups, the same grouped
folds on the rest); augmentation is left out, since the checks are about the real data.
Seven checks, each ``{"status": "ok" | "warn", "summary": one line, ...numbers}``:

``class_balance``
    windows per class (all, training, test); imbalance = largest / smallest class.
    warn above ``IMBALANCE_WARN`` (3.0), or when a class has no held-out window (its
    accuracy is then not measured).
``groups``
    windows per group and per group x class; warn for a group with fewer windows than
    ``SMALL_GROUP_FRACTION`` (0.25) x the median group's.
``duplicates``
    held-out windows identical to a training window (hash of the float32 samples) or
    nearly so: each channel divided by its training std, the RMS difference of the two
    windows below ``NEAR_DUPLICATE_DISTANCE`` (0.05 training stds). The nearest training
    window is found with scikit-learn's NearestNeighbors (on a random projection to
    ``PROJECTION_DIMS`` dimensions for long windows, every candidate then confirmed on the
    full samples). Windows that are constant (silence, padding) are counted apart and do
    not warn. Any other duplicate warns: the test score is then partly a memory test.
``group_bias``
    per-group accuracy: training groups from grouped cross-validation predictions
    (``cross_val_predict``, ``GroupKFold`` with the run's folds and seed), held-out groups
    from the model trained on every training group (what the run reports). The project's
    own tree model is used; a neural project gets a random forest on the pipeline's
    features (or on per-channel statistics for a network reading raw windows) as a fast
    stand-in, and says so. warn for a group below median - ``BIAS_MARGIN`` (0.15).
``feature_shift``
    per feature, the two-sample Kolmogorov-Smirnov statistic between training and
    held-out windows (``scipy.stats.ks_2samp``); warn above ``KS_WARN`` (0.5: the two
    distributions' CDFs are half their mass apart somewhere). Only the statistic is used:
    overlapping windows are not independent, so the p-values would be far too small.
``suspect_labels``
    recordings whose windows are confidently classified as another class by the same
    predictions as ``group_bias``: the mean probability of the recording's label below
    ``SUSPECT_LABEL_PROB`` (0.2) while another class's mean probability is above
    ``SUSPECT_OTHER_PROB`` (0.6). Listed with their source file; warn if any.
``channels``
    on the raw recordings (what the sensor gave, before preprocessing; padding, by
    ``[data] pad_to_ms`` or ``[window] mode = "recording"``, is not looked at): a channel
    constant over all the data, or within a recording (std at most ``CONSTANT_REL_STD`` x
    the channel's overall std); and clipping: more than ``SATURATION_FRACTION`` (5 %) of a
    recording's samples of a channel repeating exactly that recording's minimum or maximum
    (the first sample at each is not counted: every recording has one, and a short one
    would always look clipped; channels with fewer than ``MIN_DISTINCT_VALUES`` distinct
    values are too coarse to tell). warn if any.

Where the results go: with a finished run in the project's output folder (metrics.json
and pipeline.json), ``metrics.json`` gets ``data_checks`` (the checks) and
``data_checks_info`` (what was checked, with which model), and report.html a section;
both are rewritten together and atomically at the end. Without a run the checks work on
the data alone and are printed; ``--json FILE`` writes them to a file in either case.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import ks_2samp
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors

from kiloml.atomic import write_text_atomically
from kiloml.data.recording import Recording
from kiloml.data.sources import load_data
from kiloml.data.splits import Split, make_split
from kiloml.data.windows import WindowSet, make_project_windows
from kiloml.errors import KilomlError
from kiloml.families import family_for
from kiloml.outputs import check_output_file, project_inputs, require_kiloml_folder
from kiloml.persist.pipeline_state import PIPELINE_FILE, load_pipeline, refuse_old_run
from kiloml.pipeline import Pipeline, make_feature_stages, make_preprocess_stages
from kiloml.project import LoadedProject, StatisticsStageConfig, load_project
from kiloml.results import METRICS_FILE, read_metrics, write_results

# Thresholds (documented in the module docstring and the README).
IMBALANCE_WARN = 3.0
SMALL_GROUP_FRACTION = 0.25
NEAR_DUPLICATE_DISTANCE = 0.05
PROJECTION_DIMS = 256
BIAS_MARGIN = 0.15
KS_WARN = 0.5
SUSPECT_LABEL_PROB = 0.2
SUSPECT_OTHER_PROB = 0.6
CONSTANT_REL_STD = 1e-6
SATURATION_FRACTION = 0.05
MIN_DISTINCT_VALUES = 16
MAX_LISTED = 20  # rows kept per list in metrics.json (counts are always complete)

CHECKS = ("class_balance", "groups", "duplicates", "group_bias", "feature_shift",
          "suspect_labels", "channels")


@dataclass
class CheckData:
    """What the checks read: the data as `kiloml run` windows and splits it."""

    raw: list[Recording]  # as loaded (the sensor's samples, without pad_to_ms's zeros)
    recordings: list[Recording]  # preprocessed, as windowed
    windows: WindowSet
    split: Split
    features: np.ndarray  # [N, F] float32, vector stages fitted on the training rows
    feature_names: list[str]
    features_note: str


@dataclass
class CheckOutcome:
    checks: dict
    info: dict
    written_to: Path | None  # the run's folder whose metrics/report were updated


# --- loading ---------------------------------------------------------------------------


def load_check_data(project: LoadedProject) -> CheckData:
    """Recordings -> windows -> split -> features, as run.py does it (no augmentation)."""
    cfg = project.config
    loaded = load_data(project)
    raw = loaded.recordings
    rate = raw[0].sample_rate_hz
    pipeline = Pipeline(
        name=cfg.name, channels=list(raw[0].channels), sample_rate_hz=rate,
        window_samples=0, stride_samples=0, class_names=[], features=[],
        model=None,  # type: ignore[arg-type]  # the checks never use the pipeline's model
        preprocess=make_preprocess_stages(project, rate), input_sample_rate_hz=rate)
    recordings = pipeline.preprocess_recordings(raw)
    try:
        windows = make_project_windows(cfg, recordings)
        if len(windows.class_names) < 2:
            raise KilomlError(f"the data has a single class ('{windows.class_names[0]}'): "
                              "a classifier needs two or more", where="[data]")
        split = make_split(windows, cfg.evaluation, test_groups=loaded.test_groups)
    except KilomlError as exc:
        if exc.file is None:
            exc.file = str(project.path)
        raise
    # A network reading the raw window has no feature stages: the stand-in model and the
    # shift check use per-channel statistics instead.
    configs = project.config.features
    note = "the project's feature stages"
    if family_for(project).reads_window:
        configs = [StatisticsStageConfig(stage="statistics")]
        note = "per-channel statistics (the network reads the raw window)"
    pipeline.features = make_feature_stages(project, windows.sample_rate_hz,
                                            windows.window_samples, windows.channels, configs)
    parts = [np.concatenate(chunk) for chunk in zip(*(
        pipeline.window_features(windows.x[s:s + 2048])
        for s in range(0, len(windows), 2048)), strict=True)]
    features = pipeline.assemble(parts, fit_rows=split.train, y=windows.y)
    # the channel checks read what the sensor gave: [data] pad_to_ms's zeros are left out
    # (as is [window] mode = "recording"'s padding, which only the windows hold)
    sensor = [r if n == r.n_samples else dataclasses.replace(
        r, samples=r.samples[:n],
        sample_labels=None if r.sample_labels is None else r.sample_labels[:n])
        for r, n in zip(raw, loaded.read_lengths, strict=True)]
    return CheckData(sensor, recordings, windows, split, features, pipeline.feature_names(),
                     note)


# --- the checks (each usable on plain arrays, for tests) --------------------------------


def _status(warn: bool) -> str:
    return "warn" if warn else "ok"


def class_balance(y: np.ndarray, class_names: list[str], split: Split) -> dict:
    k = len(class_names)
    total = np.bincount(y, minlength=k)
    train = np.bincount(y[split.train], minlength=k)
    test = np.bincount(y[split.test], minlength=k)
    present = total[total > 0]
    ratio = float(present.max() / present.min())
    no_test = [class_names[i] for i in range(k) if test[i] == 0]
    big, small = class_names[int(np.argmax(total))], class_names[int(np.argmin(total))]
    summary = (f"{k} classes, {int(total.min())}-{int(total.max())} windows each: "
               f"imbalance {ratio:.2f}" + (f" ({big} / {small})" if ratio > 1 else ""))
    if ratio > IMBALANCE_WARN:
        summary += f", above {IMBALANCE_WARN:g}"
    if no_test:
        summary += f"; no held-out window for {', '.join(no_test)}"
    return {"status": _status(ratio > IMBALANCE_WARN or bool(no_test)), "summary": summary,
            "windows_per_class": dict(zip(class_names, total.tolist(), strict=True)),
            "train_windows_per_class": dict(zip(class_names, train.tolist(), strict=True)),
            "test_windows_per_class": dict(zip(class_names, test.tolist(), strict=True)),
            "imbalance_ratio": ratio, "threshold": IMBALANCE_WARN,
            "classes_without_test_windows": no_test}


def group_counts(y: np.ndarray, groups: np.ndarray, class_names: list[str],
                 test_groups: list[str]) -> dict:
    from kiloml.data.order import natural_key  # the order the run lists groups in

    names = sorted(set(groups.tolist()), key=natural_key)
    per_group = {g: int(np.sum(groups == g)) for g in names}
    per_class = {g: dict(zip(class_names, np.bincount(y[groups == g],
                                                      minlength=len(class_names)).tolist(),
                             strict=True)) for g in names}
    median = float(np.median(list(per_group.values())))
    limit = SMALL_GROUP_FRACTION * median
    small = [g for g in names if per_group[g] < limit]
    empty = sum(1 for g in names for c in class_names if per_class[g][c] == 0)
    counts = list(per_group.values())
    summary = (f"{len(names)} groups, {min(counts)}-{max(counts)} windows each "
               f"(median {median:g})")
    summary += (f"; {len(small)} with fewer than {limit:.0f}: {', '.join(small[:8])}"
                if small else "")
    if empty:
        summary += f"; {empty} group x class cells empty"
    return {"status": _status(bool(small)), "summary": summary,
            "windows_per_group": per_group, "windows_per_group_class": per_class,
            "median_windows": median, "threshold_fraction": SMALL_GROUP_FRACTION,
            "small_groups": small, "empty_group_class_cells": empty,
            "test_groups": list(test_groups)}


def _hash(window: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(window).tobytes(), digest_size=16).digest()


def duplicates(windows: WindowSet, split: Split, sources: list[str], seed: int = 0) -> dict:
    """Held-out windows equal or nearly equal to a training window."""
    x = windows.x
    train, test = split.train, split.test
    constant = np.all(x == x[:, :1, :], axis=(1, 2))
    # exact: the same float32 bytes
    train_hash: dict[bytes, int] = {}
    for i in train:
        train_hash.setdefault(_hash(x[i]), int(i))
    exact: list[tuple[int, int]] = []
    for i in test:
        j = train_hash.get(_hash(x[i]))
        if j is not None:
            exact.append((int(i), j))
    # near: channels in training stds, RMS distance to the nearest training window
    std = x[train].std(axis=(0, 1)).astype(np.float64)
    std[std == 0] = 1.0
    mean = x[train].mean(axis=(0, 1))

    def flat(idx: np.ndarray) -> np.ndarray:
        return ((x[idx] - mean) / std).reshape(len(idx), -1).astype(np.float32)

    dims = x.shape[1] * x.shape[2]
    near: list[tuple[int, int, float]] = []
    if len(train) and len(test):
        a, b = flat(train), flat(test)
        if dims > PROJECTION_DIMS:
            # Johnson-Lindenstrauss: distances kept within a few percent; every candidate
            # within 1.5 x the threshold is then measured on the full samples.
            rng = np.random.default_rng(seed)
            proj = rng.standard_normal((dims, PROJECTION_DIMS)).astype(np.float32)
            proj /= np.sqrt(PROJECTION_DIMS)
            pa, pb, slack = a @ proj, b @ proj, 1.5
        else:
            pa, pb, slack = a, b, 1.0
        nn = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(pa)
        dist, idx = nn.kneighbors(pb)
        dist, idx = dist[:, 0] / np.sqrt(dims), idx[:, 0]
        for k in np.flatnonzero(dist < NEAR_DUPLICATE_DISTANCE * slack):
            j = int(idx[k])
            d = float(np.sqrt(np.mean((b[k].astype(np.float64) - a[j]) ** 2)))
            if d < NEAR_DUPLICATE_DISTANCE:
                near.append((int(test[k]), int(train[j]), d))
    exact_set = {i for i, _ in exact}
    near = [t for t in near if t[0] not in exact_set]
    n_const = sum(1 for i, _ in exact if constant[i]) + sum(1 for i, _, _ in near if constant[i])
    real_exact = [(i, j, 0.0) for i, j in exact if not constant[i]]
    real_near = [t for t in near if not constant[t[0]]]
    pairs = sorted({(int(windows.recording[i]), int(windows.recording[j]))
                    for i, j, _ in real_exact + real_near})
    rate = windows.sample_rate_hz

    def example(i: int, j: int, d: float) -> dict:
        return {"test_recording": sources[int(windows.recording[i])],
                "test_offset_s": round(int(windows.start[i]) / rate, 3),
                "train_recording": sources[int(windows.recording[j])],
                "train_offset_s": round(int(windows.start[j]) / rate, 3),
                "distance": round(d, 5)}

    n_dup = len(real_exact) + len(real_near)
    summary = (f"{len(real_exact)} held-out windows identical to a training window, "
               f"{len(real_near)} near-identical (< {NEAR_DUPLICATE_DISTANCE:g} std RMS), "
               f"from {len(pairs)} recording pairs")
    if n_const:
        summary += f"; {n_const} constant windows (silence/padding) not counted"
    return {"status": _status(n_dup > 0), "summary": summary,
            "exact": len(real_exact), "near": len(real_near),
            "held_out_windows": len(test), "constant_windows_matched": n_const,
            "distance_threshold": NEAR_DUPLICATE_DISTANCE,
            "recording_pairs": [{"test_recording": sources[a], "train_recording": sources[b]}
                                for a, b in pairs[:MAX_LISTED]],
            "examples": [example(*t) for t in (real_exact + real_near)[:MAX_LISTED]]}


def predictions(data: CheckData, estimator: BaseEstimator, folds: int, seed: int
                ) -> tuple[np.ndarray, str]:
    """Class probabilities [N, K] for every window: out-of-fold for training groups, the
    model fitted on all training groups for held-out ones (NaN where none)."""
    w, split, x = data.windows, data.split, data.features
    k = len(w.class_names)
    proba = np.full((len(w), k), np.nan)
    n_train_groups = len(set(w.group[split.train].tolist()))
    n_folds = min(folds if folds >= 2 else 5, n_train_groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fold without a class: sklearn warns, we pad
        if n_folds >= 2:
            cv = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            p = cross_val_predict(estimator, x[split.train], w.y[split.train],
                                  groups=w.group[split.train], cv=cv, method="predict_proba")
            proba[split.train] = p
            how = f"grouped {n_folds}-fold cross-validation on the training groups"
        else:
            how = "no cross-validation (a single training group)"
        model = clone(estimator).fit(x[split.train], w.y[split.train])
        pt = np.zeros((len(split.test), k))
        pt[:, model.classes_.astype(int)] = model.predict_proba(x[split.test])
        proba[split.test] = pt
    return proba, how


def group_bias(y: np.ndarray, proba: np.ndarray, groups: np.ndarray,
               test_groups: list[str]) -> dict:
    from kiloml.data.order import natural_key

    have = ~np.isnan(proba[:, 0])
    pred = np.where(have, np.nan_to_num(proba).argmax(axis=1), -1)
    acc = {g: float(np.mean(pred[(groups == g) & have] == y[(groups == g) & have]))
           for g in sorted(set(groups[have].tolist()), key=natural_key)}
    if len(acc) < 2:
        return {"status": "ok", "summary": "skipped: fewer than two groups with predictions",
                "accuracy_per_group": acc, "low_groups": []}
    median = float(np.median(list(acc.values())))
    limit = median - BIAS_MARGIN
    low = [g for g, a in acc.items() if a < limit]
    summary = (f"group accuracy {min(acc.values()):.2f}-{max(acc.values()):.2f} "
               f"(median {median:.2f})")
    summary += (f"; below {limit:.2f}: " + ", ".join(f"group {g} ({acc[g]:.2f})" for g in low)
                if low else f"; none below median - {BIAS_MARGIN:g}")
    return {"status": _status(bool(low)), "summary": summary, "accuracy_per_group": acc,
            "held_out_groups": [g for g in acc if g in set(test_groups)],
            "median_accuracy": median, "margin": BIAS_MARGIN, "low_groups": low}


def feature_shift(train: np.ndarray, test: np.ndarray, names: list[str]) -> dict:
    stats = []
    for f in range(train.shape[1]):
        a, b = train[:, f], test[:, f]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        stats.append(float(ks_2samp(a, b).statistic) if len(a) and len(b) else 0.0)
    ks = np.asarray(stats)
    order = np.argsort(-ks, kind="stable")
    shifted = [names[i] for i in order if ks[i] > KS_WARN]
    top = [{"feature": names[i], "ks": round(float(ks[i]), 4)} for i in order[:10]]
    summary = (f"largest KS {ks.max():.2f} ({names[order[0]]}), median {np.median(ks):.2f} "
               f"over {len(names)} features; {len(shifted)} above {KS_WARN:g}")
    return {"status": _status(bool(shifted)), "summary": summary, "threshold": KS_WARN,
            "max_ks": float(ks.max()), "median_ks": float(np.median(ks)),
            "n_shifted": len(shifted), "shifted_features": shifted[:MAX_LISTED],
            "top": top, "ks_per_feature": dict(zip(names, np.round(ks, 4).tolist(),
                                                   strict=True))}


def suspect_labels(y: np.ndarray, proba: np.ndarray, recording: np.ndarray,
                   sources: list[str], class_names: list[str], groups: np.ndarray) -> dict:
    suspects = []
    have = ~np.isnan(proba[:, 0])
    checked = 0
    for r in np.unique(recording[have]):
        rows = (recording == r) & have
        labels = np.unique(y[rows])
        if len(labels) != 1:
            continue  # per-sample labels: several classes in one recording, judged per class
        checked += 1
        label = int(labels[0])
        mean = proba[rows].mean(axis=0)
        other = int(np.argmax(np.where(np.arange(len(mean)) == label, -1, mean)))
        if mean[label] < SUSPECT_LABEL_PROB and mean[other] > SUSPECT_OTHER_PROB:
            suspects.append({"recording": sources[int(r)], "group": str(groups[rows][0]),
                             "label": class_names[label], "looks_like": class_names[other],
                             "label_probability": round(float(mean[label]), 3),
                             "other_probability": round(float(mean[other]), 3),
                             "windows": int(rows.sum())})
    suspects.sort(key=lambda s: s["label_probability"])
    summary = f"{len(suspects)} of {checked} recordings confidently classified as another class"
    if suspects:
        s = suspects[0]
        summary += f", e.g. {s['recording']} ({s['label']} -> {s['looks_like']})"
    return {"status": _status(bool(suspects)), "summary": summary,
            "label_probability_below": SUSPECT_LABEL_PROB,
            "other_probability_above": SUSPECT_OTHER_PROB, "recordings_checked": checked,
            "n_suspect": len(suspects), "suspects": suspects[:MAX_LISTED]}


def channels(recordings: list[Recording]) -> dict:
    names = list(recordings[0].channels)
    allx = np.concatenate([r.samples for r in recordings]).astype(np.float64)
    overall_std = allx.std(axis=0)
    constant_overall = [names[c] for c in range(len(names)) if allx[:, c].min() ==
                        allx[:, c].max()]
    issues = []
    for r in recordings:
        x = r.samples.astype(np.float64)
        for c, name in enumerate(names):
            if name in constant_overall:
                continue
            v = x[:, c]
            lo, hi = v.min(), v.max()
            if lo == hi or v.std() <= CONSTANT_REL_STD * overall_std[c]:
                issues.append({"recording": r.source, "channel": name, "issue": "constant",
                               "value": float(v.mean())})
                continue
            # repeats of the extremes: every recording has one minimum and one maximum,
            # which alone are 2 / n of it (a short recording would always look clipped)
            at_lo, at_hi = int(np.sum(v == lo)), int(np.sum(v == hi))
            at = (at_lo - 1 + at_hi - 1) / len(v)
            if at > SATURATION_FRACTION and len(np.unique(v)) >= MIN_DISTINCT_VALUES:
                which = "min" if at_lo >= at_hi else "max"
                issues.append({"recording": r.source, "channel": name, "issue": "clipped",
                               "fraction_at_min_or_max": round(float(at), 4),
                               "at": which, "value": float(lo if which == "min" else hi)})
    n_const = sum(1 for i in issues if i["issue"] == "constant")
    n_clip = len(issues) - n_const
    summary = (f"{len(names)} channels over {len(recordings)} recordings: "
               f"{len(constant_overall)} constant everywhere"
               + (f" ({', '.join(constant_overall)})" if constant_overall else "")
               + f", {n_const} constant and {n_clip} clipped (recording, channel) pairs")
    return {"status": _status(bool(constant_overall or issues)), "summary": summary,
            "constant_channels": constant_overall, "n_constant": n_const, "n_clipped": n_clip,
            "constant_rel_std": CONSTANT_REL_STD, "saturation_fraction": SATURATION_FRACTION,
            "issues": issues[:MAX_LISTED]}


# --- the command ----------------------------------------------------------------------


def run_checks(project: LoadedProject) -> tuple[dict, dict]:
    """Every check on the project's data: (data_checks, data_checks_info)."""
    started = time.time()
    data = load_check_data(project)
    w, split = data.windows, data.split
    sources = [r.source for r in data.recordings]
    seed = project.config.evaluation.seed
    estimator, model_note = family_for(project).check_data_estimator(len(w.class_names), seed)
    proba, how = predictions(data, estimator, project.config.evaluation.cv_folds, seed)
    checks = {
        "class_balance": class_balance(w.y, w.class_names, split),
        "groups": group_counts(w.y, w.group, w.class_names, split.test_groups),
        "duplicates": duplicates(w, split, sources, seed),
        "group_bias": group_bias(w.y, proba, w.group, split.test_groups),
        "feature_shift": feature_shift(data.features[split.train], data.features[split.test],
                                       data.feature_names),
        "suspect_labels": suspect_labels(w.y, proba, w.recording, sources, w.class_names,
                                         w.group),
        "channels": channels(data.raw),
    }
    info = {"n_recordings": len(data.raw), "n_windows": len(w),
            "n_train_windows": len(split.train), "n_test_windows": len(split.test),
            "test_groups": split.test_groups, "model": model_note, "predictions": how,
            "features": f"{len(data.feature_names)} from {data.features_note}",
            "augmentation": "not applied: the checks are on the recorded data"
            + (f" (the run also trains on {project.config.augment.copies} augmented copies "
               "of each training recording, so accuracies here can be lower than its)"
               if project.config.augment.copies else ""),
            "elapsed_s": round(time.time() - started, 2)}
    return checks, info


def check_data_project(project_path: str | Path, json_path: Path | None = None
                       ) -> CheckOutcome:
    project = load_project(project_path)
    out = project.output_dir
    if json_path is not None:  # before the work: a path that cannot be written fails now
        check_output_file(json_path, project_inputs(project), name="--json")
        if not json_path.absolute().parent.is_dir():
            raise KilomlError("the folder for the JSON file does not exist", file=json_path,
                              where="--json")
    refuse_old_run(out, project.path)  # a pipeline.pkl is never unpickled
    finished = (out / METRICS_FILE).is_file() and (out / PIPELINE_FILE).is_file()
    if finished:  # a run's folder is updated: only one kiloml made
        require_kiloml_folder(out, "run", what="the run's output folder")
    pipeline = load_pipeline(out / PIPELINE_FILE) if finished else None  # checked first
    checks, info = run_checks(project)
    metrics = read_metrics(out) if finished else None  # read late: others may update it
    if metrics is not None:
        run_groups = metrics.get("evaluation", {}).get("test_groups")
        if run_groups is not None and run_groups != info["test_groups"]:
            info["note"] = (f"the run held out groups {run_groups}, the data now gives "
                            f"{info['test_groups']}: run `kiloml run` again")
    payload = {"data_checks": checks, "data_checks_info": info}
    if json_path is not None:
        try:
            write_text_atomically(json_path, json.dumps(payload, indent=2) + "\n")
        except OSError as exc:
            raise KilomlError(f"cannot write: {exc.strerror or exc}", file=json_path,
                              where="--json") from None
    written = None
    if metrics is not None:
        metrics.update(payload)
        assert pipeline is not None
        write_results(out, metrics, pipeline)
        written = out
    return CheckOutcome(checks, info, written)


def detail_lines(name: str, check: dict, limit: int = 5) -> list[str]:
    """A few lines naming what a warned check found (for the terminal)."""
    if check["status"] != "warn":
        return []
    if name == "duplicates":
        return [f"{e['test_recording']} @{e['test_offset_s']:g}s = {e['train_recording']} "
                f"@{e['train_offset_s']:g}s (distance {e['distance']:.3g})"
                for e in check["examples"][:limit]]
    if name == "suspect_labels":
        return [f"{s['recording']}: labelled {s['label']} (p={s['label_probability']:.2f}), "
                f"looks like {s['looks_like']} (p={s['other_probability']:.2f})"
                for s in check["suspects"][:limit]]
    if name == "channels":
        return [f"{i['recording']}: {i['channel']} {i['issue']}"
                + (f" ({i['fraction_at_min_or_max']:.0%} of samples at its {i['at']} "
                   f"{i['value']:g})" if i["issue"] == "clipped" else f" at {i['value']:g}")
                for i in check["issues"][:limit]]
    if name == "feature_shift":
        return [f"{t['feature']}: KS {t['ks']:.2f}" for t in check["top"][:limit]
                if t["ks"] > check["threshold"]]
    return []


def print_checks(outcome: CheckOutcome) -> None:
    from rich.table import Table
    from rich.text import Text

    from kiloml.progress import console

    table = Table(title="kiloml check-data")
    table.add_column("check")
    table.add_column("status")
    table.add_column("summary", overflow="fold")
    for name in CHECKS:
        c = outcome.checks[name]
        mark = Text("ok", style="green") if c["status"] == "ok" else Text("warn", style="yellow")
        # Text, not markup: file names may hold [brackets]
        text = c["summary"] + "".join(f"\n  {line}" for line in detail_lines(name, c))
        table.add_row(name, mark, Text(text))
    console.print(table)
    info = outcome.info
    console.print(f"predictions    {info['model']}; {info['predictions']}", markup=False)
    if "note" in info:
        console.print(f"note           {info['note']}", markup=False)
    if outcome.written_to is not None:
        console.print(f"written        {outcome.written_to / METRICS_FILE} (data_checks) "
                      f"and {outcome.written_to / 'report.html'}", markup=False)
    else:
        console.print("written        nothing: no finished `kiloml run` in "
                      "the output folder (use --json FILE to keep the results)", markup=False)
