"""Classification metrics on held-out windows, overall and per group."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
)

from kiloml.data.order import natural_sorted


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
        "per_group_accuracy": per_group,
    }
