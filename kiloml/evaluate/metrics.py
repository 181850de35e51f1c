"""Classification metrics on held-out windows: overall, per class and per group, and the
misclassified windows by recording and time."""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from kiloml.data.order import natural_key, natural_sorted

MISCLASSIFIED_LISTED = 200  # windows listed in metrics.json and the report; the rest counted
RECORDINGS_LISTED = 20  # recordings with the most misclassified windows


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                      class_names: list[str]) -> dict[str, dict]:
    """Precision, recall and F1 of every class (0 where a class is never predicted or has
    no window), with its true (support) and predicted window counts."""
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    predicted = np.bincount(np.asarray(y_pred, dtype=np.int64), minlength=len(labels))
    return {name: {"precision": float(precision[c]), "recall": float(recall[c]),
                   "f1": float(f1[c]), "support": int(support[c]),
                   "predicted": int(predicted[c])}
            for c, name in enumerate(class_names)}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray,
                           class_names: list[str]) -> dict:
    labels = list(range(len(class_names)))
    per_group = {}
    for g in natural_sorted(str(g) for g in groups.tolist()):
        mask = groups == g
        per_group[str(g)] = {
            "accuracy": float(accuracy_score(y_true[mask], y_pred[mask])),
            "n_windows": int(mask.sum()),
        }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                   zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
        "per_class": per_class_metrics(y_true, y_pred, class_names),
        "per_group_accuracy": per_group,
    }


def misclassified_windows(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray,
                          recording: np.ndarray, start_samples: np.ndarray,
                          sources: list[str], sample_rate_hz: float,
                          class_names: list[str], limit: int = MISCLASSIFIED_LISTED) -> dict:
    """The windows whose prediction is wrong, in order of recording (natural order of the
    source) and start time; the first ``limit`` listed, the rest counted.

    ``recording`` indexes ``sources``; ``start_samples`` is each window's first sample in
    its recording at ``sample_rate_hz`` (the rate the windows are cut at); ``score`` is the
    model's score of the predicted class and ``true_score`` that of the true class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    wrong = np.flatnonzero(y_true != y_pred)
    rec = np.asarray(recording, dtype=np.int64)
    start = np.asarray(start_samples, dtype=np.int64)
    order = sorted(wrong.tolist(), key=lambda i: (natural_key(sources[rec[i]]), int(start[i])))
    listed = [{"recording": sources[rec[i]],
               "start_s": round(float(start[i]) / sample_rate_hz, 6),
               "true": class_names[y_true[i]], "predicted": class_names[y_pred[i]],
               "score": float(scores[i, y_pred[i]]), "true_score": float(scores[i, y_true[i]])}
              for i in order[:limit]]
    windows_of = Counter(rec.tolist())
    wrong_of = Counter(rec[wrong].tolist())
    worst = sorted(wrong_of, key=lambda r: (-wrong_of[r], natural_key(sources[r])))
    return {"n": len(wrong), "n_windows": len(y_true), "limit": limit,
            "listed": listed, "not_listed": max(0, len(wrong) - limit),
            "by_recording": [{"recording": sources[r], "misclassified": wrong_of[r],
                              "windows": windows_of[r]} for r in worst[:RECORDINGS_LISTED]],
            "recordings_with_errors": len(wrong_of)}
