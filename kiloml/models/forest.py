"""A scikit-learn tree ensemble flattened for the C kernel ``kml_trees``, exactly.

Exactness rests on three facts:

* scikit-learn casts features to float32 and compares ``x <= t`` with a float64
  threshold ``t``. For float32 ``x`` that equals ``x <= t32`` with ``t32`` the
  largest float32 not above ``t`` (``float32_threshold``). NaN goes to the side
  recorded in ``missing_go_to_left``.
* ``predict_proba`` adds each tree's leaf class fractions (float64) in tree order,
  then divides by the number of trees; ``predict`` is the first arg-max. Leaf
  fractions are ``sum_total / weighted_n_node_samples``; with whole sample counts
  (bootstrap or not) they are stored as small integers num/den whose double
  division reproduces them bit for bit (checked here), else as float64 bits.
* The C vote sums in float32 first and only trusts that when the leader is ahead
  by more than ``margin``, a bound on the float32 error; otherwise it redoes
  scikit-learn's float64 arithmetic exactly (kml_f64).

Node layout: internal nodes of each tree in pre-order, children as references
relative to the tree's root, or leaf payloads (flagged in bitmaps). Types are the
narrowest that fit, and thresholds are shared through a table when that is smaller.

Compact tables (``forest_compact.py``) change the model, not the exactness: int16
thresholds compare a per-feature quantization of x computed in float32 the same way
on both sides, and integer leaf weights make the vote an integer sum (mode 3). Their
Python mirror (``predict_batch``) is then the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiloml.errors import KilomlError

TREE_LEAF = -1  # sklearn.tree._tree.TREE_LEAF
F32 = np.float32


def float32_threshold(threshold: float) -> np.float32:
    """Largest float32 ``t32 <= threshold``: for every float32 x, x <= threshold iff x <= t32."""
    t32 = np.float32(threshold)
    if np.isinf(t32) and not np.isinf(threshold):
        t32 = np.float32(np.finfo(np.float32).max) if threshold > 0 else np.float32(-np.inf)
    if float(t32) > threshold:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    return t32


def integer_fractions(proba: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numerators [n, K] and denominators [n] with num / den == proba bit for bit in
    float64, reduced by their common divisor; empty arrays if some row has none
    (non-integer sample weights, e.g. class_weight on a single tree or extra trees;
    a random forest draws its balanced bootstrap in whole counts)."""
    empty = (np.zeros((0, proba.shape[1]), np.uint8), np.zeros(0, np.uint8))
    if not len(proba) or not np.all(weights == np.round(weights)):
        return empty
    den = np.round(weights).astype(np.int64)
    num = np.round(proba * den[:, None]).astype(np.int64)
    g = np.gcd.reduce(np.concatenate([num, den[:, None]], axis=1), axis=1)
    num, den = num // g[:, None], den // g
    exact = num.astype(np.float64) / den[:, None].astype(np.float64)
    if not np.array_equal(exact.view(np.int64), proba.view(np.int64)):
        return empty
    if not np.array_equal(num.sum(axis=1), den):
        return empty  # the C kernel takes each denominator as the sum of its numerators
    top = max(int(num.max(initial=0)), int(den.max(initial=0)))
    dtype = np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else None
    if dtype is None:
        return empty
    return num.astype(dtype), den.astype(dtype)


def _uint_for(top: int) -> type:
    return np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else np.uint32


def _bits(flags: list[bool]) -> np.ndarray:
    return np.packbits(np.array(flags, dtype=bool), bitorder="little")


def fast_margin(n_trees: int) -> np.float32:
    """The lead above which the float32 sums decide as scikit-learn's float64 would.

    Each class sum adds at most one term per tree. A term (a fraction < 1, rounded
    to float32) is off by at most 2^-25, each float32 addition of values up to
    n_trees by half a spacing there, and scikit-learn's own float64 sums are off by
    far less; the leader's lead is computed in float32 too (one more half spacing).
    """
    t = float(n_trees)
    f32_error = t * 2.0**-25 + t * float(np.spacing(np.float32(t))) / 2
    f64_error = t * 2.0**-54 + t * float(np.spacing(np.float64(t))) / 2
    margin = 2 * (f32_error + f64_error) + float(np.spacing(np.float32(t))) + 1e-30
    m32 = np.float32(margin)
    return m32 if float(m32) >= margin else np.nextafter(m32, np.float32(np.inf))


QNAN = -32768  # the quantized value of a NaN feature (no threshold is below -32767)
QMAX = 32767


def quantize_inputs(x: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """int16 [N, U]: kml_forest_quantize for float32 rows x [N, U] (the used features):
    v = (x - offset) * scale in float32, floor, clamped to [-32767, 32767]; NaN -> QNAN."""
    x = np.asarray(x, dtype=F32)
    with np.errstate(over="ignore", invalid="ignore"):
        v = (x - offset.astype(F32)) * scale.astype(F32)  # float32 ops, rounded each
        q = np.clip(np.floor(v), -QMAX, QMAX)
    q[np.isnan(v)] = QNAN
    return q.astype(np.int16)


@dataclass
class ForestTables:
    n_classes: int
    n_features: int
    tree_base: np.ndarray  # [n_trees] first node of each tree
    feature: np.ndarray  # [n_nodes]
    threshold: np.ndarray  # float32 [n_nodes]: each node's own threshold
    left: np.ndarray  # [n_nodes] relative node or leaf payload
    right: np.ndarray
    left_is_leaf: np.ndarray  # bool [n_nodes]
    right_is_leaf: np.ndarray
    nan_left: np.ndarray  # bool [n_nodes]
    max_depth: int
    # Mixed leaves, payload n_classes + m: exact class fractions of leaf m.
    leaf_proba: np.ndarray  # float64 [n_mixed, n_classes]
    leaf_num: np.ndarray  # [n_mixed, n_classes] numerators (mode 1), else empty
    leaf_den: np.ndarray  # [n_mixed] denominators (mode 1), else empty
    # Compact thresholds: the walk compares q = quantize_inputs(x[:, inputs]) with
    # qthreshold; node_input indexes inputs (the features the trees use).
    inputs: np.ndarray | None = None  # [U] feature indices
    input_offset: np.ndarray | None = None  # float32 [U]
    input_scale: np.ndarray | None = None  # float32 [U]
    node_input: np.ndarray | None = None  # [n_nodes]
    qthreshold: np.ndarray | None = None  # int16 [n_nodes]
    # Integer leaves (mode 3): leaf_num holds weights summing to leaf_total per mixed
    # leaf, a pure leaf weighs leaf_total; the vote is an integer sum.
    leaf_total: int = 0
    # Another engine's ensemble (an ONNX TreeEnsembleClassifier, kiloml.models.onnx_trees):
    # the leaf terms are its float32 weights and their float32 sums in tree order are its
    # scores and its decision (the first maximum), as onnxruntime computes them: the fast
    # path always decides (margin -1, no float64 path) and the scores are not divided.
    float32_sums: bool = False

    @property
    def quantized(self) -> bool:
        return self.qthreshold is not None

    @property
    def n_inputs(self) -> int:
        return len(self.inputs) if self.quantized else self.n_features

    @property
    def n_trees(self) -> int:
        return len(self.tree_base)

    @property
    def n_nodes(self) -> int:
        return len(self.feature)

    @property
    def n_mixed(self) -> int:
        return int(self.leaf_proba.shape[0])

    @property
    def score_mode(self) -> int:
        """0: integer votes, 1: integer fractions, 2: float64 fractions, 3: integer leaf
        weights (KML_TREE_PROBA)."""
        if self.n_mixed == 0:
            return 0
        if self.leaf_total:
            return 3
        return 1 if self.leaf_den.size else 2

    @property
    def margin(self) -> np.float32:
        if self.float32_sums:
            return F32(-1.0)  # lead - second >= 0 > -1: the float32 sums always decide
        return fast_margin(self.n_trees)

    # --- encodings, narrowest that fit ---------------------------------------------

    @property
    def feature_ctype(self) -> str:
        return "uint8_t" if self.n_features <= 256 else "uint16_t"

    @property
    def head_dtype(self) -> type:
        """Node head: the feature (or quantized input) index plus two leaf bits on top."""
        if self.n_inputs <= 64:
            return np.uint8
        if self.n_inputs <= 1 << 14:
            return np.uint16
        raise ValueError(f"{self.n_features} features; the tree kernel takes at most 16384")

    def heads(self) -> np.ndarray:
        dtype = self.head_dtype
        bits = 8 * np.dtype(dtype).itemsize
        index = self.node_input if self.quantized else self.feature
        head = (index.astype(np.uint32)
                | (self.left_is_leaf.astype(np.uint32) << (bits - 1))
                | (self.right_is_leaf.astype(np.uint32) << (bits - 2)))
        return head.astype(dtype)

    @property
    def ref_dtype(self) -> type:
        top = max(int(self.left.max(initial=0)), int(self.right.max(initial=0)))
        return _uint_for(top)

    @property
    def base_dtype(self) -> type:
        return _uint_for(int(self.tree_base.max(initial=0)))

    @property
    def class_dtype(self) -> type:
        return _uint_for(self.n_classes - 1)

    @property
    def fraction_dtype(self) -> type:
        return self.leaf_num.dtype.type if self.leaf_num.size else np.uint8

    def threshold_table(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(table, index per node) when sharing thresholds takes less flash than one per
        node, else None. The table holds float32 thresholds, or int16 ones when quantized."""
        if self.quantized:
            table, index = np.unique(self.qthreshold, return_inverse=True)
            width = 2
        else:
            table, index = np.unique(self.threshold.view(np.uint32), return_inverse=True)
            table, width = table.view(np.float32), 4
        index_dtype = _uint_for(len(table) - 1)
        shared = width * len(table) + np.dtype(index_dtype).itemsize * self.n_nodes
        if index_dtype is np.uint32 or shared >= width * self.n_nodes:
            return None
        return table, index.reshape(-1).astype(index_dtype)

    def table_bytes(self) -> dict[str, int]:
        """Bytes of each constant table the "table" C form holds (the structure, for the
        cost model and the compaction report)."""
        n = self.n_nodes
        ref = np.dtype(self.ref_dtype).itemsize
        out = {"tree_base": self.n_trees * np.dtype(self.base_dtype).itemsize,
               "head": n * np.dtype(self.head_dtype).itemsize,
               "children": 2 * n * ref,
               "nan_left": (n + 7) // 8}
        shared = self.threshold_table()
        width = 2 if self.quantized else 4
        out["thresholds"] = width * n if shared is None else \
            width * len(shared[0]) + n * shared[1].dtype.itemsize
        if self.quantized:
            index = 1 if self.n_features <= 256 else 2
            out["inputs"] = self.n_inputs * (4 + 4 + index)
        out["leaves"] = self.leaf_bytes()
        return out

    def leaf_bytes(self) -> int:
        mode = self.score_mode
        if mode == 0:
            return 0
        entries = int((self.leaf_proba > 0).sum())
        if mode == 2:
            return 2 * (self.n_mixed + 1) + entries * (np.dtype(self.class_dtype).itemsize + 8)
        width = np.dtype(self.fraction_dtype).itemsize
        if not self.sparse_leaves():
            return self.n_mixed * self.n_classes * width
        return 2 * (self.n_mixed + 1) + entries * (np.dtype(self.class_dtype).itemsize + width)

    def sparse_leaves(self) -> bool:
        """Sparse (class, value) entries when smaller than dense rows."""
        if self.score_mode not in (1, 3):
            return True
        width = np.dtype(self.fraction_dtype).itemsize
        nonzero = int((self.leaf_num > 0).sum())
        dense = self.n_mixed * self.n_classes * width
        sparse = 2 * (self.n_mixed + 1) + nonzero * (
            np.dtype(self.class_dtype).itemsize + width)
        return sparse < dense

    # --- what the C kernel computes, in Python (for tests and the inline emitter) ---

    def leaf(self, tree: int, x: np.ndarray) -> int:
        """The C walk: the leaf payload tree ``tree`` reaches for features ``x``."""
        node = 0
        base = int(self.tree_base[tree])
        q = self.quantize(np.asarray(x)[None])[0] if self.quantized else None
        while True:
            i = base + node
            if q is not None:
                v = int(q[self.node_input[i]])
                go_left = v <= int(self.qthreshold[i]) and (v != QNAN or bool(self.nan_left[i]))
            else:
                v = x[self.feature[i]]
                go_left = v <= self.threshold[i] or (np.isnan(v) and bool(self.nan_left[i]))
            ref = int(self.left[i] if go_left else self.right[i])
            if (self.left_is_leaf if go_left else self.right_is_leaf)[i]:
                return ref
            node = ref

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """int16 [N, U]: the quantized inputs of float32 feature rows [N, n_features]."""
        return quantize_inputs(np.asarray(x, F32)[:, self.inputs], self.input_offset,
                               self.input_scale)

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """int64 [N, n_trees]: the leaf payload of every tree for every row (the C walk,
        vectorized over rows)."""
        x = np.asarray(x, F32)
        values = self.quantize(x).astype(np.int32) if self.quantized else x
        n = len(x)
        out = np.zeros((n, self.n_trees), np.int64)
        rows = np.arange(n)
        for tree in range(self.n_trees):
            node = np.zeros(n, np.int64)
            active = np.ones(n, bool)
            for _ in range(self.max_depth + 1):
                r = rows[active]
                if not len(r):
                    break
                i = self.tree_base[tree] + node[r]
                nan_left = self.nan_left[i]
                if self.quantized:
                    v = values[r, self.node_input[i]]
                    left = (v <= self.qthreshold[i]) & ((v != QNAN) | nan_left)
                else:
                    v = values[r, self.feature[i]]
                    left = (v <= self.threshold[i]) | (np.isnan(v) & nan_left)
                ref = np.where(left, self.left[i], self.right[i])
                leaf = np.where(left, self.left_is_leaf[i], self.right_is_leaf[i])
                out[r[leaf], tree] = ref[leaf]
                node[r] = ref
                active[r[leaf]] = False
            assert not active.any(), "a walk deeper than max_depth"
        return out

    def payload_weights(self) -> np.ndarray:
        """Mode 3: int64 [n_classes + n_mixed, K] weight rows of every payload."""
        pure = np.eye(self.n_classes, dtype=np.int64) * self.leaf_total
        return np.vstack([pure, self.leaf_num.astype(np.int64).reshape(-1, self.n_classes)])

    def predict_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labels [N], proba float64 [N, K], device scores float32 [N, K]): what the C
        library decides and writes, bit for bit. proba is the scores in float64 (modes
        1 and 2: scikit-learn's float64 mean of the leaves the walk reached)."""
        payloads = self.leaves(x)
        n, k = len(payloads), self.n_classes
        mode = self.score_mode
        if mode in (0, 3):
            weights = np.eye(k, dtype=np.int64) if mode == 0 else self.payload_weights()
            sums = np.zeros((n, k), np.int64)
            for t in range(self.n_trees):
                sums += weights[payloads[:, t]]
            total = self.n_trees * (self.leaf_total if mode == 3 else 1)
            inv = F32(1.0) / F32(1 if self.float32_sums else total)
            scores = sums.astype(F32) * inv
            return np.argmax(sums, axis=1), scores.astype(np.float64), scores
        table = np.vstack([np.eye(k), self.leaf_proba])
        terms = np.zeros((k + self.n_mixed, k), F32)  # the fast path's float32 terms
        for p in range(len(terms)):
            for c, term in self.fast_terms(p):
                terms[p, c] = term
        acc = np.zeros((n, k))
        fast = np.zeros((n, k), F32)
        for t in range(self.n_trees):  # tree order, as scikit-learn and kml_forest_vote
            acc = acc + table[payloads[:, t]]
            fast = fast + terms[payloads[:, t]]  # adding 0.0 changes no sum
        proba = acc / float(self.n_trees)
        # kml_forest_vote: the float32 sums decide when the leader leads by more than
        # the margin; otherwise the exact float64 sums, rounded to float32, are the scores
        best = np.argmax(fast, axis=1)
        others = fast.copy()
        others[np.arange(n), best] = 0.0
        lead = fast[np.arange(n), best] - np.maximum(others.max(axis=1, initial=0.0), F32(0))
        decides = lead.astype(F32) > self.margin
        if self.float32_sums:  # onnxruntime's arithmetic: the float32 sums are everything
            return np.argmax(fast, axis=1), fast.astype(np.float64), fast
        inv = F32(1.0) / F32(self.n_trees)
        scores = np.where(decides[:, None], fast * inv, acc.astype(F32) * inv).astype(F32)
        return np.argmax(proba, axis=1), proba, scores

    def fast_terms(self, payload: int) -> list[tuple[int, np.float32]]:
        """(class, float32 term) added to the fast sums for a leaf, in class order."""
        if payload < self.n_classes:
            return [(payload, F32(1.0))]
        m = payload - self.n_classes
        row = self.leaf_proba[m]
        out = []
        for k in np.flatnonzero(row):
            if self.score_mode == 1:
                out.append((int(k), F32(self.leaf_num[m, k]) / F32(self.leaf_den[m])))
            else:
                out.append((int(k), F32(row[k])))
        return out

    def fast_sums(self, payloads: list[int]) -> np.ndarray:
        sums = np.zeros(self.n_classes, dtype=np.float32)
        for p in payloads:
            for k, term in self.fast_terms(p):
                sums[k] = F32(sums[k] + term)
        return sums

    def device_scores(self, x: np.ndarray) -> np.ndarray:
        """float32 [K]: the scores kml_forest_predict writes for features ``x``, bit for bit
        (the fast float32 sums, or the exact float64 sums when the fast path defers)."""
        return self.scores_from([self.leaf(t, x) for t in range(self.n_trees)])

    def scores_from(self, payloads: list[int]) -> np.ndarray:
        """float32 [K]: the scores the C vote writes for these leaf payloads."""
        k = self.n_classes
        if self.score_mode == 3:
            sums = self.payload_weights()[np.asarray(payloads, np.int64)].sum(axis=0)
            return sums.astype(F32) * (F32(1.0) / F32(self.n_trees * self.leaf_total))
        inv = F32(1.0) / F32(1 if self.float32_sums else self.n_trees)
        if self.score_mode == 0:
            votes = np.bincount(payloads, minlength=k)[:k]
            return votes.astype(F32) * inv
        if self.fast_path_decides(payloads):
            return self.fast_sums(payloads) * inv
        acc = [0.0] * k  # float64, tree order, classes ascending: kml_forest_exact_vote
        for p in payloads:
            if p < k:
                acc[p] += 1.0
                continue
            m = p - k
            for c in np.flatnonzero(self.leaf_proba[m]):
                acc[c] += (float(self.leaf_num[m, c]) / float(self.leaf_den[m])
                           if self.score_mode == 1 else float(self.leaf_proba[m, c]))
        return np.array(acc, dtype=np.float64).astype(F32) * inv

    def fast_path_decides(self, payloads: list[int]) -> bool:
        """Whether the C fast path decides (else it takes the exact float64 path)."""
        if self.score_mode in (0, 3):
            return True
        s = self.fast_sums(payloads)
        best = int(np.argmax(s))
        others = np.delete(s, best)
        second = others.max() if len(others) else F32(0)
        return bool(F32(s[best] - max(second, F32(0))) > self.margin)


def _class_columns(est, n_classes: int) -> np.ndarray:
    """Per-node class fractions [nodes, n_classes] of a fitted tree. scikit-learn >= 1.4
    keeps fractions per node; a tree fitted on its own (not inside a forest, which encodes
    the labels first) has columns only for the labels it saw, given by its classes_."""
    values = est.tree_.value[:, 0, :]
    if values.shape[1] == n_classes:
        return values
    seen = np.asarray(getattr(est, "classes_", []))
    if (len(seen) != values.shape[1] or not np.issubdtype(seen.dtype, np.integer)
            or seen.min(initial=0) < 0 or seen.max(initial=0) >= n_classes):
        raise ValueError(f"a tree has {values.shape[1]} class columns for {n_classes} "
                         f"classes and no class labels to place them")
    full = np.zeros((len(values), n_classes), dtype=values.dtype)
    full[:, seen.astype(int)] = values
    return full


def forest_tables(estimators: list, n_classes: int, n_features: int) -> ForestTables:
    """Flatten fitted scikit-learn trees (all trained on the same classes)."""
    base: list[int] = []
    feature: list[int] = []
    threshold: list[np.float32] = []
    left: list[int] = []
    right: list[int] = []
    left_leaf: list[bool] = []
    right_leaf: list[bool] = []
    nan_left: list[bool] = []
    mixed: dict[bytes, int] = {}
    mixed_rows: list[np.ndarray] = []
    mixed_weights: list[float] = []
    max_depth = 1

    def payload(proba: np.ndarray, weight: float) -> int:
        nonzero = np.flatnonzero(proba)
        if len(nonzero) == 1 and proba[nonzero[0]] == 1.0:
            return int(nonzero[0])
        key = proba.tobytes()
        if key not in mixed:
            mixed[key] = len(mixed_rows)
            mixed_rows.append(proba.copy())
            mixed_weights.append(weight)
        return n_classes + mixed[key]

    for est in estimators:
        tree = est.tree_
        values = _class_columns(est, n_classes)
        weights = tree.weighted_n_node_samples
        children_left, children_right = tree.children_left, tree.children_right
        base.append(len(feature))
        if children_left[0] == TREE_LEAF:
            # A tree that is one leaf: a node whose both sides are that leaf.
            p = payload(values[0], float(weights[0]))
            feature.append(0)
            threshold.append(F32(0.0))
            left.append(p)
            right.append(p)
            left_leaf.append(True)
            right_leaf.append(True)
            nan_left.append(True)
            continue
        max_depth = max(max_depth, int(tree.max_depth))
        internal = np.flatnonzero(children_left != TREE_LEAF)
        relative = {int(node): i for i, node in enumerate(internal)}
        for node in internal:
            feature.append(int(tree.feature[node]))
            threshold.append(float32_threshold(float(tree.threshold[node])))
            for child, refs, flags in ((children_left[node], left, left_leaf),
                                       (children_right[node], right, right_leaf)):
                child = int(child)
                if children_left[child] == TREE_LEAF:
                    refs.append(payload(values[child], float(weights[child])))
                    flags.append(True)
                else:
                    refs.append(relative[child])
                    flags.append(False)
            # scikit-learn sends NaN to the side that saw missing values in training,
            # or else to the child with more samples.
            nan_left.append(bool(tree.missing_go_to_left[node]))

    leaf_proba = np.array(mixed_rows, dtype=np.float64).reshape(-1, n_classes)
    leaf_num, leaf_den = integer_fractions(leaf_proba, np.array(mixed_weights))
    top_ref = max(max(left, default=0), max(right, default=0))
    if top_ref > 0xFFFF:
        raise KilomlError(f"the forest's C tables need {top_ref + 1:,} node and leaf "
                          f"references; they hold at most 65,536: lower max_depth or "
                          f"n_estimators, or raise min_samples_leaf", where="[model]")
    return ForestTables(
        n_classes=n_classes,
        n_features=n_features,
        tree_base=np.array(base, dtype=np.int64),
        feature=np.array(feature, dtype=np.uint8 if n_features <= 256 else np.uint16),
        threshold=np.array(threshold, dtype=np.float32),
        left=np.array(left, dtype=np.int64),
        right=np.array(right, dtype=np.int64),
        left_is_leaf=np.array(left_leaf, dtype=bool),
        right_is_leaf=np.array(right_leaf, dtype=bool),
        nan_left=np.array(nan_left, dtype=bool),
        max_depth=max_depth,
        leaf_proba=leaf_proba,
        leaf_num=leaf_num,
        leaf_den=leaf_den,
    )
