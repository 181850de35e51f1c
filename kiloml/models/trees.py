"""Tree models (scikit-learn DecisionTree, RandomForest, ExtraTrees) and their exact C form.

Exactness rests on two facts:

* scikit-learn casts features to float32 and compares ``x <= t`` with a float64
  threshold ``t``. For float32 ``x`` that is the same as ``x <= t32`` where
  ``t32`` is the largest float32 not above ``t`` (``float32_threshold``).
* ``predict_proba`` adds each tree's leaf class fractions (float64) in tree
  order, then divides by the number of trees; ``predict`` is the first arg-max.
  The C kernel does the same arithmetic, so decisions are identical: integer
  votes when every leaf is pure (same arg-max); otherwise double sums of leaf
  fractions, each stored either as small integers ``count / total`` (a double
  division reproduces sklearn's ``sum_total / weighted_n_node_samples``; checked
  bit for bit when the tables are built) or, failing that, as doubles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from kiloml.codegen.cwriter import c_array, c_double, c_float, c_matrix
from kiloml.project import TreeModelConfig
from kiloml.stage import CStage, EmitContext, StageCost
from kiloml.targets.profiles import TargetProfile

TREE_LEAF = -1  # sklearn.tree._tree.TREE_LEAF
INT16_MAX = 32767


def float32_threshold(threshold: float) -> np.float32:
    """Largest float32 ``t32 <= threshold``: for every float32 x, x <= threshold iff x <= t32."""
    t32 = np.float32(threshold)
    if np.isinf(t32) and not np.isinf(threshold):
        t32 = np.float32(np.finfo(np.float32).max) if threshold > 0 else np.float32(-np.inf)
    if float(t32) > threshold:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    return t32


@dataclass
class ForestTables:
    """A tree ensemble flattened for the C kernel ``kml_forest_predict``.

    Leaf payload p < n_classes: a pure leaf of class p. Otherwise row
    p - n_classes of the mixed-leaf table: ``leaf_num / leaf_den`` (integer
    fractions) when ``leaf_den`` is not empty, else ``leaf_proba`` (doubles).
    """

    n_classes: int
    n_features: int
    roots: np.ndarray  # int32 [n_trees]: first node of each tree, or -(payload+1)
    feature: np.ndarray  # [n_nodes]
    threshold: np.ndarray  # float32 [n_nodes]
    left: np.ndarray  # int16 [n_nodes]
    right: np.ndarray  # int16 [n_nodes]
    missing_left: np.ndarray  # uint8 bitmap [ceil(n_nodes / 8)]: NaN goes left at node i
    leaf_proba: np.ndarray  # float64 [n_mixed, n_classes] (class fractions as sklearn holds them)
    leaf_num: np.ndarray  # uint8/uint16 [n_mixed, n_classes] or empty
    leaf_den: np.ndarray  # uint8/uint16 [n_mixed] or empty
    max_depth: int

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    @property
    def n_nodes(self) -> int:
        return len(self.feature)

    @property
    def n_mixed(self) -> int:
        return int(self.leaf_proba.shape[0])

    @property
    def score_mode(self) -> int:
        """0: integer votes, 1: integer fractions, 2: doubles (``KML_TREE_PROBA``)."""
        if self.n_mixed == 0:
            return 0
        return 1 if self.leaf_den.size else 2

    @property
    def feature_ctype(self) -> str:
        return "uint8_t" if self.n_features <= 256 else "uint16_t"

    @property
    def fraction_ctype(self) -> str:
        return f"uint{8 * self.leaf_num.dtype.itemsize}_t"

    @property
    def constant_bytes(self) -> int:
        index_bytes = 1 if self.n_features <= 256 else 2
        leaves = {0: 0, 1: self.leaf_num.nbytes + self.leaf_den.nbytes,
                  2: self.leaf_proba.nbytes}[self.score_mode]
        return (4 * self.n_trees + self.n_nodes * (index_bytes + 4 + 2 + 2) + leaves
                + self.missing_left.nbytes)

    def nan_goes_left(self, node: int) -> bool:
        return bool((self.missing_left[node >> 3] >> (node & 7)) & 1)

    def leaf(self, tree: int, x: np.ndarray) -> int:
        """The C kernel's walk in Python (used by tests)."""
        base = int(self.roots[tree])
        if base < 0:
            return -base - 1
        node = 0
        while True:
            i = base + node
            v = x[self.feature[i]]
            go_left = v <= self.threshold[i] or (np.isnan(v) and self.nan_goes_left(i))
            nxt = self.left[i] if go_left else self.right[i]
            if nxt < 0:
                return -int(nxt) - 1
            node = int(nxt)


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
    top = max(int(num.max(initial=0)), int(den.max(initial=0)))
    dtype = np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else None
    if dtype is None:
        return empty
    return num.astype(dtype), den.astype(dtype)


def forest_tables(estimators: list[DecisionTreeClassifier], n_classes: int,
                  n_features: int) -> ForestTables:
    roots: list[int] = []
    feature: list[int] = []
    threshold: list[np.float32] = []
    left: list[int] = []
    right: list[int] = []
    missing_left: list[bool] = []
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
        if tree.value.shape[2] != n_classes:
            raise ValueError("every tree must see every class")
        max_depth = max(max_depth, int(tree.max_depth))
        children_left, children_right = tree.children_left, tree.children_right
        internal = np.flatnonzero(children_left != TREE_LEAF)
        if len(internal) > INT16_MAX:
            raise ValueError(f"a tree has {len(internal)} internal nodes; at most {INT16_MAX} "
                             f"are supported (limit max_depth)")
        relative = {int(node): i for i, node in enumerate(internal)}
        values = tree.value[:, 0, :]  # sklearn >= 1.4 stores class fractions per node
        weights = tree.weighted_n_node_samples

        def ref(node: int, rel=relative, ch=children_left, vals=values, w=weights) -> int:
            if ch[node] == TREE_LEAF:
                p = payload(vals[node], float(w[node]))
                if p > INT16_MAX - 1:
                    raise ValueError("too many distinct mixed leaves")
                return -(p + 1)
            return rel[node]

        root_ref = ref(0)
        roots.append(len(feature) if root_ref >= 0 else root_ref)
        for node in internal:
            feature.append(int(tree.feature[node]))
            threshold.append(float32_threshold(float(tree.threshold[node])))
            left.append(ref(int(children_left[node])))
            right.append(ref(int(children_right[node])))
            # sklearn sends NaN to the side that saw missing values in training, or
            # else to the child with more samples; the C kernel does the same.
            missing_left.append(bool(tree.missing_go_to_left[node]))

    leaf_proba = np.array(mixed_rows, dtype=np.float64).reshape(-1, n_classes)
    leaf_num, leaf_den = integer_fractions(leaf_proba, np.array(mixed_weights))
    return ForestTables(
        n_classes=n_classes,
        n_features=n_features,
        roots=np.array(roots, dtype=np.int32),
        feature=np.array(feature, dtype=np.uint8 if n_features <= 256 else np.uint16),
        threshold=np.array(threshold, dtype=np.float32),
        left=np.array(left, dtype=np.int16),
        right=np.array(right, dtype=np.int16),
        missing_left=np.packbits(np.array(missing_left, dtype=bool), bitorder="little"),
        leaf_proba=leaf_proba,
        leaf_num=leaf_num,
        leaf_den=leaf_den,
        max_depth=max_depth,
    )


class TreeModel:
    """A scikit-learn tree classifier as a pipeline stage (features -> class scores)."""

    C_STYLES = ("table",)

    def __init__(self, config: TreeModelConfig, n_classes: int) -> None:
        self.config = config
        self.n_classes = n_classes
        self.estimator = self._make()
        self.tables: ForestTables | None = None

    def _make(self) -> DecisionTreeClassifier | RandomForestClassifier | ExtraTreesClassifier:
        c = self.config
        common = dict(max_depth=c.max_depth, min_samples_leaf=c.min_samples_leaf,
                      max_features=None if c.max_features == "all" else c.max_features,
                      class_weight=c.class_weight,
                      random_state=c.random_state)
        if c.kind == "decision_tree":
            return DecisionTreeClassifier(**common)
        cls = RandomForestClassifier if c.kind == "random_forest" else ExtraTreesClassifier
        # n_jobs=1 keeps predict_proba's summation in tree order (the C order).
        return cls(n_estimators=c.n_estimators, n_jobs=1, **common)

    @property
    def estimators(self) -> list[DecisionTreeClassifier]:
        est = self.estimator
        return [est] if isinstance(est, DecisionTreeClassifier) else list(est.estimators_)

    def fit(self, x: np.ndarray, y: np.ndarray) -> TreeModel:
        self.estimator.fit(np.asarray(x, dtype=np.float32), y)
        self.tables = None
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.estimator.predict(np.asarray(x, dtype=np.float32))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Scores [N, n_classes] (columns for classes absent from training are 0)."""
        proba = self.estimator.predict_proba(np.asarray(x, dtype=np.float32))
        out = np.zeros((len(x), self.n_classes))
        out[:, self.estimator.classes_.astype(int)] = proba
        return out

    def compile(self, n_features: int) -> ForestTables:
        if list(self.estimator.classes_) != list(range(self.n_classes)):
            raise ValueError("the model must be trained on every class to be emitted as C")
        self.tables = forest_tables(self.estimators, self.n_classes, n_features)
        return self.tables

    def emit_c(self, ctx: EmitContext) -> CStage:
        t = self.tables or self.compile(ctx.n_inputs)
        p = ctx.prefix
        mode = t.score_mode
        constants = [
            c_array("int32_t", f"{p}roots", t.roots),
            c_array(t.feature_ctype, f"{p}feature", t.feature, per_line=16),
            c_array("float", f"{p}threshold", t.threshold, fmt=c_float, per_line=6),
            c_array("int16_t", f"{p}left", t.left, per_line=12),
            c_array("int16_t", f"{p}right", t.right, per_line=12),
            c_array("uint8_t", f"{p}missing_left", t.missing_left, per_line=16),
        ]
        leaf_refs = "NULL, NULL, NULL"
        if mode == 1:
            constants.append(c_array(t.fraction_ctype, f"{p}leaf_num", t.leaf_num.ravel(),
                                     per_line=t.n_classes))
            constants.append(c_array(t.fraction_ctype, f"{p}leaf_den", t.leaf_den, per_line=16))
            leaf_refs = f"{p}leaf_num, {p}leaf_den, NULL"
        elif mode == 2:
            constants.append(c_matrix("double", f"{p}leaf_proba", t.leaf_proba, fmt=c_double))
            leaf_refs = f"NULL, NULL, &{p}leaf_proba[0][0]"
        constants.append(
            f"static const kml_forest_t {p}forest = {{\n"
            f"    {t.n_trees}, {t.n_classes}, {t.max_depth},\n"
            f"    {p}roots, {p}feature, {p}threshold, {p}left, {p}right, {p}missing_left,\n"
            f"    {leaf_refs}\n}};\n")
        config = [
            f"#define KML_TREE_FEATURE_T {t.feature_ctype}",
            f"#define KML_TREE_MAX_CLASSES {t.n_classes}",
            f"#define KML_TREE_PROBA {mode}",
        ]
        if mode == 1:
            config.append(f"#define KML_TREE_FRACTION_T {t.fraction_ctype}")
        call = f"{ctx.output}->label = kml_forest_predict(&{p}forest, {ctx.input}, " \
               f"{ctx.output}->scores);"
        return CStage(runtime=["kml_trees"], config=config, constants="\n".join(constants),
                      call=call)

    def cost(self, profile: TargetProfile, n_features: int) -> StageCost:
        t = self.tables or self.compile(n_features)
        # ~9 instructions per node visited; trees are walked to max_depth at worst.
        per_node = 9 if profile.has_fpu else 40
        accumulate = (8, 150 * t.n_classes, 60 * t.n_classes)[t.score_mode] * t.n_trees
        return StageCost(flash_bytes=t.constant_bytes + 400, ram_bytes=0,
                         instructions=t.n_trees * t.max_depth * per_node + accumulate)

    def describe(self) -> dict:
        t = self.tables
        info = {"kind": self.config.kind, "n_trees": len(self.estimators)}
        if t is not None:
            info.update(n_internal_nodes=t.n_nodes, max_depth=t.max_depth,
                        mixed_leaves=t.n_mixed,
                        score_arithmetic=("integer votes", "double sums of integer fractions",
                                          "double sums of double fractions")[t.score_mode])
        return info
