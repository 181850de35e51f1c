"""The monitor's false-alarm budget (kiloml/monitor/calibrate.py): on a synthetic stationary
stream the mean run length to a false alarm of the Python twin (bit-exact with kml_monitor.c)
in a long simulation is at least 0.4 and at most 2 x the budget: the estimate is
optimistic (the limits aim at SAFETY = 2 x the budget, and the simulated run length was
0.68-1.14 x the budget for three held-out samples of 3,000 windows); a step change is caught;
bad ``false_alarm_every`` values and too little clean data are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from kiloml.errors import KilomlError
from kiloml.monitor import Monitor, MonitorConfig, fit_monitor
from kiloml.monitor import calibrate as cal
from kiloml.monitor.harness import Stream

F32 = np.float32
F, CHANNELS, K = 6, 3, 4
STRIDE_S = 1.0
RHO = 0.6  # AR(1) coefficient of the features and logits: neighbouring windows overlap
LOW, HIGH = 0.4, 2.0  # simulated mean run length / budget: measured 0.68-1.14


def process(n: int, seed: int, shift: float = 0.0, onset: int | None = None) -> Stream:
    """A stationary stream: AR(1) features, scores the softmax of AR(1) logits; ``shift``
    standard deviations added to every feature from ``onset`` on."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n + 50, F + K))
    a = np.zeros_like(e)
    for t in range(1, len(e)):
        a[t] = RHO * a[t - 1] + np.sqrt(1 - RHO ** 2) * e[t]
    a = a[50:]
    x = a[:, :F] * np.arange(1, F + 1) + 3.0
    if onset is not None:
        x[onset:] += shift * np.arange(1, F + 1)
    logits = 1.5 * a[:, F:] + np.array([1.0, 0.5, 0.0, -0.5])
    sm = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    srt = np.sort(sm, axis=1)
    cv = rng.gamma(4.0, 1.0, size=(n, CHANNELS))
    return Stream(x.astype(F32), cv.astype(F32), sm.astype(F32), sm.argmax(axis=1),
                  (srt[:, -1] - srt[:, -2]) < 0.05, np.arange(n, dtype=np.uint32))


@pytest.fixture(scope="module")
def params():
    train = process(4000, 1)
    return fit_monitor(train.features, train.channel_variance, MonitorConfig(),
                       np.arange(F, 0, -1.0), n_classes=K, smoothed_train=train.smoothed)


def first_alarms(p, n_streams: int, length: int, seed: int) -> tuple[int, int]:
    """(alarms, windows watched): each stream from boot to its first alarm (or its end)."""
    alarms, exposure = 0, 0
    m = Monitor(p)
    for i in range(n_streams):
        s = process(length, seed + i)
        flags = m.run(s.features, s.channel_variance, s.smoothed, s.decisions,
                      s.uncertain).flags
        hit = np.flatnonzero(flags)
        alarms += bool(len(hit))
        exposure += int(hit[0]) + 1 if len(hit) else length
    return alarms, exposure


def test_calibrated_run_length_matches_a_long_simulation(params) -> None:
    held_out = [process(1500, 100 + i) for i in range(2)]
    c = cal.calibrate(params, held_out, "20m", STRIDE_S, seed=0)
    assert c.budget_windows == 1200
    assert c.report["block_windows"] >= 2  # the AR(1) dependence is seen
    lo, hi = c.report["arl_interval_windows"]
    assert lo < cal.SAFETY * c.budget_windows < hi
    # the real twin on fresh streams of the same process: exponential MLE of the mean run
    # length (censored streams count their windows)
    alarms, exposure = first_alarms(c.params, 40, 2400, 1000)
    assert alarms >= 15
    simulated = exposure / alarms
    assert LOW * c.budget_windows <= simulated <= HIGH * c.budget_windows, \
        (simulated, c.report)
    # the uncalibrated training limits fire on this held-out process far more often
    assert c.params.thresholds.source.startswith("calibrated")


def test_step_change_is_detected(params) -> None:
    c = cal.calibrate(params, [process(1500, 100 + i) for i in range(2)], "20m", STRIDE_S)
    s = process(800, 7, shift=2.0, onset=400)
    flags = Monitor(c.params).run(s.features, s.channel_variance, s.smoothed, s.decisions,
                                  s.uncertain).flags
    hit = np.flatnonzero(flags)
    assert len(hit) and 400 <= hit[0] < 440, hit[:5]


@pytest.mark.parametrize("text", ["30", "3 weeks", "-5d", "0h", "1.5x", "", "d"])
def test_bad_false_alarm_every_is_one_line(text: str) -> None:
    with pytest.raises(KilomlError) as e:
        cal.parse_every(text)
    msg = str(e.value)
    assert "\n" not in msg and "false_alarm_every" in msg and "'30d'" in msg


def test_durations() -> None:
    assert cal.parse_every("30d") == 30 * 86400
    assert cal.parse_every("12h") == 12 * 3600
    assert cal.parse_every("90m") == 5400
    assert cal.budget_windows(cal.parse_every("30d"), 0.5) == 5_184_000


def test_too_little_data_says_how_much_it_needs(params) -> None:
    with pytest.raises(KilomlError) as e:
        cal.calibrate(params, [process(1500, 100)], "30d", STRIDE_S)
    msg = str(e.value)
    assert "\n" not in msg and "needs at least 25920 windows (7.2 h)" in msg, msg
    with pytest.raises(KilomlError) as e:
        cal.calibrate(params, [process(15, 100)], "1m", STRIDE_S)
    assert "needs at least 20 windows" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(KilomlError) as e:  # blocks of at least 16 windows (alpha 1/32)
        cal.calibrate(params, [process(100, 100)], "1m", STRIDE_S)
    assert "10 bootstrap blocks of 16 windows need at least 160 windows" in str(e.value)
