"""Event-level behaviour on a continuous stream: false alarms per hour, missed events,
detection latency, and how often the output switches (chatter)."""

from __future__ import annotations

import itertools

import numpy as np

from kiloml.decision.layer import UNCERTAIN


def segments(truth: np.ndarray) -> list[tuple[int, int, int]]:
    """(label, first sample, end sample) of each run of one true label."""
    out, start = [], 0
    for label, run in itertools.groupby(truth.tolist()):
        n = len(list(run))
        out.append((int(label), start, start + n))
        start += n
    return out


def event_metrics(truth: np.ndarray, window_end: np.ndarray, decision: np.ndarray,
                  changed: np.ndarray, rate_hz: float) -> dict:
    """``truth`` [S]: the true label of every sample; per window: the sample that ends it,
    the decision and whether it switched there.

    An event is a run of one true label; it is detected when the decision equals its
    label at a window ending inside it, with latency from the run's first sample to
    that window's last sample. A false alarm is a switch to a class other than the true
    label at the window's last sample."""
    hours = len(truth) / rate_hz / 3600.0
    at_end = truth[window_end]
    switched_on = (changed == 1) & (decision != UNCERTAIN)
    false_alarms = int((switched_on & (decision != at_end)).sum())
    latencies, missed = [], 0
    for label, a, b in segments(truth):
        inside = np.flatnonzero((window_end >= a) & (window_end < b) & (decision == label))
        if inside.size:
            latencies.append((int(window_end[inside[0]]) - a + 1) / rate_hz)
        else:
            missed += 1
    lat = np.array(latencies)
    n_events = len(latencies) + missed
    return {
        "hours": hours, "events": n_events, "detected_events": len(latencies),
        "missed_events": missed, "false_alarms": false_alarms,
        "false_alarms_per_hour": false_alarms / hours if hours else 0.0,
        "switches_per_hour": float(changed.sum()) / hours if hours else 0.0,
        "latency_s_mean": float(lat.mean()) if lat.size else None,
        "latency_s_median": float(np.median(lat)) if lat.size else None,
        "latency_s_max": float(lat.max()) if lat.size else None,
        "uncertain_fraction": float(np.mean(decision == UNCERTAIN)) if len(decision) else 0.0,
        "window_accuracy": float(np.mean(decision == at_end)) if len(decision) else 0.0,
    }
