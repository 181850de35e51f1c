"""The calibrated delay: the calibrated monitor's detection delay for a drift from many
onsets on each held-out device (what the device was doing when the drift began decides
how soon it shows: the worst over dense onsets is the delay the fleet can count on).

A drift changes nothing before its first changed sample, so each onset's stream is
computed only from the first window that sample touches to ``HORIZON_S`` after the onset:
features and device scores of those windows, the decision layer over the stream up to
there (its smoothing carries state), and the monitor's twin restarted from its state on
the clean stream at that window. Per-window features make this exact: the same flags as
the whole stream through ``evaluate.stream_of``; a pipeline with preprocessing (filters
carry state across windows) takes the whole stream instead."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from kiloml.decision.layer import UNCERTAIN, DecisionLayer
from kiloml.monitor import evaluate as ev
from kiloml.monitor.config import MonitorParams
from kiloml.monitor.harness import Stream
from kiloml.monitor.inputs import monitor_inputs
from kiloml.monitor.twin import Monitor
from kiloml.pipeline import Pipeline

F32 = np.float32
HORIZON_S = 180.0        # a drift not flagged this long after its onset counts as missed
ONSET_SPACING_S = 15.0   # device time between the onsets
ONSET_RANGE = (1 / 6, 1 / 2)  # where in each held-out device's stream the onsets are


def onsets(n_samples: int, rate_hz: float) -> list[int]:
    """Onset samples every ONSET_SPACING_S over ONSET_RANGE of the stream."""
    lo, hi = (int(n_samples * s) for s in ONSET_RANGE)
    step = max(1, round(ONSET_SPACING_S * rate_hz))
    return list(range(lo, max(lo + 1, hi), step))


def _clone(m: Monitor) -> Monitor:
    c = copy.copy(m)  # parameters shared; the state copied
    for name in ("z_mean", "z_var", "flat_run", "running", "counts", "hist"):
        setattr(c, name, getattr(m, name).copy())
    c.ph = [copy.copy(d) for d in m.ph]
    return c


@dataclass
class CleanDevice:
    """A held-out device's clean stream and what restarting inside it needs."""

    samples: np.ndarray
    stream: Stream
    starts: np.ndarray    # window start samples
    scores: np.ndarray    # device scores per window
    before: list[Monitor]  # the twin's state before each window (and after the last)
    flags: np.ndarray


def clean_device(pipeline: Pipeline, params: MonitorParams, samples: np.ndarray,
                 stream: Stream) -> CleanDevice:
    n = len(stream.features)
    starts = np.arange(n, dtype=np.int64) * pipeline.stride_samples
    m = Monitor(params)
    before, flags = [], np.zeros(n, np.int64)
    for i in range(n):
        before.append(_clone(m))
        flags[i] = m.update(stream.features[i], stream.channel_variance[i],
                            stream.smoothed[i], int(stream.decisions[i]),
                            bool(stream.uncertain[i]),
                            None if stream.ood is None else stream.ood[i])
    before.append(_clone(m))
    x = np.asarray(samples, F32)
    if params.inputs == "features":  # the stream holds the model's features
        scores = pipeline.device_scores(stream.features)
    elif pipeline.preprocess or not n:  # drift_delay runs whole streams: no scores needed
        scores = np.zeros((n, pipeline.n_classes), F32)
    else:  # the stream holds channel moments: the model's inputs from the windows
        windows = np.ascontiguousarray(x[starts[:, None] + np.arange(pipeline.window_samples)])
        with np.errstate(all="ignore"):
            scores = pipeline.device_scores(pipeline.compute_features_batched(windows))
    return CleanDevice(x, stream, starts, scores, before, flags)


def drift_delay(pipeline: Pipeline, params: MonitorParams, base: CleanDevice,
                drifted: np.ndarray, onset: int) -> ev.Delay:
    """The calibrated monitor's delay for ``drifted`` (``base``'s samples with a drift
    from sample ``onset``), within HORIZON_S."""
    stride = pipeline.stride_samples / pipeline.sample_rate_hz
    y = np.asarray(drifted, F32)
    w = pipeline.window_samples
    ends = base.starts + w
    onset_w = int(np.searchsorted(ends, onset + 1))
    n = len(ends)
    stop = min(n, onset_w + int(np.ceil(HORIZON_S / stride)))
    if pipeline.preprocess:
        s = ev.stream_of(pipeline, y)
        return ev.delay(ev.monitor_detector(params)(s)[:stop], onset_w, stride)
    changed = np.flatnonzero(np.any(y != base.samples, axis=1))
    first = int(np.searchsorted(ends, changed[0] + 1)) if len(changed) else n
    flags = base.flags[:stop].copy()
    if first < stop:
        idx = base.starts[first:stop, None] + np.arange(w)
        windows = np.ascontiguousarray(y[idx])  # [windows, samples, channels]
        with np.errstate(all="ignore"):
            feats = pipeline.compute_features_batched(windows)
        inputs = monitor_inputs(pipeline, windows, feats, params)
        scores = np.concatenate([base.scores[:first], inputs.scores])
        steps = DecisionLayer(pipeline.decision_params).run(scores, np.argmax(scores, axis=1))
        m = _clone(base.before[first])
        for i in range(first, stop):
            j = i - first
            flags[i] = m.update(inputs.watched[j], inputs.channel_variance[j],
                                steps.smoothed[i], int(steps.decision[i]),
                                bool(steps.candidate[i] == UNCERTAIN),
                                None if inputs.energy is None else inputs.energy[j])
    return ev.delay(flags != 0, onset_w, stride)
