"""Per-class thresholds from validation scores, for a precision, recall or false-alarm
target. The validation scores are the out-of-fold cross-validation scores of the
training groups: never the held-out test groups."""

from __future__ import annotations

import numpy as np

from kiloml.errors import KilomlError

F32 = np.float32
# A class whose calibrated threshold keeps less than this share of its windows is "almost
# never reported": a warning in metrics.json (decision.warnings) and the report's summary.
RARELY_REPORTED_RECALL = 0.1


def _f32_at_most(t: float) -> F32:
    """The largest float32 <= t, so a window scoring exactly t still passes."""
    v = F32(t)
    return v if float(v) <= t else np.nextafter(v, F32(-np.inf))


def calibrate_thresholds(scores: np.ndarray, y: np.ndarray, class_names: list[str],
                         target: str, value: float, window_stride_s: float
                         ) -> tuple[np.ndarray, dict]:
    """Thresholds float32 [K] and what each achieves on the validation windows.

    A window is decided as class c when c is its arg-max and its score reaches t_c.
    precision: the lowest t_c whose precision is >= value (the most recall);
    recall: the highest t_c whose recall stays >= value (the fewest false alarms);
    false_alarms_per_hour: the lowest t_c with at most value false alarms per hour of
    signal (windows x stride) that still detects at least one window of c."""
    n, k = scores.shape
    hours = n * window_stride_s / 3600.0
    pred = np.argmax(scores, axis=1)
    thresholds = np.zeros(k, dtype=F32)
    per_class: dict[str, dict] = {}
    for c in range(k):
        mine = pred == c
        s = scores[mine, c]
        true = y[mine] == c
        n_c = int((y == c).sum())
        argmax_recall = int(true.sum()) / max(n_c, 1)
        order = np.argsort(-s, kind="stable")  # descending score: t = s[order[i]] keeps i+1
        s_sorted, tp = s[order], np.cumsum(true[order])
        kept = np.arange(1, len(s) + 1)
        fp = kept - tp
        # only the last of equal scores is a real cut (ties pass together)
        cut = np.r_[s_sorted[1:] != s_sorted[:-1], True] if len(s) else np.zeros(0, bool)
        precision = tp / kept
        recall = tp / max(n_c, 1)
        fa_per_hour = fp / hours
        if target == "precision":
            ok = cut & (precision >= value)
            best = float(precision[cut].max()) if cut.any() else 0.0
            pick = int(np.flatnonzero(ok).max()) if ok.any() else None  # most kept
        elif target == "recall":
            ok = cut & (recall >= value)
            best = float(recall[cut].max()) if cut.any() else 0.0
            pick = int(np.flatnonzero(ok).min()) if ok.any() else None  # fewest kept
        else:
            ok = cut & (fa_per_hour <= value) & (tp > 0)
            useful = cut & (tp > 0)
            best = float(fa_per_hour[useful].min()) if useful.any() else float("inf")
            pick = int(np.flatnonzero(ok).max()) if ok.any() else None
        if pick is None:
            unit = " per hour" if target == "false_alarms_per_hour" else ""
            raise KilomlError(
                f"decision.target_value: {target.replace('_', ' ')} {value:g}{unit} cannot be "
                f"met for class '{class_names[c]}' on the cross-validation scores; the best "
                f"achievable is {best:.4g}{unit}")
        thresholds[c] = _f32_at_most(float(s_sorted[pick]))
        per_class[class_names[c]] = {
            "threshold": float(thresholds[c]), "precision": float(precision[pick]),
            "recall": float(recall[pick]), "false_alarms_per_hour": float(fa_per_hour[pick]),
            "argmax_recall": float(argmax_recall)}
    return thresholds, {"target": target, "target_value": value, "validation_windows": n,
                        "validation_hours": hours, "per_class": per_class}


def thresholded_recall(scores: np.ndarray, y: np.ndarray, thresholds: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the share of its windows reported as it window by window (first arg-max
    whose score reaches its threshold), and the share the arg-max alone gives; NaN for a
    class without windows."""
    k = scores.shape[1]
    pred = np.argmax(scores, axis=1)
    kept = scores[np.arange(len(pred)), pred] >= np.asarray(thresholds, dtype=F32)[pred]
    n = np.bincount(y, minlength=k).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = np.bincount(y[pred == y], minlength=k) / n
        reported = np.bincount(y[(pred == y) & kept], minlength=k) / n
    return reported, hit


def rarely_reported(calibration: dict, class_names: list[str], held_out_recall: np.ndarray,
                    held_out_argmax_recall: np.ndarray,
                    limit: float = RARELY_REPORTED_RECALL) -> list[dict]:
    """A warning for every class whose calibrated threshold keeps less than ``limit`` of
    its out-of-fold windows or of its held-out windows: the device would almost never
    report it."""
    warnings = []
    if not calibration:
        return warnings
    per_class = calibration["per_class"]
    target = calibration["target"].replace("_", " ")
    for c, name in enumerate(class_names):
        info = per_class[name]
        oof, held = info["recall"], float(held_out_recall[c])
        low = [w for w, v in (("out-of-fold", oof), ("held-out", held))
               if not np.isnan(v) and v < limit]
        if not low:
            continue
        held_text = "no held-out window" if np.isnan(held) else \
            f"{held:.1%} of its held-out windows (arg-max alone {held_out_argmax_recall[c]:.1%})"
        warnings.append({
            "class": name, "threshold": info["threshold"], "recall_out_of_fold": oof,
            "argmax_recall_out_of_fold": info.get("argmax_recall"),
            "recall_held_out": None if np.isnan(held) else held,
            "argmax_recall_held_out": None if np.isnan(held) else
            float(held_out_argmax_recall[c]),
            "limit": limit,
            "message": (
                f"class '{name}' is almost never reported: its threshold "
                f"{info['threshold']:.4f} (calibrated for {target} "
                f"{calibration['target_value']:g}) keeps {oof:.1%} of its out-of-fold "
                f"windows" + (f" (arg-max alone {info['argmax_recall']:.1%})"
                              if "argmax_recall" in info else "")
                + f" and {held_text}; lower [decision] target_value, or calibrate for "
                f"recall")})
    return warnings
