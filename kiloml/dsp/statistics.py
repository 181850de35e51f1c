"""Per-channel window statistics: the Python reference for ``kml_statistics``.

Every value is computed with the float32 operations the C kernel performs, in
the same order (sequential sums over time, the mean from sums of x - x[0], two
passes for central moments), so
Python and C agree bit for bit, which is what makes tree decisions identical.
"""

from __future__ import annotations

import numpy as np

from kiloml.project import STATISTICS
from kiloml.stage import CStage, EmitContext, FeatureStage, StageCost
from kiloml.targets.profiles import TargetProfile

F32 = np.float32
_FLT_MIN = np.finfo(np.float32).tiny


def window_statistics(x: np.ndarray) -> np.ndarray:
    """All statistics of windows x [N, T, C] as float32 [N, C, len(STATISTICS)]."""
    x = np.ascontiguousarray(x, dtype=F32)
    n_windows, rows, channels = x.shape
    n = F32(rows)
    first = x[:, 0, :].copy()
    shifted_total = np.zeros((n_windows, channels), F32)
    total_sq = np.zeros_like(shifted_total)
    lo = first.copy()
    hi = first.copy()
    for t in range(rows):
        v = x[:, t, :]
        shifted_total += v - first
        total_sq += v * v
        lo = np.where(v < lo, v, lo)
        hi = np.where(v > hi, v, hi)
    # Summing x - x[0] keeps a constant channel's mean exact (a float32 sum of 9.81
    # repeated is not 9.81 * n) and loses less to a large offset such as 1 g.
    mean = first + shifted_total / n
    s2 = np.zeros_like(shifted_total)
    s3 = np.zeros_like(shifted_total)
    s4 = np.zeros_like(shifted_total)
    zero_crossings = np.zeros((n_windows, channels), np.int64)
    mean_crossings = np.zeros_like(zero_crossings)
    prev_x = prev_d = None
    for t in range(rows):
        v = x[:, t, :]
        d = v - mean
        d2 = d * d
        s2 += d2
        s3 += d2 * d
        s4 += d2 * d2
        if prev_x is not None:
            zero_crossings += (v >= 0) != (prev_x >= 0)
            mean_crossings += (d >= 0) != (prev_d >= 0)
        prev_x, prev_d = v, d
    m2, m3, m4 = s2 / n, s3 / n, s4 / n
    std = np.sqrt(m2)
    out = np.empty((n_windows, channels, len(STATISTICS)), F32)
    out[..., 0] = mean
    out[..., 1] = std
    out[..., 2] = lo
    out[..., 3] = hi
    out[..., 4] = np.sqrt(total_sq / n)
    out[..., 5] = hi - lo
    steps = F32(rows - 1)
    out[..., 6] = zero_crossings.astype(F32) / steps if rows > 1 else F32(0)
    out[..., 7] = mean_crossings.astype(F32) / steps if rows > 1 else F32(0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        den = m2 * std
        out[..., 8] = np.where(den >= _FLT_MIN, m3 / den, F32(0))
        den = m2 * m2
        out[..., 9] = np.where(den >= _FLT_MIN, m4 / den - F32(3), F32(0))
    return out


class Statistics(FeatureStage):
    """Mean, std, min, max, RMS, peak-to-peak, zero/mean-crossing rate, skewness and
    (excess) kurtosis of every channel over the window."""

    kind = "statistics"
    reads = "window"

    def __init__(self, statistics: list[str] | None = None) -> None:
        chosen = list(statistics or STATISTICS)
        self.statistics = [s for s in STATISTICS if s in chosen]  # canonical order
        self.index = [STATISTICS.index(s) for s in self.statistics]

    @property
    def mask(self) -> int:
        return sum(1 << i for i in self.index)

    def transform(self, x: np.ndarray) -> np.ndarray:
        stats = window_statistics(x)[:, :, self.index]
        return stats.reshape(stats.shape[0], -1)

    def feature_names(self, input_names: list[str]) -> list[str]:
        return [f"{c}.{s}" for c in input_names for s in self.statistics]

    def emit_c(self, ctx: EmitContext) -> CStage:
        flags = " | ".join(f"KML_STAT_{s.upper()}" for s in self.statistics)
        call = (f"kml_statistics({ctx.window}, {ctx.window_rows}, {ctx.channels}, "
                f"{ctx.start_row}, {flags}, {ctx.output});")
        return CStage(runtime=["kml_statistics"], call=call)

    def cost(self, profile: TargetProfile, window_rows: int, channels: int) -> StageCost:
        # Two passes over the window, ~10 and ~14 instructions per sample with an
        # FPU; software floats cost roughly 8x more. Calibrated in issue 8.
        per_sample = 24 if profile.has_fpu else 24 * 8
        return StageCost(flash_bytes=600 if profile.has_fpu else 1400,
                         ram_bytes=4 * len(self.statistics) * channels,
                         instructions=per_sample * window_rows * channels + 80 * channels)
