"""Alarms with a false-alarm budget: ``[monitor] false_alarm_every = "30d"`` turned into
the monitor's limits, from held-out in-distribution streams, with the run length to a
false alarm estimated rather than guessed.

The rule (docs/architecture.md, "monitor calibration"):

1. The budget is device time at the inference rate: B = false_alarm_every / stride windows.
2. The per-window inputs of every alarm (the clipped z of the monitored features, the
   out-of-range share, the OOD score, top score, margin, entropy, the uncertain bit) are
   taken from the clean streams (one per held-out device) and resampled by a moving-block
   bootstrap, each synthetic stream from one device's stream: blocks of b
   windows, b the first lag at which every input's |autocorrelation| is below ACF_LIMIT
   (0.2: weakly dependent; the white-noise band 2/sqrt(N) is never reached by activity
   streams whose sample autocorrelation wanders), and at least 1 / (2 alpha) windows (the
   EWMA's memory), so the bootstrap keeps the dependence the monitor's sums measure.
3. R synthetic streams of L windows each run through a float64 replica of the monitor's
   statistics, from its boot state: the EWMA signals, the EWMA z variance, the two
   Page-Hinkley statistics (before their first firing, which is all the first alarm needs).
4. Each statistic's maximum over a stream is Gumbel-distributed (fitted by maximum
   likelihood); in Gumbel-reduced units y = (max - loc) / scale the alarm in a stream is
   max_j y_j > c for one common c, and the maximum of the y_j is fitted by a Gumbel of its
   own: that keeps the statistics' dependence. With P(no alarm in L windows) = exp(-L/ARL)
   (alarms far apart are close to a Poisson process), the mean run length to the first
   false alarm is ARL(c) = L exp((c - loc) / scale); c is set so that ARL(c) = SAFETY B
   (SAFETY = 2: measured, see below).
   Counting the boot transient in every stream of L windows makes the estimate cautious.
5. Uncertainty: the R stream maxima are resampled and refitted; the 5-95 % range of the
   estimated run length at the chosen limits is reported (``arl_interval_windows``).

Stuck-channel floors and the Page-Hinkley drift delta are not calibrated (a frozen sensor
is never in-distribution; delta is the smallest shift the detector is tuned for).

Too little data is an error that says how much is needed: at least MIN_BLOCKS blocks of b
windows, and a budget no longer than MAX_EXTRAPOLATION times the clean windows (beyond
that the Gumbel tail is an extrapolation the data cannot check).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.signal import lfilter

from kiloml.errors import KilomlError
from kiloml.monitor.config import MonitorParams, MonitorThresholds
from kiloml.monitor.harness import Stream
from kiloml.monitor.signals import confidence

F32 = np.float32
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_BLOCKS = 10          # distinct bootstrap blocks the clean streams must hold
ACF_LIMIT = 0.2          # the block: the first lag where every |autocorrelation| is below
BLOCK_LAGS = 1           # block length in decorrelation lags (3 made no difference)
# the limits are set for SAFETY x the budget: on the synthetic AR(1) check (tests/
# test_monitor_calibrate.py) the twin's simulated run length was 0.34-0.57 of the estimate
# made from 3,000 held-out windows (the bootstrap of a short sample gives the EWMA and
# Page-Hinkley maxima lighter tails than the process has; from 245,000 windows it did not)
SAFETY = 2.0
MAX_EXTRAPOLATION = 100  # budget windows per clean held-out window, at most
N_STREAMS = 200          # bootstrap streams R
MAX_STREAM = 4096        # their length L, at most
N_REFITS = 200           # refits of the maxima for the uncertainty
# the calibrated statistics: (name, limit it sets, side)
STATISTICS = (("z", "z_limit", "abs"), ("var_hi", "var_hi", "hi"), ("var_lo", "var_lo", "lo"),
              ("oor", "oor_limit", "hi"), ("ood", "ood_limit", "hi"),
              ("top", "top_limit", "lo"), ("margin", "margin_limit", "lo"),
              ("entropy", "entropy_limit", "hi"), ("uncertain", "uncertain_limit", "hi"),
              ("ph_ood", "ph_lambda[0]", "hi"), ("ph_top", "ph_lambda[1]", "hi"))


def parse_every(text: str, where: str = "false_alarm_every") -> float:
    """'30d', '12h', '90m', '45s' (a positive number and one unit) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise KilomlError(f"'{text}' is not a duration like '30d', '12h', '90m' or '45s' "
                          "(a positive number and one unit: s, m, h, d)", where=where)
    return float(m.group(1)) * UNITS[m.group(2)]


def budget_windows(every_s: float, stride_s: float) -> int:
    """The budget in windows at one inference per stride."""
    return max(1, round(every_s / stride_s))


def duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


# --- the per-window inputs and the statistics -------------------------------------


def window_inputs(p: MonitorParams, s: Stream) -> np.ndarray:
    """float64 [N, k + 6]: clipped z of the monitored features, out-of-range share, OOD
    score (the mean squared z, or a network's energy less the offset: Stream.ood), top
    score, margin, entropy, uncertain (what kml_monitor_update averages)."""
    x = np.asarray(s.features, np.float64)[:, p.index]
    with np.errstate(all="ignore"):
        z = (x - p.mean.astype(np.float64)) * p.inv_sd.astype(np.float64)
    clip = float(p.z_clip)
    z = np.where(np.isnan(z), clip, np.clip(z, -clip, clip))
    inside = (x >= p.lo) & (x <= p.hi)
    oor = 1.0 - inside.mean(axis=1)
    if p.energy:
        if s.ood is None:
            raise ValueError("this monitor's OOD input is the energy: the stream has none")
        x = (np.asarray(s.ood, F32) - F32(p.energy_offset)).astype(np.float64)
        ood = np.where(np.isnan(x), 1e30, np.clip(x, -1e30, 1e30))  # as update_ood
    else:
        ood = (z * z).mean(axis=1)
    inv = F32(1.0 / np.log2(p.n_classes))
    conf = np.array([confidence(np.asarray(row, F32), inv) for row in s.smoothed], np.float64)
    conf = conf.reshape(len(x), 3)
    unc = np.asarray(s.uncertain, np.float64)
    return np.column_stack([z, oor, ood, conf, unc])


def _ewma(x: np.ndarray, alpha: float, start: float) -> np.ndarray:
    """r_t = r_{t-1} + alpha (x_t - r_{t-1}) along the last axis, r_0 = start."""
    zi = np.full((*x.shape[:-1], 1), (1.0 - alpha) * start)
    return lfilter([alpha], [1.0, alpha - 1.0], x, axis=-1, zi=zi)[0]


def _page_hinkley_max(x: np.ndarray, delta: float, cap: int, min_windows: int) -> np.ndarray:
    """max over the stream of max(g+, g-) (only from min_windows on), the detector
    running from boot without firing: g = S_t - min_{s<=t} S_s (the Lindley form)."""
    n = x.shape[-1]
    t = np.arange(1, n + 1)
    head = min(n, cap)
    mean = np.empty_like(x)
    mean[..., :head] = np.cumsum(x[..., :head], axis=-1) / t[:head]
    if n > cap:
        # then an EWMA of 1/cap from the plain mean of the first cap windows
        zi = (1.0 - 1.0 / cap) * mean[..., cap - 1:cap]
        mean[..., cap:] = lfilter([1.0 / cap], [1.0, 1.0 / cap - 1.0], x[..., cap:],
                                  axis=-1, zi=zi)[0]
    dev = x - mean
    best = np.zeros(x.shape[:-1])
    for sign in (1.0, -1.0):
        s = np.cumsum(sign * dev - delta, axis=-1)
        g = s - np.minimum(np.minimum.accumulate(s, axis=-1), 0.0)
        best = np.maximum(best, g[..., min_windows - 1:].max(axis=-1, initial=0.0))
    return best


def stream_maxima(p: MonitorParams, u: np.ndarray) -> np.ndarray:
    """u [R, L, k + 6] inputs -> [R, len(STATISTICS)] maxima (lower limits negated)."""
    k, a = p.n_monitored, float(p.alpha)
    z = np.moveaxis(u[..., :k], -1, 1)  # [R, k, L]
    zm = _ewma(z, a, 0.0)
    prev = np.concatenate([np.zeros((*zm.shape[:-1], 1)), zm[..., :-1]], axis=-1)
    d2 = (z - prev) ** 2
    zv = _zvar(d2, a)
    run = [_ewma(u[..., k + j], a, float(v)) for j, v in enumerate(p.constants()["run_init"])]
    t = p.thresholds
    ph = [_page_hinkley_max(u[..., k + 1 + j], float(t.ph_delta[j]), p.ph_cap,
                            p.ph_min_windows) for j in range(2)]
    cols = [np.abs(zm).max(axis=(1, 2)), zv.max(axis=(1, 2)), (-zv).max(axis=(1, 2)),
            run[0].max(-1), run[1].max(-1), (-run[2]).max(-1), (-run[3]).max(-1),
            run[4].max(-1), run[5].max(-1), ph[0], ph[1]]
    return np.column_stack(cols)


def _zvar(d2: np.ndarray, a: float) -> np.ndarray:
    """v_t = (1 - a) (v_{t-1} + a d_t^2), v_0 = 1 (kml_monitor's z variance)."""
    zi = np.full((*d2.shape[:-1], 1), (1.0 - a) * 1.0)
    return lfilter([(1.0 - a) * a], [1.0, a - 1.0], d2, axis=-1, zi=zi)[0]


# --- block length, bootstrap, fit ---------------------------------------------------


def block_length(inputs: list[np.ndarray], max_lag: int) -> int | None:
    """The first lag at which every input's |autocorrelation| is below ACF_LIMIT (pooled
    over the streams); None if none is up to max_lag."""
    x = np.concatenate(inputs)
    band = ACF_LIMIT
    xc = x - x.mean(axis=0)
    var = (xc * xc).sum(axis=0)
    live = var > 0
    if not live.any():
        return 1
    xc, var = xc[:, live], var[live]
    for lag in range(1, max_lag + 1):
        acf = (xc[:-lag] * xc[lag:]).sum(axis=0) / var
        if np.all(np.abs(acf) < band):
            return lag
    return None


def bootstrap(inputs: list[np.ndarray], b: int, n_streams: int, length: int,
              rng: np.random.Generator) -> np.ndarray:
    """[R, L, S]: moving blocks of b windows. Each synthetic stream is one device: its
    blocks all come from one clean stream, drawn with probability in proportion to its
    block starts (blocks mixed across devices would average a device that differs from
    the rest into the others, and its alarms would be missed by the estimate)."""
    starts, offset = [], 0
    for u in inputs:
        if len(u) >= b:
            starts.append(offset + np.arange(len(u) - b + 1))
        offset += len(u)
    data = np.concatenate(inputs)
    sizes = np.array([len(s) for s in starts], np.float64)
    device = rng.choice(len(starts), size=n_streams, p=sizes / sizes.sum())
    n_blocks = -(-length // b)
    first = np.empty((n_streams, n_blocks), np.int64)
    for d, pool in enumerate(starts):
        rows = np.flatnonzero(device == d)
        first[rows] = pool[rng.integers(len(pool), size=(len(rows), n_blocks))]
    rows = (first[..., None] + np.arange(b)).reshape(n_streams, -1)[:, :length]
    return data[rows]


def gumbel_fit(m: np.ndarray) -> tuple[float, float]:
    """(loc, scale) by maximum likelihood; scale 0 for a constant sample."""
    if np.ptp(m) <= 1e-12 * max(1.0, float(np.abs(m).max())):
        return float(m.max()), 0.0
    loc, scale = stats.gumbel_r.fit(m)
    return float(loc), float(scale)


@dataclass
class Calibration:
    params: MonitorParams        # the fitted monitor with the calibrated limits
    budget_windows: int
    report: dict


def calibrate(p: MonitorParams, streams: list[Stream], every: str, stride_s: float, *,
              seed: int = 0, n_streams: int = N_STREAMS, where: str = "false_alarm_every"
              ) -> Calibration:
    """The monitor ``p`` with limits whose estimated mean run length to a false alarm on
    streams like ``streams`` (clean, held out) is ``every`` of device time."""
    every_s = parse_every(every, where)
    budget = budget_windows(every_s, stride_s)
    inputs = [window_inputs(p, s) for s in streams if len(s.features)]
    n = sum(len(u) for u in inputs)
    have = f"{n} clean held-out windows ({duration_text(n * stride_s)})"
    need_budget = -(-budget // MAX_EXTRAPOLATION)
    if n < 2 * MIN_BLOCKS:
        raise KilomlError(f"'{every}' cannot be calibrated on {have}: needs at least "
                          f"{max(2 * MIN_BLOCKS, need_budget)} windows", where=where)
    # the budget first: it says how much data to record whatever the block comes to
    if budget > MAX_EXTRAPOLATION * n:
        raise KilomlError(
            f"'{every}' ({budget} windows at {stride_s:g} s) cannot be calibrated on {have}: "
            f"the estimate extrapolates at most {MAX_EXTRAPOLATION}x the clean data, so it "
            f"needs at least {need_budget} windows ({duration_text(need_budget * stride_s)}) "
            "of in-distribution held-out streams", where=where)
    lag = block_length(inputs, n // (MIN_BLOCKS * BLOCK_LAGS))
    # at least half the EWMA's time constant: shorter blocks cut the dependence that the
    # EWMA and Page-Hinkley sums measure (blocks of 4 windows made their maxima 20-30 %
    # too small on an AR(1) stream even from 245,000 windows)
    b = None if lag is None else max(BLOCK_LAGS * lag, math.ceil(0.5 / float(p.alpha)))
    if b is None:
        raise KilomlError(
            f"'{every}' cannot be calibrated on {have}: the signals are still correlated "
            f"at lag {n // MIN_BLOCKS}, and {MIN_BLOCKS} independent blocks need more than "
            f"{n} windows ({duration_text(n * stride_s)}); record longer clean streams",
            where=where)
    if n // b < MIN_BLOCKS:
        raise KilomlError(
            f"'{every}' cannot be calibrated on {have}: {MIN_BLOCKS} bootstrap blocks of "
            f"{b} windows need at least {MIN_BLOCKS * b} windows "
            f"({duration_text(MIN_BLOCKS * b * stride_s)})", where=where)
    if max((len(u) for u in inputs), default=0) < b:
        raise KilomlError(f"'{every}' cannot be calibrated: every clean stream is shorter "
                          f"than the {b}-window bootstrap block", where=where)
    length = int(max(MAX_STREAM, 16 * b))
    rng = np.random.default_rng(seed)
    u = bootstrap(inputs, b, n_streams, length, rng)
    maxima = stream_maxima(p, u)
    fits = [gumbel_fit(maxima[:, j]) for j in range(len(STATISTICS))]
    live = [j for j, (_, s) in enumerate(fits) if s > 0]

    # each stream's largest Gumbel-reduced maximum: the alarm in a stream is y > c
    y = np.column_stack([(maxima[:, j] - fits[j][0]) / fits[j][1] for j in live]
                        ).max(axis=1) if live else np.zeros(len(maxima))
    loc_y, scale_y = gumbel_fit(y)
    # ARL(c) = L exp((c - loc_y) / scale_y) = SAFETY x budget
    target = SAFETY * budget
    c = loc_y + scale_y * math.log(target / length) if scale_y > 0 else loc_y
    limits = {}
    for j, (name, _, _) in enumerate(STATISTICS):
        lo, s = fits[j]
        limits[name] = lo + s * c if s > 0 else lo  # constant: its largest value
    refits = []  # the run length at c with the maxima resampled (the tail fit's spread)
    for _ in range(N_REFITS):
        ly, sy = gumbel_fit(y[rng.integers(len(y), size=len(y))])
        refits.append(length * math.exp((c - ly) / sy) if sy > 0 else math.inf)
    arl_lo, arl_hi = (float(v) for v in np.quantile(refits, [0.05, 0.95]))
    thresholds = _thresholds(p.thresholds, limits, every, budget)
    report = {
        "false_alarm_every": every, "false_alarm_every_s": every_s,
        "budget_windows": budget, "stride_s": stride_s,
        "clean_windows": n, "clean_streams": len(inputs), "block_windows": b,
        "bootstrap_streams": n_streams, "stream_windows": length,
        "gumbel": {STATISTICS[j][0]: {"loc": fits[j][0], "scale": fits[j][1]}
                   for j in range(len(STATISTICS))},
        "not_calibrated_constant": [STATISTICS[j][0] for j in range(len(STATISTICS))
                                    if j not in live],
        "reduced_limit": c, "safety": SAFETY, "arl_estimate_windows": target,
        "arl_interval_windows": [arl_lo, arl_hi],
        "arl_interval_s": [arl_lo * stride_s, arl_hi * stride_s],
        "limits": {k: v for k, v in dataclasses.asdict(thresholds).items()
                   if k not in ("source", "ph_delta")},
        "rule": "block bootstrap + Gumbel maxima, one reduced limit; ARL = SAFETY x budget"}
    return Calibration(dataclasses.replace(p, thresholds=thresholds), budget, report)


def _thresholds(old: MonitorThresholds, lim: dict, every: str, budget: int
                ) -> MonitorThresholds:
    big = float(np.finfo(F32).max) / 2  # a limit no signal reaches stays finite for C
    lo = {k: max(-big, -v) for k, v in lim.items()}
    hi = {k: min(big, v) for k, v in lim.items()}
    return dataclasses.replace(
        old, z_limit=hi["z"], var_hi=hi["var_hi"], var_lo=lo["var_lo"],
        oor_limit=hi["oor"], ood_limit=hi["ood"], top_limit=lo["top"],
        margin_limit=lo["margin"], entropy_limit=hi["entropy"],
        uncertain_limit=hi["uncertain"], ph_lambda=(hi["ph_ood"], hi["ph_top"]),
        source=f"calibrated: estimated mean run length to a false alarm {every} "
               f"({budget} windows) on held-out clean streams (block bootstrap, Gumbel)")
