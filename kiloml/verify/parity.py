"""Compare the C library's outputs with the Python reference."""

from __future__ import annotations

import numpy as np

from kiloml.data.windows import window_starts
from kiloml.verify.host import RecordingOutputs, StreamEvents, WindowOutputs

UNTOUCHED = np.uint8(0xA5)  # the harnesses fill kml_result_t with it before each call


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
    """Streaming parity includes the decision layer: every decision must agree too (and,
    with a monitor, its flags and telemetry records)."""
    layer = decision_parity(reference, events)
    if layer is not None:
        streaming["decision_layer"] = layer
        streaming["all_decisions_equal"] = streaming["all_decisions_equal"] and layer["all_equal"]
    monitor = monitor_parity(reference, events)
    if monitor is not None:
        streaming["monitor"] = monitor
        streaming["all_decisions_equal"] = (streaming["all_decisions_equal"]
                                            and monitor["flags_equal"]
                                            and monitor["snapshots_equal"])
    return streaming


def monitor_parity(reference, events: StreamEvents) -> dict | None:
    """The monitor in C against its Python twin on the same streamed windows: the flags
    after every window and every telemetry record, byte for byte."""
    if reference.stream_monitor_flags is None:
        return None  # no [monitor]
    expected, n = reference.stream_monitor_flags, len(reference.stream_monitor_flags)
    if events.monitor_flags is None or len(events.monitor_flags) != n:
        got = "none" if events.monitor_flags is None else len(events.monitor_flags)
        return {"n": n, "flags_equal": False, "snapshots_equal": False,
                "note": f"C reported monitor flags for {got} windows"}
    flags_ok = events.monitor_flags.astype(np.int64) == expected
    rec_ok = np.all(events.monitor_records == reference.stream_monitor_records, axis=1)
    written = np.any(reference.stream_monitor_records != 0, axis=1)
    return {"n": n, "flags_equal": bool(flags_ok.all()), "snapshots_equal": bool(rec_ok.all()),
            "n_snapshots": int(written.sum()),
            "windows_flagged": int((expected != 0).sum()),
            "first_mismatches": np.flatnonzero(~(flags_ok & rec_ok))[:10].tolist()}


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


def recording_parity(reference, c: RecordingOutputs, pipeline, ran: np.ndarray | None = None,
                     not_run_note: str | None = None) -> dict:
    """kml_classify_recording against the Python rule on every recording of the reference
    (``ran``: the indices the C was given, all by default): the same return value (the
    class, or -1 where the rule refuses), out->label equal to it, out left untouched when
    refused; scores compared with the device's float32 bit for bit."""
    expected_all = reference.recording_labels
    index = np.arange(len(expected_all)) if ran is None else np.asarray(ran, dtype=np.int64)
    expected = expected_all[index]
    returned = c.returned.astype(np.int64)
    equal = returned == expected
    accepted = expected >= 0
    label_ok = np.where(accepted, c.labels.astype(np.int64) == returned, True)
    raw_bytes = np.concatenate([c.labels.view(np.uint8).reshape(len(c.labels), -1),
                                c.scores.view(np.uint8).reshape(len(c.scores), -1)], axis=1)
    untouched = np.all(raw_bytes[~accepted] == UNTOUCHED)
    ref_scores = reference.recording_scores[index]
    processed = (reference.recording_lengths - 1) // pipeline.decimation + 1
    held_out = reference.recording_probe == 0
    length = pipeline.window_samples
    ok = equal & label_ok
    out = {
        "n": len(index),
        "held_out_recordings": int(held_out.sum()),
        "boundary_probes": int((~held_out).sum()),
        "padded": int((held_out & (processed < length)).sum()),
        "cropped": int((held_out & (processed > length)).sum()),
        "refused": int((expected_all < 0).sum()),
        "decisions_equal": int(ok.sum()),
        "all_decisions_equal": bool(ok.all() and untouched),
        "out_untouched_when_refused": bool(untouched),
        "scores_bit_exact": bool(np.array_equal(c.scores[accepted].view(np.int32),
                                                ref_scores[accepted].view(np.int32))),
        "max_abs_score_diff": float(np.max(np.abs(c.scores[accepted].astype(np.float64)
                                                  - ref_scores[accepted]), initial=0.0)),
        "first_mismatches": index[~ok][:10].tolist(),
    }
    if ran is not None and len(index) != len(expected_all):
        out["not_run"] = len(expected_all) - len(index)
        out["note"] = not_run_note or f"{out['not_run']} recordings not run"
    return out


def add_recording_parity(result: dict, recordings: dict) -> dict:
    """Window parity includes kml_classify_recording: every recording must agree too."""
    result["recordings"] = recordings
    result["all_decisions_equal"] = result["all_decisions_equal"] and \
        recordings["all_decisions_equal"]
    return result
