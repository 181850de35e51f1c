"""Compare the C library's outputs with the Python reference."""

from __future__ import annotations

import numpy as np

from kiloml.data.windows import window_starts
from kiloml.verify.host import StreamEvents, WindowOutputs


def window_parity(labels: np.ndarray, scores: np.ndarray, features: np.ndarray,
                  c: WindowOutputs, slices: list[tuple[str, int, int]] | None = None) -> dict:
    """Decisions, scores and features of the same windows from Python and from C; with
    ``slices`` ((stage, first, end) of each window stage's features) also per stage."""
    equal = labels.astype(np.int64) == c.labels.astype(np.int64)
    feature_diff = np.abs(features.astype(np.float64) - c.features.astype(np.float64))
    per_stage = {}
    for i, (kind, a, b) in enumerate(slices or []):
        ref = np.abs(features[:, a:b].astype(np.float64))
        diff = feature_diff[:, a:b]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(ref > 0, diff / ref, diff)
        per_stage[f"{i}: {kind}"] = {
            "n_features": b - a,
            "max_abs_error": float(np.max(diff, initial=0.0)),
            "max_rel_error": float(np.max(rel, initial=0.0)),
            "bit_exact": bool(np.array_equal(features[:, a:b].view(np.int32),
                                             c.features[:, a:b].view(np.int32))),
        }
    return {
        "n": len(labels),
        "decisions_equal": int(equal.sum()),
        "all_decisions_equal": bool(equal.all()),
        "max_abs_score_diff": float(np.max(np.abs(scores - c.scores), initial=0.0)),
        "max_abs_feature_diff": float(np.max(feature_diff, initial=0.0)),
        "features_bit_exact": bool(np.array_equal(features.view(np.int32),
                                                  c.features.view(np.int32))),
        "first_mismatches": np.flatnonzero(~equal)[:10].tolist(),
        "features_by_stage": per_stage,
    }


def expected_stream(lengths: list[int], window: int, stride: int) -> tuple[np.ndarray,
                                                                          np.ndarray,
                                                                          np.ndarray]:
    """(recording, window start, last sample) of every window the streaming API must report."""
    rec, start = [], []
    for i, n in enumerate(lengths):
        s = window_starts(n, window, stride)
        rec.extend([i] * len(s))
        start.extend(s.tolist())
    start_arr = np.array(start, dtype=np.int64)
    return np.array(rec, dtype=np.int64), start_arr, start_arr + window - 1


def stream_parity(expected_rec: np.ndarray, expected_last: np.ndarray,
                  expected_labels: np.ndarray, expected_scores: np.ndarray,
                  events: StreamEvents) -> dict:
    same_windows = (len(events.recording) == len(expected_rec)
                    and np.array_equal(events.recording, expected_rec)
                    and np.array_equal(events.last_sample, expected_last))
    n = min(len(events.labels), len(expected_labels))
    equal = events.labels[:n].astype(np.int64) == expected_labels[:n].astype(np.int64)
    return {
        "n_windows": len(expected_rec),
        "n_reported": len(events.recording),
        "windows_equal": bool(same_windows),
        "decisions_equal": int(equal.sum()) if same_windows else 0,
        "all_decisions_equal": bool(same_windows and equal.all()),
        "max_abs_score_diff": float(np.max(np.abs(expected_scores[:n] - events.scores[:n]),
                                           initial=0.0)),
    }
