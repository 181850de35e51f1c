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


def decision_parity(reference, events: StreamEvents) -> dict | None:
    """The decision layer in C against its Python twin on the same streamed windows: the
    device scores it starts from, the smoothed scores, candidates, decisions and switches,
    all exact."""
    if reference.stream_decision is None:
        return None  # a reference saved before the decision layer existed
    n = len(reference.stream_decision)
    if len(events.decision) != n:
        return {"n": n, "decisions_equal": 0, "all_equal": False,
                "note": f"C reported {len(events.decision)} windows"}
    equal = ((events.decision == reference.stream_decision)
             & (events.changed == reference.stream_changed)
             & (events.candidate == reference.stream_candidate))
    return {
        "n": n,
        "decisions_equal": int(equal.sum()),
        "device_scores_bit_exact": bool(np.array_equal(
            events.scores.view(np.int32), reference.stream_device_scores.view(np.int32))),
        "smoothed_bit_exact": bool(np.array_equal(
            events.smoothed.view(np.int32), reference.stream_smoothed.view(np.int32))),
        "switches": int(events.changed.sum()),
        "uncertain_windows": int((events.decision < 0).sum()),
        "all_equal": bool(equal.all()),
        "first_mismatches": np.flatnonzero(~equal)[:10].tolist(),
    }


def add_decision_parity(streaming: dict, reference, events: StreamEvents) -> dict:
    """Streaming parity includes the decision layer: every decision must agree too."""
    layer = decision_parity(reference, events)
    if layer is not None:
        streaming["decision_layer"] = layer
        streaming["all_decisions_equal"] = streaming["all_decisions_equal"] and layer["all_equal"]
    return streaming


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
