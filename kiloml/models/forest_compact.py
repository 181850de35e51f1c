"""Compact forest tables: int16 thresholds and integer leaf weights, still exact.

Compaction changes the model a little and keeps the C library and its Python mirror
in exact agreement, because both sides compute the same integers:

* Thresholds (``thresholds = "int16"``). Each feature the trees use gets an affine
  grid in float32, ``q = clamp(floor((x - offset) * scale), -32767, 32767)``, NaN ->
  -32768, with ``offset`` the middle of that feature's thresholds and ``scale``
  spreading them over about +-32765. C (``kml_forest_quantize``) and numpy
  (``quantize_inputs``) do the same two correctly rounded float32 operations, so q is
  the same integer on both sides (on a soft-float core too). Rounding and floor are
  monotone, so ``x <= t`` implies ``q(x) <= q(t)``: a node keeps the integer threshold
  ``T`` nearest its float32 threshold's grid position and sends ``q <= T`` left. Only
  inputs in the grid cell around a threshold can change sides (the accuracy cost).
  NaN still goes where scikit-learn sends it (q == -32768 is checked on the left side).
* Leaves (``leaves = "uint8"`` or ``"uint16"``). A leaf's class fractions become
  integer weights summing to ``total`` (largest remainders, ties to the lower class);
  a pure leaf weighs ``total``. uint16: 65535. uint8: 255, or 127 or 63 when that is
  what merges the leaves into few enough rows for one-byte child references (they
  hold n_classes + the number of distinct mixed rows; a byte less per reference is
  two per node). The vote is an int32 sum per class and
  its first arg-max; scores are ``(float)sum * (1 / (n_trees * total))`` in float32.
  No float64 path (``kml_f64``) is needed. Leaves whose weights coincide share a row,
  and a leaf rounded to one class becomes a pure leaf.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kiloml.models.forest import F32, ForestTables, quantize_inputs

THRESHOLDS = ("float32", "int16")
LEAVES = ("exact", "uint8", "uint16")
UINT8_TOTALS = (255, 127, 63)  # weights per leaf, finest first (at most 1/126 off)
GRID_HALF_SPAN = 32765.0  # thresholds land within +-32765 (+-32767 is the clamp)


def input_grid(thresholds: np.ndarray) -> tuple[np.float32, np.float32]:
    """(offset, scale) for one feature's float32 thresholds (finite ones decide)."""
    finite = thresholds[np.isfinite(thresholds)].astype(np.float64)
    if not len(finite):
        return F32(0.0), F32(1.0)
    lo, hi = float(finite.min()), float(finite.max())
    offset = F32(lo / 2 + hi / 2)
    # one threshold: a grid about 2^-16 of its magnitude per cell (near the float32
    # resolution around it)
    span = hi - lo if hi > lo else max(abs(lo) * 2.0**-16, 2.0**-100)
    scale = F32(2 * GRID_HALF_SPAN / span)
    if not np.isfinite(scale) or scale <= 0:
        scale = F32(np.finfo(F32).max) if span < 1 else F32(np.finfo(F32).tiny)
    return offset, scale


def integer_thresholds(t32: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """int16 T per node: the quantized threshold itself, T = q(t32). Every x <= t32 has
    q(x) <= T and still goes left (inputs equal to a threshold are common: thresholds
    can sit on training values); only x in (t32, the top of t32's grid cell] change
    sides, to the left."""
    return quantize_inputs(t32[None, :], offset, scale)[0]


def quantize_leaves(proba: np.ndarray, total: int) -> np.ndarray:
    """int64 [n, K] weights summing to ``total`` per row: floor, then the remaining units
    to the largest remainders (ties to the lower class)."""
    scaled = proba * float(total)
    weights = np.floor(scaled).astype(np.int64)
    remainder = scaled - weights
    missing = total - weights.sum(axis=1)
    for m in np.flatnonzero(missing > 0):
        order = np.lexsort((np.arange(proba.shape[1]), -remainder[m]))
        weights[m, order[:missing[m]]] += 1
    return weights


def compact_tables(t: ForestTables, thresholds: str = "float32",
                   leaves: str = "exact") -> ForestTables:
    """The compacted model's tables (unchanged when both options keep their defaults)."""
    if thresholds not in THRESHOLDS or leaves not in LEAVES:
        raise ValueError(f"thresholds must be one of {THRESHOLDS}, leaves one of {LEAVES}")
    out = t
    if thresholds == "int16":
        out = _int16_thresholds(out)
    if leaves == "uint16":
        out = _integer_leaves(out, 0xFFFF)
    elif leaves == "uint8":
        # The largest total whose distinct leaves keep every child reference in one
        # byte (references hold n_classes + the mixed rows), else 255.
        candidates = [_integer_leaves(out, total) for total in UINT8_TOTALS]
        out = next((c for c in candidates if c.ref_dtype is np.uint8), candidates[0])
    return out


def _int16_thresholds(t: ForestTables) -> ForestTables:
    # Nodes of one-leaf trees (both children the same leaf) do not count as uses.
    real = ~(t.left_is_leaf & t.right_is_leaf & (t.left == t.right))
    used = np.unique(t.feature[real]) if real.any() else np.zeros(1, np.int64)
    offset = np.zeros(len(used), F32)
    scale = np.ones(len(used), F32)
    for u, f in enumerate(used):
        offset[u], scale[u] = input_grid(t.threshold[real & (t.feature == f)])
    node_input = np.searchsorted(used, t.feature)
    node_input[~real] = 0  # either side is the same leaf
    node_input = np.minimum(node_input, len(used) - 1)
    qthreshold = integer_thresholds(t.threshold, offset[node_input], scale[node_input])
    return dataclasses.replace(t, inputs=used.astype(np.int64), input_offset=offset,
                               input_scale=scale, node_input=node_input.astype(np.int64),
                               qthreshold=qthreshold)


def _integer_leaves(t: ForestTables, total: int) -> ForestTables:
    k = t.n_classes
    if t.n_mixed == 0:
        return t  # integer votes already
    weights = quantize_leaves(t.leaf_proba, total)
    rows: dict[bytes, int] = {}
    kept: list[np.ndarray] = []
    remap = np.zeros(t.n_mixed, np.int64)
    for m, w in enumerate(weights):
        nonzero = np.flatnonzero(w)
        if len(nonzero) == 1:
            remap[m] = int(nonzero[0])  # rounded to one class: a pure leaf
            continue
        key = w.tobytes()
        if key not in rows:
            rows[key] = len(kept)
            kept.append(w)
        remap[m] = k + rows[key]

    def refs(values: np.ndarray, is_leaf: np.ndarray) -> np.ndarray:
        out = values.copy()
        mixed = is_leaf & (values >= k)
        out[mixed] = remap[values[mixed] - k]
        return out

    table = np.array(kept, np.int64).reshape(-1, k)
    dtype = np.uint8 if total <= 0xFF else np.uint16
    return dataclasses.replace(
        t, left=refs(t.left, t.left_is_leaf), right=refs(t.right, t.right_is_leaf),
        leaf_proba=table.astype(np.float64) / total, leaf_num=table.astype(dtype),
        leaf_den=np.zeros(0, dtype), leaf_total=total if len(kept) else 0)
