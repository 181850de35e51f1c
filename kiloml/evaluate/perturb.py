"""Sensor perturbations for stress tests: what a deployed sensor does to the samples.

Each perturbation maps samples [T, C] (float32) and a severity to new samples. The
severity has a unit, a valid range (``Perturbation.valid_range``; anything outside is a
user error) and a default list ordered from mild to severe. Scales that depend on the
data (a channel's std or range) come from a ``ChannelScale`` measured once on the clean
reference recordings, so a given severity means the same thing for every recording.

Everything random is drawn from ``numpy.random.default_rng`` seeded by (seed, the
perturbation's name, the recording's index): the same call gives the same samples, and
the same recording sees the same noise pattern at every severity (only its size
changes), which keeps accuracy-against-severity curves free of resampling noise.
Per-channel choices (drift signs, which axes swap or flip) depend on the seed and the
perturbation only: a drifting or remounted sensor is one device, the same in every
recording.
"""

from __future__ import annotations

import difflib
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import resample_poly

from kiloml.data.recording import Recording
from kiloml.errors import KilomlError

F32 = np.float32
DROPOUT_BURST_S = 0.1  # mean length of a dropout / stuck-at burst


@dataclass(frozen=True)
class ChannelScale:
    """Per-channel statistics of the clean data that severities are expressed in."""

    std: np.ndarray  # [C] standard deviation (offset, ramp)
    low: np.ndarray  # [C] minimum (clipping range)
    high: np.ndarray  # [C] maximum

    @classmethod
    def of(cls, recordings: list[Recording]) -> ChannelScale:
        return cls.of_samples(np.concatenate([r.samples for r in recordings]))

    @classmethod
    def of_samples(cls, samples: np.ndarray) -> ChannelScale:
        x = np.asarray(samples, dtype=np.float64)
        std = x.std(axis=0)
        return cls(std=np.where(std > 0, std, 1.0), low=x.min(axis=0), high=x.max(axis=0))


@dataclass(frozen=True)
class Context:
    rng: np.random.Generator  # per recording
    signs: np.ndarray  # [C] of +-1: per-channel direction of drifts (per device)
    order: np.ndarray  # [C] channel permutation: which axes swap or flip first
    scale: ChannelScale
    sample_rate_hz: float


Apply = Callable[[np.ndarray, float, Context], np.ndarray]


@dataclass(frozen=True)
class Perturbation:
    name: str
    unit: str
    description: str
    low: float
    high: float | None  # None: the number of channels (axis swap: half of it)
    defaults: tuple[float, ...]  # mild -> severe
    identity: float | None  # the severity that leaves samples unchanged (None: none finite)
    apply: Apply
    lower_is_worse: bool = False  # noise SNR, clipping fraction
    discrete: bool = False  # whole numbers of axes: no interpolation between them
    changes_length: bool = False

    def valid_range(self, n_channels: int) -> tuple[float, float]:
        if self.high is not None:
            return self.low, self.high
        return self.low, float(n_channels // 2 if self.name == "axis_swap" else n_channels)

    def range_text(self, n_channels: int) -> str:
        lo, hi = self.valid_range(n_channels)
        kind = "whole numbers " if self.discrete else ""
        return f"{kind}{lo:g} to {hi:g} {self.unit}"

    def defaults_for(self, n_channels: int) -> list[float]:
        lo, hi = self.valid_range(n_channels)
        return [s for s in self.defaults if lo <= s <= hi]

    def severity_key(self, severity: float) -> float:
        """Larger = more severe (sorts severities from mild to severe)."""
        if self.identity is None:
            return -severity if self.lower_is_worse else severity
        return abs(severity - self.identity)

    def check(self, severity: float, n_channels: int, where: str = "--severities") -> float:
        lo, hi = self.valid_range(n_channels)
        ok = math.isfinite(severity) and lo <= severity <= hi
        if ok and self.discrete and severity != int(severity):
            ok = False
        if not ok:
            raise KilomlError(f"{self.name} severity {severity:g} is outside its valid range "
                              f"({self.range_text(n_channels)})", where=where)
        return float(severity)


# --- the perturbations ------------------------------------------------------------


def _noise(x: np.ndarray, snr_db: float, ctx: Context) -> np.ndarray:
    # Signal power is each channel's variance, not its mean square: a constant offset
    # (gravity on one accelerometer axis) would otherwise set the noise on that axis.
    power = x.var(axis=0)
    noise_std = np.sqrt(power * 10.0 ** (-snr_db / 10.0))
    return x + ctx.rng.standard_normal(x.shape) * noise_std


def _gain(x: np.ndarray, percent: float, ctx: Context) -> np.ndarray:
    return x * (1.0 + ctx.signs * percent / 100.0)


def _offset(x: np.ndarray, stds: float, ctx: Context) -> np.ndarray:
    return x + ctx.signs * stds * ctx.scale.std


def _ramp(x: np.ndarray, stds: float, ctx: Context) -> np.ndarray:
    # from 0 at the first sample to the full amplitude at the last: a slow baseline wander
    ramp = np.linspace(0.0, 1.0, len(x))[:, None]
    return x + ramp * (ctx.signs * stds * ctx.scale.std)


def burst_mask(n_samples: int, fraction: float, mean_burst: int,
               rng: np.random.Generator) -> np.ndarray:
    """bool [T] with exactly round(fraction x T) True samples in bursts of random length
    (mean ``mean_burst``) at random places, none touching another."""
    n_bad = round(fraction * n_samples)
    mask = np.zeros(n_samples, dtype=bool)
    if n_bad == 0:
        return mask
    n_good = n_samples - n_bad
    k = max(1, min(round(n_bad / mean_burst), n_bad, n_good + 1))
    # burst lengths: a random composition of n_bad into k positive parts
    cuts = np.sort(rng.choice(np.arange(1, n_bad), size=k - 1, replace=False)) if k > 1 \
        else np.zeros(0, dtype=int)
    lengths = np.diff(np.concatenate([[0], cuts, [n_bad]]))
    # gaps: k + 1 parts of n_good, the k - 1 inner ones at least 1 so bursts stay apart
    spare = n_good - (k - 1)
    bars = np.sort(rng.choice(spare + k, size=k, replace=False))
    gaps = np.diff(np.concatenate([[-1], bars, [spare + k]])) - 1
    gaps[1:-1] += 1
    pos = 0
    for gap, length in zip(gaps[:-1], lengths, strict=True):
        pos += int(gap)
        mask[pos:pos + int(length)] = True
        pos += int(length)
    return mask


def _mean_burst(ctx: Context) -> int:
    return max(1, round(DROPOUT_BURST_S * ctx.sample_rate_hz))


def _dropout(x: np.ndarray, fraction: float, ctx: Context) -> np.ndarray:
    out = x.copy()
    out[burst_mask(len(x), fraction, _mean_burst(ctx), ctx.rng)] = 0.0
    return out


def _stuck(x: np.ndarray, fraction: float, ctx: Context) -> np.ndarray:
    mask = burst_mask(len(x), fraction, _mean_burst(ctx), ctx.rng)
    # each stuck sample repeats the last good one (a burst at the start repeats sample 0)
    index = np.where(mask, 0, np.arange(len(x)))
    return x[np.maximum.accumulate(index)]


def _clip(x: np.ndarray, fraction: float, ctx: Context) -> np.ndarray:
    centre = (ctx.scale.high + ctx.scale.low) / 2.0
    half = (ctx.scale.high - ctx.scale.low) / 2.0 * fraction
    return np.clip(x, centre - half, centre + half)


def rate_ratio(percent: float) -> Fraction:
    """Samples out per sample in: the sensor samples (1 + percent/100) x as fast as the
    firmware assumes (a close rational, for polyphase resampling)."""
    return Fraction(1.0 + percent / 100.0).limit_denominator(1000)


def _rate(x: np.ndarray, percent: float, ctx: Context) -> np.ndarray:
    r = rate_ratio(percent)
    if r == 1:
        return x.copy()
    # padtype="line": extrapolate linearly at the ends instead of zeros, so the first and
    # last samples of a recording (a gravity offset) do not sag towards zero
    return resample_poly(x, r.numerator, r.denominator, axis=0, padtype="line")


def _jitter(x: np.ndarray, periods: float, ctx: Context) -> np.ndarray:
    if periods == 0 or len(x) < 2:
        return x.copy()
    n = np.arange(len(x), dtype=np.float64)
    # the sample was taken at n + e (e ~ N(0, periods)), the firmware thinks at n
    t = np.clip(n + periods * ctx.rng.standard_normal(len(x)), 0.0, n[-1])
    return CubicSpline(n, x, axis=0)(t)


def _axis_swap(x: np.ndarray, pairs: float, ctx: Context) -> np.ndarray:
    out = x.copy()
    for p in range(int(pairs)):
        a, b = ctx.order[2 * p], ctx.order[2 * p + 1]
        out[:, [a, b]] = x[:, [b, a]]
    return out


def _sign_flip(x: np.ndarray, axes: float, ctx: Context) -> np.ndarray:
    out = x.copy()
    flip = ctx.order[:int(axes)]
    out[:, flip] = -x[:, flip]
    return out


PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in [
    Perturbation("noise", "dB SNR", "white Gaussian noise; SNR against each channel's variance",
                 -20.0, 100.0, (40, 30, 20, 15, 10, 5, 0, -5), None, _noise,
                 lower_is_worse=True),
    Perturbation("gain", "%", "each channel's gain off by the severity, up or down (the "
                 "direction per channel from the seed)",
                 0.0, 90.0, (0, 5, 10, 20, 30, 50, 75), 0.0, _gain),
    Perturbation("offset", "channel stds", "a constant offset on each channel, up or down",
                 0.0, 20.0, (0, 0.1, 0.25, 0.5, 1, 2, 4), 0.0, _offset),
    Perturbation("ramp", "channel stds", "a baseline drifting linearly from 0 at the start "
                 "of each recording to the severity at its end",
                 0.0, 20.0, (0, 0.25, 0.5, 1, 2, 4, 8), 0.0, _ramp),
    Perturbation("dropout", "fraction", "samples of every channel zeroed in bursts "
                 f"(mean {DROPOUT_BURST_S:g} s)",
                 0.0, 0.95, (0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4), 0.0, _dropout),
    Perturbation("stuck", "fraction", "samples holding the last good value in bursts "
                 f"(mean {DROPOUT_BURST_S:g} s)",
                 0.0, 0.95, (0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6), 0.0, _stuck),
    Perturbation("clipping", "fraction of range", "each channel clipped to this fraction of "
                 "its range (about the range's centre)",
                 0.01, 1.0, (1.0, 0.9, 0.75, 0.6, 0.5, 0.35, 0.25, 0.1), 1.0, _clip,
                 lower_is_worse=True),
    Perturbation("rate_mismatch", "%", "the sensor samples this much faster (negative: "
                 "slower) than the firmware assumes (polyphase resampling)",
                 -50.0, 50.0, (0, 1, 2, 5, 10, 20, 30), 0.0, _rate, changes_length=True),
    Perturbation("axis_swap", "axis pairs", "pairs of channels swapped (sensor mounted "
                 "differently; the pairs from the seed)",
                 0.0, None, (0, 1, 2, 3, 4), 0.0, _axis_swap, discrete=True),
    Perturbation("sign_flip", "axes", "channels with their sign flipped (sensor mounted "
                 "upside down; the axes from the seed)",
                 0.0, None, (0, 1, 2, 3, 4, 5, 6, 8), 0.0, _sign_flip, discrete=True),
    Perturbation("jitter", "sample periods", "sample times jittered (Gaussian, this std), "
                 "values interpolated with a cubic spline",
                 0.0, 2.0, (0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0), 0.0, _jitter),
]}


def get_perturbation(name: str, where: str = "--perturbations") -> Perturbation:
    if name in PERTURBATIONS:
        return PERTURBATIONS[name]
    close = difflib.get_close_matches(name, list(PERTURBATIONS), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise KilomlError(f"unknown perturbation '{name}'; {hint}known: "
                      f"{', '.join(PERTURBATIONS)}", where=where)


def _seed(seed: int, name: str, *more: int) -> list[int]:
    return [seed, zlib.crc32(name.encode()), *more]


def device_context(name: str, n_channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(signs, channel order) of one perturbed device."""
    rng = np.random.default_rng(_seed(seed, name))
    return rng.choice([-1.0, 1.0], size=n_channels), rng.permutation(n_channels)


def perturb_samples(samples: np.ndarray, name: str, severity: float, scale: ChannelScale,
                    sample_rate_hz: float, *, seed: int = 0, index: int = 0) -> np.ndarray:
    """samples [T, C] -> perturbed float32 samples (length changed only by rate_mismatch).
    ``index`` tells recordings apart (their random patterns differ)."""
    p = get_perturbation(name)
    x = np.asarray(samples, dtype=np.float64)
    p.check(severity, x.shape[1])
    signs, order = device_context(name, x.shape[1], seed)
    ctx = Context(np.random.default_rng(_seed(seed, name, 1, index)), signs, order, scale,
                  sample_rate_hz)
    return p.apply(x, float(severity), ctx).astype(F32)


def perturb_recording(rec: Recording, name: str, severity: float, scale: ChannelScale, *,
                      seed: int = 0, index: int = 0) -> Recording:
    x = perturb_samples(rec.samples, name, severity, scale, rec.sample_rate_hz,
                        seed=seed, index=index)
    labels = rec.sample_labels
    if labels is not None and len(x) != len(labels):
        # per-sample labels follow the resampled time axis (nearest earlier sample)
        labels = labels[np.minimum(np.arange(len(x)) * len(labels) // len(x),
                                   len(labels) - 1)]
    return Recording(samples=x, sample_rate_hz=rec.sample_rate_hz, channels=list(rec.channels),
                     group=rec.group, source=f"{rec.source}#{name}={severity:g}",
                     label=rec.label, sample_labels=labels, augmented=rec.augmented)


def affected_channels(name: str, severity: float, channels: list[str], seed: int) -> list:
    """Which channels an axis swap (pairs) or sign flip (names) touches at this severity."""
    _, order = device_context(name, len(channels), seed)
    if name == "axis_swap":
        return [[channels[order[2 * p]], channels[order[2 * p + 1]]]
                for p in range(int(severity))]
    if name == "sign_flip":
        return [channels[i] for i in order[:int(severity)]]
    return []
