"""The decision layer in `kiloml run`: its parameters from [decision] (thresholds
calibrated on out-of-fold scores), and its behaviour on a continuous stream made by
concatenating the held-out recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiloml.data.recording import Recording
from kiloml.data.splits import Split
from kiloml.data.windows import WindowSet, window_starts
from kiloml.decision.calibrate import calibrate_thresholds, rarely_reported, thresholded_recall
from kiloml.decision.events import event_metrics
from kiloml.decision.layer import DecisionLayer, DecisionParams
from kiloml.errors import KilomlError
from kiloml.project import DecisionConfig, locate_in

BATCH = 2048  # windows per feature batch


def decision_params(cfg: DecisionConfig, windows: WindowSet, split: Split,
                    oof_scores: np.ndarray | None, project_file: Path) -> DecisionParams:
    """The layer's parameters; thresholds calibrated on the training groups' out-of-fold
    scores (original windows only, not augmented copies)."""
    k = len(windows.class_names)
    thresholds = np.zeros(k, np.float32)
    calibration: dict = {}
    if cfg.thresholds == "calibrated":
        rows = split.train
        if oof_scores is not None:
            rows = rows[~np.isnan(oof_scores[rows, 0])]
        if windows.augmented is not None:
            rows = rows[~windows.augmented[rows]]
        if oof_scores is None or len(rows) == 0:
            why = split.cv_note or "cross-validation gave no scores"
            raise KilomlError(f"thresholds = 'calibrated' fits thresholds on the out-of-fold "
                              f"scores of cross-validation on the training groups, and there "
                              f"are none ({why}); set [evaluation] cv_folds >= 2 with at least "
                              f"that many training groups, or thresholds = 'none'",
                              file=str(project_file), where="[decision] thresholds",
                              line=locate_in(project_file, ("decision",), "thresholds"))
        stride_s = windows.stride_samples / windows.sample_rate_hz
        try:
            thresholds, calibration = calibrate_thresholds(
                oof_scores[rows], windows.y[rows], windows.class_names, cfg.target,
                cfg.target_value, stride_s)
        except KilomlError as exc:
            exc.file = str(project_file)
            exc.line = locate_in(project_file, ("decision",), "target_value")
            raise
    return DecisionParams(k, thresholds, cfg.min_score, cfg.min_margin, cfg.smoothing,
                          cfg.smoothing_windows, cfg.on_windows, cfg.off_windows, calibration)


def threshold_warnings(params: DecisionParams, held_out_scores: np.ndarray,
                       held_out_y: np.ndarray, class_names: list[str]) -> list[dict]:
    """Warnings for classes that the calibrated thresholds make almost never reported, on
    the out-of-fold scores they were fitted on or on the held-out test windows (none
    without calibrated thresholds). The run puts them in metrics.json under
    decision.warnings; the report's summary shows them."""
    if not params.calibration:
        return []
    recall, argmax_recall = thresholded_recall(np.asarray(held_out_scores, dtype=np.float32),
                                               np.asarray(held_out_y, dtype=np.int64),
                                               params.thresholds)
    return rarely_reported(params.calibration, class_names, recall, argmax_recall)


def check_recordings_long_enough(cfg: DecisionConfig, recordings: list[Recording],
                                 window_samples: int, stride_samples: int) -> None:
    """A recording with fewer windows than the smoothing history never gets a fully
    smoothed decision: the configuration does not fit the data."""
    if cfg.smoothing == "none":
        return
    for rec in recordings:
        n = len(window_starts(rec.n_samples, window_samples, stride_samples))
        if n < cfg.smoothing_windows:
            needed = window_samples + (cfg.smoothing_windows - 1) * stride_samples
            raise KilomlError(
                f"decision.smoothing_windows = {cfg.smoothing_windows}: recording "
                f"{rec.source} has {rec.n_samples} samples ({n} windows), shorter than the "
                f"smoothing window ({needed} samples); lower smoothing_windows or drop the "
                f"recording")


def _truth(rec: Recording, class_names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(class_names)}
    if rec.sample_labels is not None:
        return np.array([index.get(str(v), -1) for v in rec.sample_labels], dtype=np.int64)
    return np.full(rec.n_samples, index.get(str(rec.label), -1), dtype=np.int64)


def stream_events(pipeline, recordings: list[Recording], params: DecisionParams) -> dict:
    """Concatenate the (preprocessed) held-out recordings end to end into one long stream,
    run the model over it window by window as the firmware would, and measure events
    with the model's raw arg-max and with the decision layer."""
    samples = np.concatenate([r.samples for r in recordings]).astype(np.float32)
    truth = np.concatenate([_truth(r, pipeline.class_names) for r in recordings])
    w, stride = pipeline.window_samples, pipeline.stride_samples
    starts = window_starts(len(samples), w, stride)
    view = np.lib.stride_tricks.sliding_window_view(samples, w, axis=0)
    labels, scores = [], []
    for a in range(0, len(starts), BATCH):
        x = np.ascontiguousarray(view[starts[a:a + BATCH]].transpose(0, 2, 1))
        f = pipeline.compute_features(x)
        labels.append(pipeline.model.predict(f))
        scores.append(pipeline.device_scores(f))
    label = np.concatenate(labels)
    score = np.concatenate(scores)
    end = starts + w - 1
    rate = pipeline.sample_rate_hz
    raw = DecisionLayer(DecisionParams.passthrough(pipeline.n_classes)).run(score, label)
    layer = DecisionLayer(params).run(score, label)
    return {
        "stream": {"recordings": len(recordings), "samples": len(samples),
                   "windows": len(starts), "hours": len(samples) / rate / 3600.0,
                   "note": "held-out recordings concatenated end to end, in load order"},
        "raw": event_metrics(truth, end, raw.decision, raw.changed, rate),
        "decision": event_metrics(truth, end, layer.decision, layer.changed, rate),
        "_timeline": {"truth": truth[end], "raw": raw.decision, "decision": layer.decision,
                      "time_s": (end + 1) / rate},
    }
