"""Per-recording decisions of a windowed project: ``[evaluation] per_recording = "vote"``.

Each held-out recording's decision is the majority of its windows' predicted labels; a
tie goes to the class that comes first in class order (``class_names``, the order of
``kml_class_names``), the same rule as the first arg-max everywhere else in kiloml. The
recording's true class is the same vote over its windows' true labels (a recording with
one label: that label; with per-sample labels its most common window label, and the
recording is counted as mixed).
"""

from __future__ import annotations

import numpy as np

from kiloml.data.order import natural_key
from kiloml.evaluate.metrics import classification_metrics

TIE_RULE = "a tie goes to the class first in class order (class_names)"
LISTED = 50  # misclassified recordings listed in metrics.json and the report


def vote(labels: np.ndarray, n_classes: int) -> tuple[int, bool]:
    """(the majority label, whether the top count was shared: decided by class order)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)
    top = int(np.argmax(counts))  # the first of equal counts: first in class order
    return top, bool(np.sum(counts == counts[top]) > 1)


def per_recording_vote(y_true: np.ndarray, y_pred: np.ndarray, recording: np.ndarray,
                       groups: np.ndarray, sources: list[str],
                       class_names: list[str]) -> dict:
    """Per-recording accuracy from the held-out windows (``recording`` indexes ``sources``);
    the per-window figures stay in evaluation.accuracy etc."""
    k = len(class_names)
    ids = sorted(set(np.asarray(recording).tolist()), key=lambda r: natural_key(sources[r]))
    truth, decided, group, ties, mixed, rows = [], [], [], 0, 0, []
    for r in ids:
        mask = recording == r
        t, _ = vote(y_true[mask], k)
        d, tie = vote(y_pred[mask], k)
        ties += tie
        mixed += len(set(y_true[mask].tolist())) > 1
        truth.append(t)
        decided.append(d)
        group.append(str(groups[mask][0]))
        if t != d:
            counts = np.bincount(y_pred[mask], minlength=k)
            rows.append({"recording": sources[r], "true": class_names[t],
                         "decision": class_names[d], "windows": int(mask.sum()),
                         "votes": {class_names[c]: int(counts[c])
                                   for c in np.flatnonzero(counts)},
                         "tie": tie})
    m = classification_metrics(np.array(truth, dtype=np.int64),
                               np.array(decided, dtype=np.int64), np.array(group),
                               class_names)
    return {"method": "vote", "tie_rule": TIE_RULE, "n_recordings": len(ids),
            "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
            "macro_f1": m["macro_f1"], "confusion_matrix": m["confusion_matrix"],
            "per_class": m["per_class"], "ties": ties, "mixed_label_recordings": mixed,
            "n_misclassified": len(rows), "misclassified": rows[:LISTED]}
