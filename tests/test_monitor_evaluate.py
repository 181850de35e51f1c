"""kiloml/monitor/evaluate.py: stress perturbations applied gradually leave the samples
before the onset alone and reach the stress perturbation's full severity after the ramp;
alarm events and delays."""

from __future__ import annotations

import numpy as np
import pytest

from kiloml.evaluate.perturb import ChannelScale, perturb_samples
from kiloml.monitor import evaluate as ev

RATE = 50.0


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(3000, 3)) + np.array([0.0, 1.0, -9.8])).astype(np.float32)


@pytest.mark.parametrize("name,severity", [("gain", 50), ("offset", 2), ("noise", 0),
                                           ("ramp", 4), ("stuck", 0.4), ("clipping", 0.5),
                                           ("dropout", 0.3)])
def test_gradual_starts_clean_and_grows(samples, name: str, severity: float) -> None:
    scale = ChannelScale.of_samples(samples)
    onset, ramp = 1000, 500
    x = ev.gradual(samples, name, severity, scale, RATE, onset, ramp, seed=1)
    assert x.shape == samples.shape and x.dtype == np.float32
    assert np.array_equal(x[:onset], samples[:onset])
    assert not np.array_equal(x[onset + ramp:], samples[onset + ramp:])
    if name in ("gain", "offset", "noise"):  # past the ramp: the stress perturbation itself
        full = perturb_samples(samples, name, severity, scale, RATE, seed=1)
        assert np.allclose(x[onset + ramp:], full[onset + ramp:], atol=1e-5)
    if name in ("stuck", "dropout"):  # the burst rate grows over the ramp
        changed = np.any(x != samples, axis=1)
        assert changed[onset:onset + ramp // 2].mean() < changed[onset + ramp:].mean()


def test_alarm_events_and_delay() -> None:
    alarm = np.zeros(100, bool)
    alarm[[5, 6, 7, 40, 41, 70]] = True
    assert ev.alarm_events(alarm).tolist() == [5, 40, 70]
    d = ev.delay(alarm, 30, 0.5)
    assert (d.detected, d.windows, d.seconds, d.alarms_before_onset) == (True, 10, 5.0, 1)
    assert not ev.delay(alarm, 80, 0.5).detected
    assert ev.per_device_day(2, 172_800, 0.5) == 2.0
    assert ev.periodic_detector(10)(type("S", (), {"features": np.zeros((30, 1))})()
                                    ).nonzero()[0].tolist() == [9, 19, 29]
