"""A fitted linear classifier as the tables of ``kml_linear`` and its Python reference.

scikit-learn's linear classifiers predict from ``x @ coef.T + intercept`` in float64
(BLAS, in an order that depends on the machine and the batch): the first arg-max
(one-vs-rest: the last), or ``score > 0`` with one score. The reference here is the
arg-max of the exact real-number scores of the float32 input and the float64
coefficients. Any float64 evaluation is within ``E64`` of the exact scores (the
rounding error of a sum of F + 1 products in any order, ``rounding_bound``), so
scikit-learn's ``predict`` equals the reference wherever the top two exact scores are
more than 2 E64 apart (one score: farther than E64 from 0); inside that band its own
answer depends on its BLAS and batch (``LinearTables.sklearn_ambiguous`` finds those
rows, which only adversarial input reaches: E64 is about F 2^-53 of the scores). A
model fitted on float32 data has float32 coefficients, and scikit-learn scores float32
input with them in float32: its band is then about F 2^-24 of the scores.

The C (``kml_linear.c``) computes float32 scores and a bound ``e`` on their error from
|x| (``fast_bound``; the constants below). Per score k the float32 sum
``s_k = fl(... fl(fl(b32_k + fl(x_0 w32_k0)) + fl(x_1 w32_k1)) ...)`` differs from the
exact ``S_k = b_k + sum x_i w_ki`` by at most

    |s_k - S_k| <= gamma_F sum|t| + sum(u |x_i w32_ki| + 2^-150) + |b_k - b32_k|
                   + sum |x_i| |w_ki - w32_ki|                       (u = 2^-24)

(recursive summation of the F + 1 terms t, the products' rounding with underflow, the
coefficients' rounding to float32). With a magnitude m >= |w32| such that
|w - w32| <= u/(1-u) m for every coefficient (m = |w32|; for 0 < |w| < 2^-126, where
w32 = 0, m = 2^-102) and A = max_k m_bk + sum |x_i| max_k m_ki, this is at most
c0 A + 2(F + 1) 2^-150 with c0 = gamma_F (1 + u) + u + u/(1-u). The C computes A in
float32 (A_hat, every term non-negative: A <= A_hat / ((1 - gamma_F)(1 - u)) + tiny)
and e = fl(fl(c1 A_hat) + tau) with c1 = c0 / ((1 - gamma_F)(1 - u)) (1 + 2^-18)
rounded up and tau = 2^-119: the slack covers the two roundings of e and the rounding
of a difference of scores, so fl(s_j - s_k) > 2e proves S_j > S_k and s > e (s < -e)
proves S > 0 (S < 0). Otherwise the exact path sums exactly (kml_linear_exact_sign).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kiloml.dsp.math32 import expf

F32, F64 = np.float32, np.float64
U32 = 2.0 ** -24
TINY_COEF = 2.0 ** -126  # below: w32 = 0 and magnitude TINY_MAGNITUDE
TINY_MAGNITUDE = 2.0 ** -102  # u * TINY_MAGNITUDE = 2^-126 > |w|
BOUND_FLOOR = 2.0 ** -119
FAST_LIMIT = 2.0 ** 127  # larger coefficients make no float32 fast path
COEF_LIMIT = 2.0 ** 800  # larger: float64 scores can overflow, refused
MAX_FEATURES = 1 << 20
PATH_FAST, PATH_EXACT, PATH_INVALID = 0, 1, 2
TIES = ("first", "last")
PROBAS = ("softmax", "ovr")


class LinearTableError(ValueError):
    """Coefficients kml_linear cannot hold (the caller says where they came from)."""


def _round_up_f32(value: float) -> np.float32:
    v = F32(value)
    if float(v) < value:
        v = np.nextafter(v, F32(np.inf))
    return v


def fast_bound_scale(n_features: int) -> np.float32:
    """c1 of the module docstring, for F features."""
    f = n_features
    gamma = f * U32 / (1 - f * U32)
    c0 = gamma * (1 + U32) + U32 + U32 / (1 - U32)
    return _round_up_f32(c0 / ((1 - gamma) * (1 - U32)) * (1 + 2.0 ** -18))


def rounding_bound(abs_scores: np.ndarray, n_features: int, unit_bits: int = 53
                   ) -> np.ndarray:
    """A bound on |any evaluation of a score in floating point of ``unit_bits`` (53:
    float64, 24: float32) - the exact score|, given the float64 sum of |x_i w_i| and |b|
    (abs_scores, computed any way): a sum of F + 1 products in any order, with FMA or
    without, and underflow."""
    n = n_features + 3
    u = 2.0 ** -unit_bits
    beta = n * u / (1 - n * u)
    tiny = 2.0 ** -1074 if unit_bits == 53 else 2.0 ** -149
    return beta * abs_scores * (1 + 2.0 ** -20) + (n_features + 2) * tiny


def _lsb_exponent(values: np.ndarray) -> tuple[int, int]:
    """(lowest bit's exponent, exponent above the highest bit) over nonzero doubles."""
    lows, tops = [], []
    for v in values.ravel().tolist():
        if v != 0.0:
            _, e = math.frexp(v)
            lows.append(max(e - 53, -1074))
            tops.append(e)
    return (min(lows), max(tops)) if lows else (0, -1074)


def _f64_words(values: np.ndarray) -> np.ndarray:
    """IEEE double bits as uint32 pairs (low word first), little-endian independent."""
    bits = np.ascontiguousarray(values, dtype=F64).view(np.uint64).ravel()
    return np.stack([bits & np.uint64(0xFFFFFFFF), bits >> np.uint64(32)],
                    axis=1).astype(np.uint32).ravel()


def _exact_ints(values: np.ndarray) -> list:
    """Each double times 2^1074, an integer (exact)."""
    out = []
    for v in values.ravel().tolist():
        num, den = float(v).as_integer_ratio()
        out.append(num * ((1 << 1074) // den))
    return out


@dataclass
class LinearTables:
    """Scores ``x @ coef.T + intercept`` (coef [S, F] float64, S = 1 for two classes),
    the label rule (``tie``: which of equal top scores wins) and the score rule
    (``proba``: softmax, or normalized sigmoids for one-vs-rest logistic models)."""

    coef: np.ndarray
    intercept: np.ndarray
    n_classes: int
    tie: str = "first"
    proba: str = "softmax"
    # scikit-learn's arithmetic for these coefficients: float64, or float32 for float32
    # coefficients (a model fitted on float32 data scores float32 input in float32)
    sklearn_bits: int = 53
    # derived (by build): the C tables
    weights32: np.ndarray = field(init=False, repr=False)
    bias32: np.ndarray = field(init=False, repr=False)
    magnitude: np.ndarray = field(init=False, repr=False)
    bias_magnitude: np.float32 = field(init=False, repr=False)
    bound_scale: np.float32 = field(init=False, repr=False)
    fast: bool = field(init=False, repr=False)
    lsb_exponent: int = field(init=False, repr=False)
    limbs: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        coef = np.asarray(self.coef)
        intercept = np.asarray(self.intercept)
        if coef.ndim != 2 or coef.shape[0] < 1 or coef.shape[1] < 1:
            raise LinearTableError(f"coefficients of shape {list(coef.shape)}, expected "
                                   "[scores, features]")
        s, f = coef.shape
        if f > MAX_FEATURES:
            raise LinearTableError(f"{f} features, more than {MAX_FEATURES}")
        if intercept.shape != (s,):
            raise LinearTableError(f"intercepts of shape {list(intercept.shape)}, expected "
                                   f"[{s}]")
        if self.n_classes < 2 or (s != 1 and s != self.n_classes) or \
                (s == 1 and self.n_classes != 2):
            raise LinearTableError(f"{s} scores for {self.n_classes} classes (expected one "
                                   "score for two classes, else one per class)")
        if self.tie not in TIES or self.proba not in PROBAS:
            raise LinearTableError(f"tie {self.tie!r} / proba {self.proba!r}")
        if coef.dtype.kind != "f" or intercept.dtype.kind != "f":
            raise LinearTableError("coefficients and intercepts must be floating point")
        coef = coef.astype(F64)
        intercept = intercept.astype(F64)
        if s == 1:
            self.proba = "softmax"  # [1 - sigmoid(z), sigmoid(z)], as predict_proba
        both = np.concatenate([coef.ravel(), intercept])
        if not np.all(np.isfinite(both)):
            raise LinearTableError("a coefficient or intercept is NaN or infinite")
        if np.any(np.abs(both) >= COEF_LIMIT):
            raise LinearTableError(f"a coefficient or intercept is beyond 2^800 (its float64 "
                                   f"scores could overflow): {float(np.max(np.abs(both))):g}")
        self.coef, self.intercept = coef, intercept
        self._build()

    def _build(self) -> None:
        coef, b = self.coef, self.intercept
        f = coef.shape[1]
        self.fast = bool(np.all(np.abs(coef) <= FAST_LIMIT) and np.all(np.abs(b) <= FAST_LIMIT))

        def to32(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            tiny = (v != 0) & (np.abs(v) < TINY_COEF)
            with np.errstate(over="ignore"):
                v32 = np.where(tiny | ~np.isfinite(v.astype(F32)), 0.0, v).astype(F32)
            mag = np.where(tiny, F32(TINY_MAGNITUDE), np.abs(v32)).astype(F32)
            return v32, mag

        self.weights32, mag = to32(coef)
        self.bias32, bmag = to32(b)
        self.magnitude = mag.max(axis=0).astype(F32)
        self.bias_magnitude = F32(bmag.max())
        self.bound_scale = fast_bound_scale(f)
        low_w, top_w = _lsb_exponent(coef)
        low_b, top_b = _lsb_exponent(b)
        lows = [low_b] + ([-149 + low_w] if np.any(coef != 0) else [])
        self.lsb_exponent = int(min(lows))
        top_term = max(128 + top_w, top_b)
        top_bits = top_term + math.ceil(math.log2(2 * f + 2)) + 1
        last_lsb = max(104 + (top_w - 53), top_b - 53)  # highest lowest bit of a term
        self.limbs = int(max(4, math.ceil((top_bits - self.lsb_exponent) / 32),
                             (last_lsb - self.lsb_exponent) // 32 + 4) + 1)
        self._coef_ints = [_exact_ints(row) for row in coef]
        self._bias_ints = _exact_ints(b)

    # --- shapes --------------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    @property
    def n_scores(self) -> int:
        return int(self.coef.shape[0])

    def weights64(self) -> np.ndarray:
        return _f64_words(self.coef)

    def bias64(self) -> np.ndarray:
        return _f64_words(self.intercept)

    # --- the reference -------------------------------------------------------------------

    def _rows(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=F32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"inputs of shape {list(x.shape)}, expected [N, "
                             f"{self.n_features}]")
        return x

    def float64_scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, E64) in float64 for finite rows."""
        x64 = self._rows(x).astype(F64)
        with np.errstate(over="ignore", invalid="ignore"):
            scores = x64 @ self.coef.T + self.intercept
            abs_scores = np.abs(x64) @ np.abs(self.coef).T + np.abs(self.intercept)
        return scores, rounding_bound(abs_scores.max(axis=1), self.n_features)

    def exact_scores(self, row: np.ndarray) -> list[int]:
        """The exact scores of one finite float32 row, times 2^(149 + 1074) (integers)."""
        xs = [int(v) for v in (np.asarray(row, dtype=F64) * 2.0 ** 149).tolist()]
        out = []
        for weights, bias in zip(self._coef_ints, self._bias_ints, strict=True):
            out.append(sum(a * w for a, w in zip(xs, weights, strict=True) if a and w)
                       + (bias << 149))
        return out

    def _exact_label(self, scores: list[int]) -> int:
        if len(scores) == 1:
            return int(scores[0] > 0)
        best = 0
        for k in range(1, len(scores)):
            if scores[k] > scores[best] or (self.tie == "last" and scores[k] == scores[best]):
                best = k
        return best

    def labels(self, x: np.ndarray) -> np.ndarray:
        """The reference labels (int64): the exact arg-max, -1 for a row with a NaN or
        infinite feature."""
        x = self._rows(x)
        out = np.full(len(x), -1, dtype=np.int64)
        ok = np.all(np.isfinite(x), axis=1)
        if not ok.any():
            return out
        rows = np.flatnonzero(ok)
        scores, bound = self.float64_scores(x[rows])
        if self.n_scores == 1:
            z = scores[:, 0]
            out[rows] = (z > 0).astype(np.int64)
            unclear = ~(np.abs(z) > 2 * bound)
        else:
            order = np.sort(scores, axis=1)
            gap = order[:, -1] - order[:, -2]
            idx = np.argmax(scores, axis=1) if self.tie == "first" else \
                scores.shape[1] - 1 - np.argmax(scores[:, ::-1], axis=1)
            out[rows] = idx
            unclear = ~(gap > 4 * bound)
        for r in rows[unclear]:
            out[r] = self._exact_label(self.exact_scores(x[r]))
        return out

    def sklearn_ambiguous(self, x: np.ndarray) -> np.ndarray:
        """bool [N]: finite rows whose exact top two scores (one score: the score and 0)
        lie within scikit-learn's own rounding (float64, or float32 for float32
        coefficients; ``sklearn_bits``), or whose scores overflow its float32: there
        its predict depends on its BLAS's order of summation and may differ from the
        exact answer."""
        x = self._rows(x)
        out = np.zeros(len(x), dtype=bool)
        ok = np.flatnonzero(np.all(np.isfinite(x), axis=1))
        if not len(ok):
            return out
        scores, mine = self.float64_scores(x[ok])
        x64 = x[ok].astype(F64)
        with np.errstate(over="ignore", invalid="ignore"):
            abs_scores = (np.abs(x64) @ np.abs(self.coef).T + np.abs(self.intercept)).max(1)
        bound = rounding_bound(abs_scores, self.n_features, self.sklearn_bits)
        if self.sklearn_bits < 53:
            out[ok[abs_scores >= 2.0 ** 127]] = True  # its float32 scores overflow
        order = np.sort(scores, axis=1)
        gap = np.abs(order[:, 0]) if self.n_scores == 1 else order[:, -1] - order[:, -2]
        near = ~(gap > 4 * (bound + mine))
        for i in np.flatnonzero(near):
            exact = sorted(self.exact_scores(x[ok[i]]))
            d = abs(exact[0]) if self.n_scores == 1 else exact[-1] - exact[-2]
            num, den = float((1 if self.n_scores == 1 else 2) * bound[i]).as_integer_ratio()
            out[ok[i]] |= d * den <= num << (149 + 1074)  # the exact scores' scale
        return out

    # --- the float32 twin of kml_linear_predict ------------------------------------------

    def fast_scores(self, x: np.ndarray) -> np.ndarray:
        """float32 [N, S]: the C's float32 scores, bit for bit (same order of operations)."""
        x = self._rows(x)
        s = np.repeat(self.bias32[None, :], len(x), axis=0)
        with np.errstate(over="ignore", invalid="ignore"):
            for i in range(self.n_features):
                s = s + x[:, i:i + 1] * self.weights32[:, i]
        return s.astype(F32, copy=False)

    def fast_bound(self, x: np.ndarray) -> np.ndarray:
        """float32 [N]: the C's e."""
        x = self._rows(x)
        a = np.full(len(x), self.bias_magnitude, dtype=F32)
        with np.errstate(over="ignore", invalid="ignore"):
            for i in range(self.n_features):
                a = a + np.abs(x[:, i]) * self.magnitude[i]
            return (self.bound_scale * a + F32(BOUND_FLOOR)).astype(F32)

    def paths(self, x: np.ndarray) -> np.ndarray:
        """int [N]: which path kml_linear_predict takes (PATH_FAST, _EXACT, _INVALID)."""
        x = self._rows(x)
        s = self.fast_scores(x)
        e = self.fast_bound(x)
        finite = np.all(np.isfinite(s), axis=1) & self.fast
        fast = finite & np.isfinite(e)
        with np.errstate(over="ignore", invalid="ignore"):
            if self.n_scores == 1:
                fast &= (s[:, 0] > e) | (s[:, 0] < -e)
            else:
                best = s[np.arange(len(s)), np.argmax(s, axis=1)]
                d = best[:, None] - s
                d[np.arange(len(s)), np.argmax(s, axis=1)] = np.inf
                fast &= np.all(d > (e + e)[:, None], axis=1)
        out = np.where(fast, PATH_FAST, PATH_EXACT)
        out[~np.all(np.isfinite(x), axis=1)] = PATH_INVALID
        return out

    def device_scores(self, x: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """float32 [N, K]: the scores the C writes, bit for bit."""
        x = self._rows(x)
        if labels is None:
            labels = self.labels(x)
        k = self.n_classes
        s = self.fast_scores(x)
        n = len(x)
        finite = np.all(np.isfinite(s), axis=1) & self.fast
        z = np.concatenate([np.zeros((n, 1), F32), s], axis=1) if self.n_scores == 1 else s
        z = np.where(finite[:, None], z, F32(0)).astype(F32)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if self.proba == "ovr":
                p = (F32(1) / (F32(1) + expf(-z))).astype(F32)
            else:
                top = z.max(axis=1, keepdims=True)
                p = expf((z - top).astype(F32))
            total = np.zeros(n, F32)
            for c in range(k):  # sequential, as the C
                total = (total + p[:, c]).astype(F32)
            p = (p / total[:, None]).astype(F32)
        one_hot = np.zeros((n, k), F32)
        valid = labels >= 0
        one_hot[np.flatnonzero(valid), labels[valid]] = 1
        p = np.where((finite & (total != 0))[:, None], p, one_hot).astype(F32)
        first = np.argmax(p, axis=1)
        fix = valid & (first != labels)
        if fix.any():
            rows = np.flatnonzero(fix)
            p[rows, labels[rows]] = np.nextafter(p[rows, first[rows]], F32(np.inf))
        p[~valid] = 0
        return p


# --- C ---------------------------------------------------------------------------------


def c_config(tables: LinearTables) -> list[str]:
    """kml_config.h lines (the largest model's sizes)."""
    return [f"#define KML_LINEAR_MAX_SCORES {tables.n_scores}",
            f"#define KML_LINEAR_LIMBS {tables.limbs}"]


def c_constants(tables: LinearTables, prefix: str) -> tuple[str, str]:
    """(C definitions, the name of the kml_linear_model constant)."""
    from kiloml.codegen.cwriter import c_array, c_float

    p = prefix
    hexa = lambda v: f"0x{int(v):08x}u"  # noqa: E731
    parts = [
        c_array("float", f"{p}weights", tables.weights32.ravel(), fmt=c_float),
        c_array("float", f"{p}bias", tables.bias32, fmt=c_float),
        c_array("float", f"{p}magnitude", tables.magnitude, fmt=c_float),
        c_array("uint32_t", f"{p}weights64", tables.weights64(), fmt=hexa, per_line=6),
        c_array("uint32_t", f"{p}bias64", tables.bias64(), fmt=hexa, per_line=6),
    ]
    fields = [str(tables.n_features), str(tables.n_scores), str(tables.n_classes),
              str(int(tables.tie == "last")), str(int(tables.proba == "ovr")),
              str(int(tables.fast)), f"{p}weights", f"{p}bias", f"{p}magnitude",
              c_float(tables.bias_magnitude), c_float(tables.bound_scale),
              c_float(BOUND_FLOOR), f"{p}weights64", f"{p}bias64",
              str(tables.lsb_exponent)]
    parts.append(f"/* features, scores, classes, tie_last, proba, fast, tables, bound, "
                 f"exact tables, lsb exponent */\nstatic const kml_linear_model {p}model = "
                 f"{{\n    {', '.join(fields[:6])},\n    {', '.join(fields[6:9])},\n    "
                 f"{', '.join(fields[9:12])},\n    {', '.join(fields[12:])}\n}};\n")
    return "\n".join(parts), f"{p}model"
