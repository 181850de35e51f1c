"""`kiloml stress`: perturbations do what they claim; stress results in metrics and report;
bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, run_cli, write_toy_project

from kiloml.evaluate.perturb import (
    PERTURBATIONS,
    ChannelScale,
    burst_mask,
    device_context,
    perturb_samples,
    rate_ratio,
)
from kiloml.evaluate.stress import breaking_point

RATE_HZ = 50.0
RNG = np.random.default_rng(7)
# four channels with different scales and a gravity-like offset on one
X = (RNG.standard_normal((4000, 4)) * [1.0, 0.3, 2.0, 0.05] + [0.0, 9.8, -1.0, 0.2]
     ).astype(np.float32)
SCALE = ChannelScale.of_samples(X)


def perturb(name: str, severity: float, x: np.ndarray = X, seed: int = 0) -> np.ndarray:
    return perturb_samples(x, name, severity, SCALE, RATE_HZ, seed=seed, index=0)


# --- perturbations ------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [30.0, 10.0, 0.0, -5.0])
def test_noise_has_the_requested_snr(snr_db: float) -> None:
    y = perturb("noise", snr_db).astype(np.float64)
    noise = y - X
    measured = 10 * np.log10(X.astype(np.float64).var(axis=0) / np.mean(noise ** 2, axis=0))
    assert np.all(np.abs(measured - snr_db) < 0.5), measured


def test_gain_and_offset_are_exact() -> None:
    signs, _ = device_context("gain", 4, 0)
    y = perturb("gain", 20.0)
    np.testing.assert_allclose(y, X * (1 + 0.2 * signs).astype(np.float32), rtol=1e-6)
    signs, _ = device_context("offset", 4, 0)
    y = perturb("offset", 2.0)
    np.testing.assert_allclose(y - X, np.broadcast_to(signs * 2.0 * SCALE.std, X.shape),
                               atol=1e-5)
    signs, _ = device_context("ramp", 4, 0)
    d = perturb("ramp", 3.0).astype(np.float64) - X
    np.testing.assert_allclose(d[0], 0.0, atol=1e-5)
    np.testing.assert_allclose(d[-1], signs * 3.0 * SCALE.std, atol=1e-4)


def test_clipping_bounds() -> None:
    y = perturb("clipping", 0.5)
    centre, half = (SCALE.high + SCALE.low) / 2, (SCALE.high - SCALE.low) / 4
    assert np.all(y >= (centre - half).astype(np.float32) - 1e-6)
    assert np.all(y <= (centre + half).astype(np.float32) + 1e-6)
    inside = np.abs(X - centre) < half
    assert np.array_equal(y[inside], X[inside])
    assert np.any(y != X)


@pytest.mark.parametrize("percent", [10.0, -20.0, 2.5])
def test_rate_mismatch_changes_length_by_the_ratio(percent: float) -> None:
    y = perturb("rate_mismatch", percent)
    assert rate_ratio(percent) == pytest.approx(1 + percent / 100, abs=1e-6)
    assert len(y) == math.ceil(len(X) * (1 + percent / 100))
    # a slow sine stays a sine at (1 + percent) x the samples per cycle
    t = np.arange(2000)
    sine = np.sin(2 * np.pi * t / 100.0)[:, None].repeat(4, axis=1).astype(np.float32)
    z = perturb("rate_mismatch", percent, sine)[200:-200, 0]
    period = 100.0 * (1 + percent / 100)
    ref = np.sin(2 * np.pi * (np.arange(len(z)) + 200) / period)
    assert np.max(np.abs(z - ref)) < 0.02


def test_sign_flip_and_axis_swap_are_exact() -> None:
    _, order = device_context("sign_flip", 4, 0)
    y = perturb("sign_flip", 2)
    flipped = set(order[:2].tolist())
    for c in range(4):
        assert np.array_equal(y[:, c], -X[:, c] if c in flipped else X[:, c])
    _, order = device_context("axis_swap", 4, 0)
    y = perturb("axis_swap", 1)
    a, b = order[:2]
    expect = X.copy()
    expect[:, [a, b]] = X[:, [b, a]]
    assert np.array_equal(y, expect)
    assert np.array_equal(perturb("axis_swap", 2)[:, order].reshape(-1, 2, 2)[:, :, ::-1],
                          X[:, order].reshape(-1, 2, 2))


@pytest.mark.parametrize("fraction", [0.05, 0.3])
def test_dropout_and_stuck_hit_exactly_the_fraction_in_bursts(fraction: float) -> None:
    rng = np.random.default_rng(1)
    mask = burst_mask(len(X), fraction, 5, rng)
    assert mask.sum() == round(fraction * len(X))
    starts = np.flatnonzero(np.diff(mask.astype(int)) == 1)
    assert 1 < len(starts) + mask[0] < mask.sum()  # several bursts, not single samples
    y = perturb("dropout", fraction)
    zero_rows = np.all(y == 0, axis=1)
    assert zero_rows.sum() == round(fraction * len(X))
    assert np.array_equal(y[~zero_rows], X[~zero_rows])
    y = perturb("stuck", fraction)
    held = np.all(y[1:] == y[:-1], axis=1)
    assert held.sum() >= round(fraction * len(X)) - 60  # bursts at the start hold sample 0
    changed = np.any(y != X, axis=1)
    assert changed.sum() <= round(fraction * len(X))


def test_jitter_moves_samples_by_the_requested_spread() -> None:
    t = np.arange(len(X))
    ramp = np.stack([t, 2 * t, -t, t], axis=1).astype(np.float32)  # linear: error = shift
    y = perturb("jitter", 0.3, ramp)
    shift = (y[1:-1, 0] - ramp[1:-1, 0])
    assert abs(shift.std() - 0.3) < 0.03


def test_identity_severities_leave_samples_unchanged_and_seeds_repeat() -> None:
    for p in PERTURBATIONS.values():
        if p.identity is not None:
            assert np.array_equal(perturb(p.name, p.identity), X), p.name
    assert np.array_equal(perturb("noise", 10.0, seed=3), perturb("noise", 10.0, seed=3))
    assert not np.array_equal(perturb("noise", 10.0, seed=3), perturb("noise", 10.0, seed=4))


def test_default_severities_are_valid_and_mild_to_severe() -> None:
    for p in PERTURBATIONS.values():
        sev = p.defaults_for(6)
        assert len(sev) >= 4, p.name
        for s in sev:
            p.check(s, 6)
        keys = [p.severity_key(s) for s in sev]
        assert keys == sorted(keys), p.name


def test_breaking_point_is_interpolated_from_the_previous_severity() -> None:
    gain = PERTURBATIONS["gain"]
    bp, interp = breaking_point(gain, [0, 10, 20], [0.9, 0.88, 0.8], 0.9, 5.0)
    assert interp and bp == pytest.approx(10 + 10 * (0.88 - 0.85) / (0.88 - 0.8))
    assert breaking_point(gain, [0, 10], [0.9, 0.87], 0.9, 5.0) == (None, False)
    noise = PERTURBATIONS["noise"]  # no finite identity: the first severity, as tried
    assert breaking_point(noise, [20, 10], [0.7, 0.6], 0.9, 5.0) == (20, False)
    flip = PERTURBATIONS["sign_flip"]  # whole axes: no interpolation
    assert breaking_point(flip, [0, 1, 2], [0.9, 0.86, 0.5], 0.9, 5.0) == (2, False)


# --- the command on the toy project ------------------------------------------------------


def metrics_of(toml: Path) -> dict:
    return json.loads((toml.parent / "out" / "metrics.json").read_text())


def test_stress_writes_metrics_and_report(toy_run: Path) -> None:
    result = run_cli("stress", str(toy_run), "--perturbations", "gain,noise,sign_flip",
                     "--copies", "1")
    assert result.exit_code == 0, result.stderr
    assert "breaking point" in result.stdout
    m = metrics_of(toy_run)
    for key in ("stress", "stress_augmented"):
        assert set(m[key]) == {"gain", "noise", "sign_flip"}
        for e in m[key].values():
            assert len(e["severities"]) == len(e["accuracy"]) >= 4
            assert "breaking_point" in e
    assert m["stress"]["gain"]["severities"][0] == 0.0
    # unperturbed = the run's held-out accuracy, exactly (same windows, same model)
    assert m["stress"]["gain"]["accuracy"][0] == m["evaluation"]["accuracy"]
    assert m["stress_info"]["baseline_accuracy"] == m["evaluation"]["accuracy"]
    assert "breaking_point_shift" in m["stress_augmented"]["gain"]
    html = (toy_run.parent / "out" / "report.html").read_text()
    assert "Stress: accuracy under sensor perturbations" in html

    # one perturbation again at chosen severities, no retraining: the others are kept
    result = run_cli("stress", str(toy_run), "--perturbations", "clipping", "--severities",
                     "0.2,1,0.5", "--no-augment")
    assert result.exit_code == 0, result.stderr
    m = metrics_of(toy_run)
    assert m["stress"]["clipping"]["severities"] == [1.0, 0.5, 0.2]  # mild to severe
    assert m["stress"]["clipping"]["accuracy"][0] == m["evaluation"]["accuracy"]
    assert {"gain", "noise", "sign_flip", "clipping"} <= set(m["stress"])
    assert "clipping" not in m.get("stress_augmented", {})


def test_severity_outside_the_range(toy_run: Path) -> None:
    before = (toy_run.parent / "out" / "metrics.json").read_bytes()
    line = assert_user_error(run_cli("stress", str(toy_run), "--perturbations", "dropout",
                                     "--severities", "0.1,1.5"),
                             "--severities", "dropout severity 1.5", "0 to 0.95 fraction")
    assert "outside its valid range" in line
    assert_user_error(run_cli("stress", str(toy_run), "--perturbations", "axis_swap",
                              "--severities", "2"), "whole numbers 0 to 1 axis pairs")
    assert (toy_run.parent / "out" / "metrics.json").read_bytes() == before


def test_unknown_perturbation(toy_run: Path) -> None:
    assert_user_error(run_cli("stress", str(toy_run), "--perturbations", "gain,jiter"),
                      "--perturbations", "unknown perturbation 'jiter'",
                      "did you mean 'jitter'?", "noise, gain, offset")


def test_project_not_run_yet(tmp_path: Path) -> None:
    toml = write_toy_project(tmp_path, seconds=2.0)
    assert_user_error(run_cli("stress", str(toml)), str(tmp_path / "out"),
                      "pipeline.json is missing", "run `kiloml run")
    assert not (tmp_path / "out").exists()
