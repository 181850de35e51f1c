"""Evaluate alarms: false alarms per device-day on clean streams, and detection delay for
drifts injected mid-stream with ``kiloml stress``'s perturbations applied gradually, for
the calibrated monitor and for baselines on the same streams.

A drift starts at ``onset`` and ramps from severity 0 to the full severity over ``ramp``
samples (``weight`` w(t) = (t - onset) / ramp, clipped to [0, 1]):

- gain, offset, noise: x + w (P(x) - x), P the stress perturbation at full severity (the
  gain and offset grow linearly, the noise's standard deviation too);
- ramp: the stress ramp (0 at the onset to the severity at the stream's end);
- dropout, stuck: the stress bursts at full severity, each kept with probability w at its
  first sample (the burst rate grows linearly);
- clipping: the clip range shrinks from the full range to the severity's fraction.

A detector is anything that maps a Stream to a bool alarm per window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kiloml.data.recording import Recording
from kiloml.data.windows import window_starts
from kiloml.decision.layer import UNCERTAIN, DecisionLayer
from kiloml.evaluate.perturb import ChannelScale, perturb_samples
from kiloml.monitor.config import MonitorParams
from kiloml.monitor.harness import Stream
from kiloml.monitor.inputs import monitor_inputs
from kiloml.monitor.twin import Monitor
from kiloml.optional import needs
from kiloml.pipeline import Pipeline

F32 = np.float32
GRADUAL = ("gain", "offset", "ramp", "noise", "stuck", "clipping", "dropout")
# the severities evaluated by default, mild then strong (kiloml stress's units: gain in %,
# offset / ramp in training standard deviations, noise as SNR dB, stuck / dropout as the
# share of time, clipping as the kept share of the range)
SEVERITIES = {"gain": (20.0, 50.0), "offset": (0.5, 2.0), "ramp": (1.0, 4.0),
              "noise": (10.0, 0.0), "stuck": (0.2, 0.6), "clipping": (0.5, 0.25),
              "dropout": (0.1, 0.4)}
RAMP_S = 60.0  # a drift grows from 0 to its full severity over this much device time
Detector = Callable[[Stream], np.ndarray]  # -> bool [N]: alarm at that window


def stream_of(pipeline: Pipeline, samples: np.ndarray) -> Stream:
    """A continuous raw sample stream [S, C] at the input rate -> the monitor's inputs per
    window: what it watches (features, or a raw-window model's channel moments), channel
    variances, the decision layer's smoothed scores and decisions, a network's energy
    (one boot; preprocessing and decimation as on the device)."""
    x = np.asarray(samples, F32)
    if pipeline.preprocess:  # the device filters its input as one continuous stream
        x = pipeline.preprocess_recordings([Recording(
            x, pipeline.input_rate_hz, list(pipeline.channels), "", "stream", label="")])[0
                                            ].samples
    starts = window_starts(len(x), pipeline.window_samples, pipeline.stride_samples)
    view = np.lib.stride_tricks.sliding_window_view(x, pipeline.window_samples, axis=0)
    windows = np.ascontiguousarray(view[starts].transpose(0, 2, 1))
    with np.errstate(all="ignore"):
        feats = pipeline.compute_features_batched(windows)
    inputs = monitor_inputs(pipeline, windows, feats)
    device = inputs.scores
    labels = np.argmax(device, axis=1)
    steps = DecisionLayer(pipeline.decision_params).run(device, labels)
    uptime = ((starts + pipeline.window_samples) / pipeline.sample_rate_hz).astype(np.uint32)
    # uncertain as kml_decide_latest passes it: the candidate, not the held decision
    return Stream(inputs.watched, inputs.channel_variance, steps.smoothed, steps.decision,
                  steps.candidate == UNCERTAIN, uptime, inputs.energy)


def weight(n: int, onset: int, ramp: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    return np.clip((t - onset) / max(1, ramp), 0.0, 1.0)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def gradual(samples: np.ndarray, name: str, severity: float, scale: ChannelScale,
            rate_hz: float, onset: int, ramp: int, *, seed: int = 0, index: int = 0
            ) -> np.ndarray:
    """samples [S, C] with the perturbation growing from ``onset`` (see the module doc)."""
    x = np.asarray(samples, np.float64)
    w = weight(len(x), onset, ramp)
    if name == "ramp":
        out = x.copy()
        out[onset:] = perturb_samples(x[onset:], "ramp", severity, scale, rate_hz,
                                      seed=seed, index=index)
        return out.astype(F32)
    if name == "clipping":
        centre = (scale.high + scale.low) / 2.0
        half = (scale.high - scale.low) / 2.0 * (1.0 - w[:, None] * (1.0 - severity))
        return np.clip(x, centre - half, centre + half).astype(F32)
    full = perturb_samples(x, name, severity, scale, rate_hz, seed=seed,
                           index=index).astype(np.float64)
    if name in ("gain", "offset", "noise"):
        return (x + w[:, None] * (full - x)).astype(F32)
    if name in ("dropout", "stuck"):
        rng = np.random.default_rng([seed, index, 16])
        changed = np.any(full != x, axis=1)
        keep = np.zeros(len(x), bool)
        for a, b in _runs(changed):
            if rng.random() < w[a]:
                keep[a:b] = True
        return np.where(keep[:, None], full, x).astype(F32)
    raise ValueError(f"no gradual form of '{name}'")


# --- detectors ------------------------------------------------------------------------


def monitor_detector(params: MonitorParams) -> Detector:
    def run(s: Stream) -> np.ndarray:
        m = Monitor(params)
        return m.run(s.features, s.channel_variance, s.smoothed, s.decisions,
                     s.uncertain, s.ood).flags != 0
    return run


def never(s: Stream) -> np.ndarray:
    return np.zeros(len(s.features), bool)


def periodic_detector(period: int, phase: int = 0) -> Detector:
    def run(s: Stream) -> np.ndarray:
        i = np.arange(len(s.features))
        return (i + phase) % period == period - 1
    return run


def river_detector(kind: str, signal: Callable[[Stream], np.ndarray], **kw) -> Detector:
    """river's ADWIN or KSWIN on one float per window (the real library)."""
    with needs("river"):
        from river import drift

    def run(s: Stream) -> np.ndarray:
        det = drift.ADWIN(**kw) if kind == "adwin" else drift.KSWIN(**kw)
        out = np.zeros(len(s.features), bool)
        for i, v in enumerate(signal(s)):
            det.update(float(v))
            out[i] = det.drift_detected
        return out
    return run


# --- measures -------------------------------------------------------------------------


def alarm_events(alarm: np.ndarray) -> np.ndarray:
    """Indices where an alarm starts (a flag raised over several windows is one alarm)."""
    a = np.asarray(alarm, bool)
    return np.flatnonzero(a & ~np.concatenate([[False], a[:-1]]))


@dataclass
class Delay:
    detected: bool
    windows: int | None
    seconds: float | None
    alarms_before_onset: int


def delay(alarm: np.ndarray, onset_window: int, stride_s: float) -> Delay:
    ev = alarm_events(alarm)
    before = int((ev < onset_window).sum())
    after = np.flatnonzero(np.asarray(alarm, bool)[onset_window:])
    if not len(after):
        return Delay(False, None, None, before)
    return Delay(True, int(after[0]), float(after[0]) * stride_s, before)


def per_device_day(n_alarms: int, n_windows: int, stride_s: float) -> float:
    return n_alarms / (n_windows * stride_s / 86400.0)


def resample_stream(s: Stream, n: int, block: int, rng: np.random.Generator) -> Stream:
    """A moving-block bootstrap of a clean stream's windows to n windows (a long clean
    'device' made of the held-out data)."""
    m = len(s.features)
    block = max(1, min(block, m))
    first = rng.integers(m - block + 1, size=-(-n // block))
    rows = (first[:, None] + np.arange(block)).reshape(-1)[:n]
    up = np.arange(n, dtype=np.uint32)
    return Stream(s.features[rows], s.channel_variance[rows], s.smoothed[rows],
                  s.decisions[rows], s.uncertain[rows], up,
                  None if s.ood is None else s.ood[rows])
