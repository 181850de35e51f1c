"""The energy score of a network's logits, the monitor's out-of-distribution input for
networks: E = -log(sum_i exp(l_i)) (temperature 1; higher is further out of distribution),
float32 in the order of kml_monitor.c's kml_mon_energy, bit for bit.

The largest logit m is subtracted first (never overflows); exp(l - m) is 2^((l - m) log2 e)
with a degree-5 polynomial exp2 of this module, the log is the monitor's own polynomial
log2 times ln 2 (kiloml.monitor.signals), no libm on either side; the result is clamped to
+-1e30 so the running signals stay finite whatever the logits."""

from __future__ import annotations

import numpy as np

from kiloml.monitor.signals import log2_many

F32 = np.float32
U32 = np.uint32
# 2^f - 1 = f (c1 + f (c2 + ... + f c5)) on [0, 1): relative-error minimax fit (Lawson),
# rounded to float32; highest power first, as evaluated
EXP2_POLY = (F32(0.001867342), F32(0.009018507), F32(0.055796713), F32(0.2401663),
             F32(0.693151))
LOG2E = F32(1.442695)
LN2 = F32(0.6931472)
EXP2_MIN = F32(-126.0)  # below: 0 (2^-126 is the smallest normal float32)
FLT_MAX = np.finfo(F32).max
CLAMP = F32(1e30)


def exp2(t: np.ndarray) -> np.ndarray:
    """kml_mon_exp2 element-wise (float32 in, float32 out; meant for t <= 0)."""
    t = np.asarray(t, F32)
    ok = t >= EXP2_MIN  # NaN: False
    tt = np.where(ok, t, F32(0.0))
    i = tt.astype(np.int32)  # toward zero, as (int32_t)t
    i = np.where(i.astype(F32) > tt, i - np.int32(1), i).astype(np.int32)
    f = (tt - i.astype(F32)).astype(F32)
    poly = np.full(f.shape, EXP2_POLY[0], F32)
    for c in EXP2_POLY[1:]:
        poly = ((poly * f).astype(F32) + c).astype(F32)
    poly = ((poly * f).astype(F32) + F32(1.0)).astype(F32)
    with np.errstate(over="ignore"):
        bits = poly.view(U32) + (i.astype(U32) << U32(23))  # wraps modulo 2^32, as in C
    return np.where(ok, bits.astype(U32).view(F32), F32(0.0)).astype(F32)


def energies(logits: np.ndarray) -> np.ndarray:
    """float32 [N, K] logits -> float32 [N] energies (kml_monitor_energy per row)."""
    x = np.asarray(logits, F32)
    if x.ndim != 2:
        raise ValueError("energies takes logits [windows, classes]")
    n, k = x.shape
    m = np.full(n, -FLT_MAX, F32)
    for j in range(k):  # the first largest; NaN never wins
        m = np.where(x[:, j] > m, x[:, j], m)
    total = np.zeros(n, F32)
    with np.errstate(invalid="ignore", over="ignore"):
        for j in range(k):
            d = ((x[:, j] - m).astype(F32) * LOG2E).astype(F32)
            total = (total + exp2(d)).astype(F32)
        e = (-(m + (LN2 * log2_many(total)).astype(F32))).astype(F32)
    return np.where(~(e >= -CLAMP), -CLAMP, np.where(e > CLAMP, CLAMP, e)).astype(F32)


def energy(logits: np.ndarray) -> np.float32:
    """One window's energy (kml_monitor_energy)."""
    return energies(np.asarray(logits, F32).reshape(1, -1))[0]
