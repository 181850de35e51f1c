"""``kml_logf`` and ``kml_expf`` in numpy: the same float32 operations in the same order,
so features that take logarithms (log energies, entropy, MFCC) agree bit for bit
between Python and C on every platform."""

from __future__ import annotations

import numpy as np

F32 = np.float32
FLT_MIN = np.finfo(F32).tiny
FLT_MAX = np.finfo(F32).max
SQRT2_DOWN = F32(1.41421353816986083984375)

LN2_HI_LOG, LN2_LO_LOG = F32(6.9313812256e-01), F32(9.0580006145e-06)
LG1, LG2, LG3, LG4 = (F32(6.6666662693e-01), F32(4.0000972152e-01), F32(2.8498786688e-01),
                      F32(2.4279078841e-01))
LN2_HI_EXP, LN2_LO_EXP = F32(6.9314575195e-01), F32(1.4286067653e-06)
INV_LN2 = F32(1.4426950216e+00)
P1, P2 = F32(1.6666625440e-01), F32(-2.7667332906e-03)


def logf(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=F32)
    passthrough = ~(x <= FLT_MAX)
    xc = np.where(x < FLT_MIN, FLT_MIN, x).astype(F32)
    u = np.ascontiguousarray(xc).view(np.uint32)
    e = (u >> 23).astype(np.int32) - 127
    m = ((u & np.uint32(0x007FFFFF)) | np.uint32(0x3F800000)).view(F32)
    big = m > SQRT2_DOWN
    m = np.where(big, F32(0.5) * m, m).astype(F32)
    e = e + big
    f = m - F32(1)
    s = f / (F32(2) + f)
    z = s * s
    w = z * z
    r = z * (LG1 + w * LG3) + w * (LG2 + w * LG4)
    half_f2 = F32(0.5) * f * f
    k = e.astype(F32)
    out = k * LN2_HI_LOG - ((half_f2 - (s * (half_f2 + r) + k * LN2_LO_LOG)) - f)
    return np.where(passthrough, x, out).astype(F32)


def expf(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=F32)
    with np.errstate(over="ignore", invalid="ignore"):
        k = x * INV_LN2
        n = np.where(k < 0, k - F32(0.5), k + F32(0.5))
        n = np.where(np.isfinite(n), n, 0).astype(np.int32)  # C truncates toward zero
        kf = n.astype(F32)
        hi = x - kf * LN2_HI_EXP
        lo = kf * LN2_LO_EXP
        r = hi - lo
        t = r * r
        c = r - t * (P1 + t * P2)
        y = F32(1) - ((lo - (r * c) / (F32(2) - c)) - hi)
        a = np.where(n > 0, n // 2, -((-n) // 2))  # C's n / 2 rounds toward zero
        b = n - a
        y = y * _pow2(a) * _pow2(b)
    y = np.where(x > F32(88.7228317261), F32(np.inf), y)
    y = np.where(x < F32(-87.3365402222), F32(0), y)
    return np.where(np.isnan(x), x, y).astype(F32)


def _pow2(n: np.ndarray) -> np.ndarray:
    return ((n.astype(np.int64) + 127).astype(np.uint32) << np.uint32(23)).view(F32)
