"""The real FFT of ``kml_fft.c``: its tables, and the same float32 arithmetic in numpy.

``rfft`` performs exactly the operations of ``kml_rfft`` in the same order (bit
reversal, a radix-2 stage of span 1 when log2(N/2) is odd, radix-2 stages fused in
pairs, the real split), vectorised over frames, so the two agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from kiloml.codegen.cwriter import c_array, c_float
from kiloml.errors import KilomlError

F32 = np.float32
MIN_FFT = 16
MAX_FFT = 4096


def check_fft_length(n: int, where: str) -> None:
    if n < MIN_FFT or n > MAX_FFT or n & (n - 1):
        raise KilomlError(f"FFT length {n} is not a power of two between {MIN_FFT} and "
                          f"{MAX_FFT}", where=where)


def _twiddle(k: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """W_length^k = cos(2 pi k / length) - i sin(...), exact at multiples of pi/2."""
    angle = 2.0 * np.pi * k / length
    re, im = np.cos(angle), -np.sin(angle)
    re[np.abs(re) < 1e-12] = 0.0
    im[np.abs(im) < 1e-12] = 0.0
    return re, im


def _bit_reverse_permutation(m: int) -> np.ndarray:
    bits = m.bit_length() - 1
    return np.array([int(f"{i:0{bits}b}"[::-1], 2) if bits else 0 for i in range(m)])


@dataclass(frozen=True)
class RfftPlan:
    n: int
    swaps: np.ndarray  # uint16 [n_swaps, 2]
    stage_twiddles: np.ndarray  # float32, 4 per index per fused pass
    split_twiddles: np.ndarray  # float32 [m/2, 2]: 0.5 * W_n^k, k = 1..m/2
    passes: tuple  # ("span1",) and ("fused", h, offset) in order

    @property
    def m(self) -> int:
        return self.n // 2

    def c_constants(self, prefix: str) -> tuple[str, str]:
        """(C definitions, name of the kml_rfft_t) for this plan."""
        arrays = [
            c_array("uint16_t", f"{prefix}swaps", self.swaps.ravel(), per_line=16),
            c_array("float", f"{prefix}stage_twiddles", self.stage_twiddles, fmt=c_float,
                    per_line=4),
            c_array("float", f"{prefix}split_twiddles", self.split_twiddles.ravel(),
                    fmt=c_float, per_line=4),
        ]
        name = f"{prefix}rfft"
        arrays.append(f"static const kml_rfft_t {name} = {{\n    {self.n}, {len(self.swaps)}, "
                      f"{prefix}swaps, {prefix}stage_twiddles, {prefix}split_twiddles\n}};\n")
        return "\n".join(arrays), name


@cache
def make_plan(n: int) -> RfftPlan:
    check_fft_length(n, "fft_length")
    m = n // 2
    perm = _bit_reverse_permutation(m)
    swaps = np.array([(i, int(perm[i])) for i in range(m) if i < perm[i]], dtype=np.uint16)
    log2m = m.bit_length() - 1
    passes: list[tuple] = []
    tables: list[np.ndarray] = []
    h = 1
    if log2m % 2:
        passes.append(("span1",))
        h = 2
    offset = 0
    while h < m:
        j = np.arange(h)
        w1r, w1i = _twiddle(j, 2 * h)
        w2r, w2i = _twiddle(j, 4 * h)
        tables.append(np.stack([w1r, w1i, w2r, w2i], axis=1).astype(F32).ravel())
        passes.append(("fused", h, offset))
        offset += 4 * h
        h *= 4
    k = np.arange(1, m // 2 + 1)
    sr, si = _twiddle(k, n)
    split = (0.5 * np.stack([sr, si], axis=1)).astype(F32)
    stage = np.concatenate(tables) if tables else np.zeros(0, F32)
    return RfftPlan(n, swaps.reshape(-1, 2), stage, split, tuple(passes))


def rfft(plan: RfftPlan, x: np.ndarray) -> np.ndarray:
    """kml_rfft on x [..., n] float32: the packed spectrum [..., n] float32."""
    x = np.asarray(x, dtype=F32)
    m = plan.m
    z = x.reshape(*x.shape[:-1], m, 2)
    perm = _bit_reverse_permutation(m)
    re = np.ascontiguousarray(z[..., perm, 0])
    im = np.ascontiguousarray(z[..., perm, 1])
    for p in plan.passes:
        if p[0] == "span1":
            a = np.arange(0, m, 2)
            ar, ai, br, bi = re[..., a], im[..., a], re[..., a + 1], im[..., a + 1]
            re[..., a], im[..., a] = ar + br, ai + bi
            re[..., a + 1], im[..., a + 1] = ar - br, ai - bi
            continue
        _, h, offset = p
        w = plan.stage_twiddles[offset:offset + 4 * h].reshape(h, 4)
        groups = np.arange(0, m, 4 * h)
        # j = 0: every twiddle is 1
        i0 = groups
        _fused(re, im, i0, h, None)
        if h > 1:
            j = np.arange(1, h)
            i0 = (groups[:, None] + j[None, :]).ravel()
            wj = np.tile(w[1:], (len(groups), 1))
            _fused(re, im, i0, h, wj)
    out = np.empty(x.shape, dtype=F32)
    z0r, z0i = re[..., 0], im[..., 0]
    out[..., 0] = z0r + z0i
    out[..., 1] = z0r - z0i
    k = np.arange(1, m // 2 + 1)
    c = m - k
    ar, ai, cr, ci = re[..., k], im[..., k], re[..., c], im[..., c]
    gr, gi = ar + cr, ai - ci
    hr, hi = ar - cr, ai + ci
    sw0, sw1 = plan.split_twiddles[:, 0], plan.split_twiddles[:, 1]
    pr = sw0 * hr - sw1 * hi
    pi = sw0 * hi + sw1 * hr
    half_gr, half_gi = F32(0.5) * gr, F32(0.5) * gi
    spec_re = re.copy()
    spec_im = im.copy()
    spec_re[..., k], spec_im[..., k] = half_gr + pi, half_gi - pr
    spec_re[..., c], spec_im[..., c] = half_gr - pi, -half_gi - pr  # k = m/2: this wins
    out[..., 2::2] = spec_re[..., 1:m]
    out[..., 3::2] = spec_im[..., 1:m]
    return out


def _fused(re: np.ndarray, im: np.ndarray, i0: np.ndarray, h: int,
           w: np.ndarray | None) -> None:
    i1, i2, i3 = i0 + h, i0 + 2 * h, i0 + 3 * h
    a0r, a0i, a1r, a1i = re[..., i0], im[..., i0], re[..., i1], im[..., i1]
    a2r, a2i, a3r, a3i = re[..., i2], im[..., i2], re[..., i3], im[..., i3]
    if w is None:
        b0r, b0i, b1r, b1i = a0r + a1r, a0i + a1i, a0r - a1r, a0i - a1i
        b2r, b2i, b3r, b3i = a2r + a3r, a2i + a3i, a2r - a3r, a2i - a3i
        re[..., i0], im[..., i0] = b0r + b2r, b0i + b2i
        re[..., i2], im[..., i2] = b0r - b2r, b0i - b2i
        re[..., i1], im[..., i1] = b1r + b3i, b1i - b3r
        re[..., i3], im[..., i3] = b1r - b3i, b1i + b3r
        return
    w0, w1, w2, w3 = (w[:, c].astype(F32) for c in range(4))
    t, u = w0 * a1r - w1 * a1i, w0 * a1i + w1 * a1r
    b0r, b0i, b1r, b1i = a0r + t, a0i + u, a0r - t, a0i - u
    t, u = w0 * a3r - w1 * a3i, w0 * a3i + w1 * a3r
    b2r, b2i, b3r, b3i = a2r + t, a2i + u, a2r - t, a2i - u
    ur, ui = w2 * b2r - w3 * b2i, w2 * b2i + w3 * b2r
    re[..., i0], im[..., i0] = b0r + ur, b0i + ui
    re[..., i2], im[..., i2] = b0r - ur, b0i - ui
    ur, ui = w2 * b3r - w3 * b3i, w2 * b3i + w3 * b3r
    re[..., i1], im[..., i1] = b1r + ui, b1i - ur
    re[..., i3], im[..., i3] = b1r - ui, b1i + ur


def power(packed: np.ndarray) -> np.ndarray:
    """kml_rfft_power: |X[k]|^2, k = 0 .. n/2, from the packed spectrum [..., n]."""
    n = packed.shape[-1]
    m = n // 2
    out = np.empty((*packed.shape[:-1], m + 1), dtype=F32)
    out[..., 0] = packed[..., 0] * packed[..., 0]
    out[..., m] = packed[..., 1] * packed[..., 1]
    re, im = packed[..., 2::2], packed[..., 3::2]
    out[..., 1:m] = re * re + im * im
    return out
