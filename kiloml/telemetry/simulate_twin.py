"""The Python twin of one simulated device (kiloml/verify/harness/fleet_main.c): the same
samples through the pipeline, the decision layer and the monitor's twin, with a record at
every multiple of the record period of the device's uptime. Its records must equal the
compiled C's byte for byte (the parity the monitor promises, on a continuous stream of
days rather than per recording); the tests check that."""

from __future__ import annotations

import math

import numpy as np

from kiloml.data.recording import Recording
from kiloml.data.windows import window_starts
from kiloml.decision.layer import DecisionLayer
from kiloml.monitor.inputs import monitor_inputs
from kiloml.monitor.twin import Monitor
from kiloml.pipeline import Pipeline

__all__ = ["record_points", "twin_records"]

F32 = np.float32


def _uptime(pushed: int, rate: float) -> int:
    return int(float(pushed) / rate)  # fleet_main.c: (uint32_t)((double)pushed / rate)


def record_points(n_samples: int, rate_hz: float, record_every_s: int
                  ) -> list[tuple[int, int]]:
    """(samples pushed, uptime) at each record fleet_main.c writes: the first count whose
    uptime reaches the next multiple of the period (KML_SAMPLE_RATE_HZ is a float)."""
    rate = float(F32(rate_hz))
    out = []
    u = record_every_s
    while True:
        n = max(1, math.ceil(u * rate))
        while _uptime(n, rate) < u:
            n += 1
        while n > 1 and _uptime(n - 1, rate) >= u:
            n -= 1
        if n > n_samples:
            return out
        up = _uptime(n, rate)
        out.append((n, up))
        u = (up // record_every_s + 1) * record_every_s


def twin_records(pipeline: Pipeline, samples: np.ndarray, record_every_s: int,
                 model_id: bytes) -> bytes:
    """The records fleet_main.c writes for ``samples`` [S, C] (raw, from boot)."""
    assert pipeline.monitor is not None
    x = np.asarray(samples, F32)
    n_samples = len(x)
    if pipeline.preprocess:  # one continuous stream from a zero state, as the device
        x = pipeline.preprocess_recordings([Recording(
            x, pipeline.input_rate_hz, list(pipeline.channels), "", "device",
            label="")])[0].samples
    w, d = pipeline.window_samples, pipeline.decimation
    starts = window_starts(len(x), w, pipeline.stride_samples)
    view = np.lib.stride_tricks.sliding_window_view(x, w, axis=0)
    windows = np.ascontiguousarray(view[starts].transpose(0, 2, 1))
    features = np.asarray(pipeline.compute_features_batched(windows), F32)
    labels = pipeline.model.predict(features) if len(features) else np.zeros(0, int)
    # what kml_mo_step passes (a network's channel moments and energy score too)
    inputs = monitor_inputs(pipeline, windows, features)
    steps = DecisionLayer(pipeline.decision_params).run(inputs.scores, labels)
    # the raw sample that completes processed sample j is sample j * d (kiloml.verify)
    pushed_at = (starts + w - 1) * d + 1
    monitor = Monitor(pipeline.monitor)
    out = []
    i = 0
    for n, uptime in record_points(n_samples, pipeline.input_rate_hz, record_every_s):
        while i < len(starts) and pushed_at[i] <= n:
            monitor.update(inputs.watched[i], inputs.channel_variance[i], steps.smoothed[i],
                           int(steps.decision[i]), bool(steps.candidate[i] == -1),
                           None if inputs.energy is None else inputs.energy[i])
            i += 1
        out.append(monitor.snapshot(model_id, uptime))
    return b"".join(out)
