"""The monitor's per-window arithmetic, float32 in the order of kml_monitor.c."""

from __future__ import annotations

import numpy as np

F32 = np.float32
F32_MIN = F32(1.17549435e-38)  # FLT_MIN: smaller scores count as 0 in the entropy
# log2(1 + f) on [0, 1), degree 5, no constant term (exact at powers of two)
LOG2_POLY = (F32(0.045885526), F32(-0.19442268), F32(0.41542196), F32(-0.7086821),
             F32(1.4418257))


def clamp(v: np.float32, lo: np.float32, hi: np.float32) -> np.float32:
    """kml_mon_clamp: NaN goes to lo."""
    if not v >= lo:
        return lo
    return hi if v > hi else v


def log2(x: np.float32) -> np.float32:
    """kml_mon_log2 for a normal positive float32: exponent + polynomial of the fraction."""
    bits = int(np.array(x, F32).view(np.uint32))
    e = ((bits >> 23) & 0xFF) - 127
    f = np.array((bits & 0x007FFFFF) | 0x3F800000, np.uint32).view(F32)[()]
    f = F32(f - F32(1.0))
    poly = LOG2_POLY[0]
    for c in LOG2_POLY[1:]:
        poly = F32(F32(poly * f) + c)
    poly = F32(poly * f)
    return F32(F32(e) + poly)


def log2_many(x: np.ndarray) -> np.ndarray:
    """log2 element-wise (float32 arrays), the same operations."""
    bits = np.asarray(x, F32).view(np.uint32)
    e = ((bits >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int32) - np.int32(127)
    f = ((bits & np.uint32(0x007FFFFF)) | np.uint32(0x3F800000)).view(F32)
    f = (f - F32(1.0)).astype(F32)
    poly = np.full(f.shape, LOG2_POLY[0], F32)
    for c in LOG2_POLY[1:]:
        poly = ((poly * f).astype(F32) + c).astype(F32)
    poly = (poly * f).astype(F32)
    return (e.astype(F32) + poly).astype(F32)


def ewma(alpha: np.float32, run: np.float32, x: np.float32) -> np.float32:
    return F32(run + F32(alpha * F32(x - run)))


def confidence(smoothed: np.ndarray, inv_log2_classes: np.float32
               ) -> tuple[np.float32, np.float32, np.float32]:
    """Top score, margin over the second and normalized entropy, each clamped to [0, 1]."""
    k = len(smoothed)
    best = 0
    for c in range(1, k):
        if smoothed[c] > smoothed[best]:
            best = c
    second = F32(-1.0)
    for c in range(k):
        if c != best and smoothed[c] > second:
            second = smoothed[c]
    zero, one = F32(0.0), F32(1.0)
    top = clamp(smoothed[best], zero, one)
    margin = clamp(F32(top - clamp(second, zero, one)), zero, one)
    ent = F32(0.0)
    for c in range(k):
        q = smoothed[c]
        if q >= F32_MIN:
            ent = F32(ent - F32(q * log2(q)))
    return top, margin, clamp(F32(ent * inv_log2_classes), zero, one)


def channel_variance(window: np.ndarray, start_row: int = 0) -> np.ndarray:
    """kml_monitor_channel_variance: a window (samples x channels; a ring of rows whose
    oldest is ``start_row``) -> float32 [channels]: the mean in time order, then the mean
    of squared deviations."""
    w = np.roll(np.asarray(window, F32), -start_row, axis=0)
    n = F32(w.shape[0])
    out = np.zeros(w.shape[1], F32)
    for c in range(w.shape[1]):
        col = w[:, c]
        s = F32(0.0)
        for v in col:
            s = F32(s + v)
        mean = F32(s / n)
        acc = F32(0.0)
        for v in col:
            d = F32(v - mean)
            acc = F32(acc + F32(d * d))
        out[c] = F32(acc / n)
    return out


def channel_variances(windows: np.ndarray) -> np.ndarray:
    """channel_variance of many plain windows at once [N, samples, channels] -> [N, channels],
    bit for bit: np.cumsum adds strictly in order (np.sum would add pairwise)."""
    w = np.asarray(windows, F32)
    n = F32(w.shape[1])
    mean = (np.cumsum(w, axis=1, dtype=F32)[:, -1, :] / n).astype(F32)
    d = (w - mean[:, None, :]).astype(F32)
    return (np.cumsum((d * d).astype(F32), axis=1, dtype=F32)[:, -1, :] / n).astype(F32)


def channel_moments(window: np.ndarray, start_row: int = 0) -> np.ndarray:
    """kml_monitor_channel_moments: float32 [2 x channels], the means then the variances
    (channel_variance's passes, the mean kept)."""
    w = np.roll(np.asarray(window, F32), -start_row, axis=0)
    n = F32(w.shape[0])
    mean = np.zeros(w.shape[1], F32)
    for c in range(w.shape[1]):
        acc = F32(0.0)
        for v in w[:, c]:
            acc = F32(acc + v)
        mean[c] = F32(acc / n)
    return np.concatenate([mean, channel_variance(window, start_row)])


def channel_moments_many(windows: np.ndarray) -> np.ndarray:
    """channel_moments of many plain windows [N, samples, channels] -> [N, 2 x channels],
    bit for bit (np.cumsum adds in order)."""
    w = np.asarray(windows, F32)
    n = F32(w.shape[1])
    mean = (np.cumsum(w, axis=1, dtype=F32)[:, -1, :] / n).astype(F32)
    return np.concatenate([mean, channel_variances(w)], axis=1)
