"""ONNX tree ensembles (``ai.onnx.ml.TreeEnsembleClassifier``, as skl2onnx writes a
scikit-learn DecisionTree, RandomForest or ExtraTrees) on kiloml's exact tree engine.

The decisions are onnxruntime's on the converted model, bit for bit. onnxruntime walks
each tree with float32 compares of the feature against the node's float32 value and
adds the reached leaf's float32 class weights to float32 per-class sums, tree by tree
in the order the trees are listed; with post_transform NONE and no base values the
sums are the output probabilities, and the label is the first class with the largest
sum. The tables here hold exactly that (``ForestTables.float32_sums``):

- a node's mode becomes the engine's ``x <= t`` with the left child taken when it holds:
  BRANCH_LEQ t -> t, true child left; BRANCH_LT t -> the float32 below t (x < t is
  x <= that for float32 x), true child left; BRANCH_GT / BRANCH_GTE -> the same
  thresholds with the children swapped. NaN goes to the true child when
  ``nodes_missing_value_tracks_true`` says so, else to the false child (a NaN
  compares false);
- a leaf's weights are the fast path's float32 terms (a leaf of weight 1.0 for one
  class is a plain vote), summed in tree order; the margin is -1, so the float32 sums
  always decide (no float64 path), and the scores are the sums themselves;
- the tables keep the model's class order (ties go to the first class as in
  onnxruntime); the project's class order is applied after the vote.

What is refused, in one line each: two classes (onnxruntime's binary rules), another
ensemble (post_transform other than NONE, base values: a boosted model), BRANCH_EQ /
BRANCH_NEQ, ``*_as_tensor`` (double) attributes, non-finite thresholds or weights,
negative weights, a leaf without weights, weights on a branch node, a class listed twice
in one leaf, trees whose nodes do not form one tree from the first listed node (a child
in another tree or missing, a node reached twice, a node never reached), features past
the input, anything but the ensemble between the input and the ensemble, classes that
are not the project's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from kiloml.errors import KilomlError
from kiloml.models.forest import ForestTables
from kiloml.optional import needs

F32 = np.float32
ML_DOMAIN = "ai.onnx.ml"
ENSEMBLE_OP = "TreeEnsembleClassifier"
LEAF, LEQ, LT, GTE, GT = 0, 1, 2, 3, 4
MODES = {"LEAF": LEAF, "BRANCH_LEQ": LEQ, "BRANCH_LT": LT, "BRANCH_GTE": GTE,
         "BRANCH_GT": GT}
MAX_DEPTH = 1000  # onnxruntime's own bound on a walk
MAX_FEATURES = 1 << 14  # the tree kernel's node head
MAX_REFERENCES = 0xFFFF
# operators that may follow the ensemble (its label and probability outputs' plumbing)
OUTPUT_OPS = {"ZipMap", "Identity", "Cast", "ArgMax", "ArrayFeatureExtractor", "Reshape"}


# the ensemble's arrays and their dtypes (what a saved pipeline holds)
ENSEMBLE_ARRAYS = {"tree_start": "int64", "node_id": "int64", "mode": "int8",
                   "feature": "int64", "value": "float32", "true_id": "int64",
                   "false_id": "int64", "missing_true": "bool", "weight_tree": "int64",
                   "weight_node": "int64", "weight_class": "int64", "weight_value": "float32"}


@dataclass
class EnsembleArrays:
    """A TreeEnsembleClassifier's attributes, as read (nodes in the file's order, trees as
    runs of equal tree ids); what a saved pipeline stores. ``build_tables`` checks them."""

    n_features: int
    class_labels: list[str]  # in the model's column order
    tree_start: np.ndarray  # int64 [T + 1]: first node of each tree
    node_id: np.ndarray  # int64 [n]
    mode: np.ndarray  # int8 [n]: LEAF, LEQ, LT, GTE, GT
    feature: np.ndarray  # int64 [n]
    value: np.ndarray  # float32 [n]
    true_id: np.ndarray  # int64 [n]
    false_id: np.ndarray  # int64 [n]
    missing_true: np.ndarray  # bool [n]
    weight_tree: np.ndarray  # int64 [m]: tree index of each weight
    weight_node: np.ndarray  # int64 [m]: node id of each weight
    weight_class: np.ndarray  # int64 [m]: column of each weight
    weight_value: np.ndarray  # float32 [m]

    @property
    def n_trees(self) -> int:
        return len(self.tree_start) - 1


# ---- reading the file -------------------------------------------------------------------

def ensemble_node(model: Any) -> Any | None:
    """The graph's TreeEnsembleClassifier node, if it has one."""
    found = [n for n in model.graph.node if n.op_type == ENSEMBLE_OP
             and (n.domain or "") == ML_DOMAIN]
    return found[0] if found else None


def is_tree_ensemble_file(path: str | Path) -> bool:
    """Whether ``path`` is an .onnx file holding a TreeEnsembleClassifier (checked as any
    .onnx kiloml reads; a bad file is its one-line error)."""
    if Path(path).suffix.lower() != ".onnx":
        return False
    from kiloml.nn.onnx_import import load_onnx_model

    return ensemble_node(load_onnx_model(path)) is not None


def read_ensemble(path: str | Path) -> EnsembleArrays:
    """The ensemble of an .onnx file, its attributes read and typed (structure checked by
    ``build_tables``)."""
    from kiloml.nn.onnx_import import load_onnx_model

    path = Path(path)
    model = load_onnx_model(path)
    node = ensemble_node(model)
    if node is None:
        raise KilomlError(f"the model has no {ML_DOMAIN}.{ENSEMBLE_OP}", file=path)
    where = f"node '{node.name or ENSEMBLE_OP}' ({ENSEMBLE_OP})"

    def error(message: str) -> KilomlError:
        return KilomlError(message, file=path, where=where)

    n_features = _input_width(model, node, path)
    attrs = _attributes(node)
    for name in attrs:
        if name.endswith("_as_tensor"):
            raise error(f"attribute {name} (double precision) is not supported; kiloml "
                        "imports float32 ensembles (skl2onnx's default)")
    post = attrs.get("post_transform", "NONE")
    if post != "NONE":
        raise error(f"post_transform {post} is not supported (a boosted ensemble); kiloml "
                    "imports DecisionTree / RandomForest / ExtraTrees ensembles, whose "
                    "leaf weights are summed as they are (NONE)")
    base = [float(v) for v in attrs.get("base_values", [])]
    if any(v != 0.0 for v in base):
        raise error("base_values are not supported (a boosted ensemble); kiloml imports "
                    "DecisionTree / RandomForest / ExtraTrees ensembles")
    ints = {k: np.asarray(attrs.get(k, []), np.int64) for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_truenodeids",
        "nodes_falsenodeids", "nodes_missing_value_tracks_true", "class_treeids",
        "class_nodeids", "class_ids")}
    values = np.asarray(attrs.get("nodes_values", []), np.float64)
    weights = np.asarray(attrs.get("class_weights", []), np.float64)
    modes_text = list(attrs.get("nodes_modes", []))
    n = len(ints["nodes_treeids"])
    if n == 0:
        raise error("the ensemble has no nodes")
    for name in ("nodes_nodeids", "nodes_featureids", "nodes_truenodeids",
                 "nodes_falsenodeids"):
        if len(ints[name]) != n:
            raise error(f"attribute {name} has {len(ints[name])} values for {n} nodes")
    if len(values) != n or len(modes_text) != n:
        raise error(f"attributes nodes_values / nodes_modes have {len(values)} / "
                    f"{len(modes_text)} values for {n} nodes")
    missing = ints["nodes_missing_value_tracks_true"]
    if len(missing) not in (0, n) or np.any((missing != 0) & (missing != 1)):
        raise error("attribute nodes_missing_value_tracks_true must hold 0 or 1 per node")
    m = len(ints["class_ids"])
    if len(ints["class_treeids"]) != m or len(ints["class_nodeids"]) != m or len(weights) != m:
        raise error("attributes class_treeids, class_nodeids, class_ids and class_weights "
                    "differ in length")
    mode = np.zeros(n, np.int8)
    for i, text in enumerate(modes_text):
        if text not in MODES:
            raise error(f"node {i}: mode {text} is not supported (supported: "
                        f"{', '.join(MODES)})")
        mode[i] = MODES[text]
    labels = _class_labels(attrs, error)
    if not np.all(np.isfinite(values[mode != LEAF])):
        raise error("a branch threshold is not finite")
    with np.errstate(over="ignore"):
        values32, weights32 = values.astype(F32), weights.astype(F32)
    if not np.all(np.isfinite(weights32)) or np.any(weights32 < 0):
        raise error("class weights must be finite and not negative (leaf probabilities)")
    # trees: runs of equal tree ids (onnxruntime's roots are each run's first node)
    tree_ids = ints["nodes_treeids"]
    starts = np.flatnonzero(np.r_[True, tree_ids[1:] != tree_ids[:-1]])
    run_ids = tree_ids[starts]
    if len(set(run_ids.tolist())) != len(run_ids):
        raise error("a tree's nodes are not listed together (its tree id appears in "
                    "separate runs)")
    index_of_tree = {int(t): k for k, t in enumerate(run_ids)}
    unknown = [int(t) for t in ints["class_treeids"] if int(t) not in index_of_tree]
    if unknown:
        raise error(f"class weights name tree {unknown[0]}, which has no nodes")
    return EnsembleArrays(
        n_features=n_features, class_labels=labels,
        tree_start=np.r_[starts, n].astype(np.int64), node_id=ints["nodes_nodeids"],
        mode=mode, feature=ints["nodes_featureids"], value=values32,
        true_id=ints["nodes_truenodeids"], false_id=ints["nodes_falsenodeids"],
        missing_true=(missing == 1) if len(missing) else np.zeros(n, bool),
        weight_tree=np.array([index_of_tree[int(t)] for t in ints["class_treeids"]],
                             np.int64),
        weight_node=ints["class_nodeids"], weight_class=ints["class_ids"],
        weight_value=weights32)


def _attributes(node: Any) -> dict[str, Any]:
    with needs("onnx", "reading .onnx tree ensembles"):
        from onnx import helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode("utf-8", errors="replace") for s in v]
        out[a.name] = v
    return out


def _class_labels(attrs: dict[str, Any], error) -> list[str]:
    strings, ints = attrs.get("classlabels_strings"), attrs.get("classlabels_int64s")
    if (strings is None) == (ints is None):
        raise error("exactly one of classlabels_strings and classlabels_int64s is needed")
    labels = [str(v) for v in (strings if strings is not None else ints)]
    if len(set(labels)) != len(labels):
        raise error(f"class labels {labels[:10]} must be listed once each")
    if len(labels) < 3:
        # onnxruntime decides two classes by its own rules (the positive class's sum
        # against 0.5, weights stored for one class only), not by comparing the sums
        raise error(f"a tree ensemble of {len(labels)} classes {labels} is not supported "
                    "(onnxruntime's binary rules); kiloml imports ensembles of 3 or more "
                    "classes, or trains the model itself ([model] kind = 'random_forest')")
    return labels


def _input_width(model: Any, node: Any, path: Path) -> int:
    """The float32 feature vector [N, F] the ensemble reads straight from the graph input
    (through Identity or a Cast to float at most); the other operators only carry its
    outputs (ZipMap, ArgMax ...)."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise KilomlError(f"the model has {len(inputs)} inputs; a tree ensemble reads one "
                          "feature vector", file=path)
    inp = inputs[0]
    producers = {o: n for n in graph.node for o in n.output if o}
    chain: list[Any] = []
    source = node.input[0] if node.input else ""
    while source != inp.name:
        prev = producers.get(source)
        to_float = prev is not None and prev.op_type == "Cast" and any(
            a.name == "to" and a.i == 1 for a in prev.attribute)
        if prev is None or not (prev.op_type == "Identity" or to_float) or prev in chain:
            what = prev.op_type if prev is not None else "a constant"
            raise KilomlError(f"the TreeEnsembleClassifier reads {what}, not the model's "
                              "input; kiloml imports an ensemble on the features as they "
                              "are (drop the preprocessing from the exported pipeline)",
                              file=path)
        chain.append(prev)
        source = prev.input[0]
    for other in graph.node:
        if other is node or other in chain or other.op_type in OUTPUT_OPS:
            continue
        raise KilomlError(f"operator {other.op_type} beside the TreeEnsembleClassifier is "
                          "not supported (kiloml imports a model of one ensemble on the "
                          "features)", file=path, where=f"node '{other.name or other.op_type}'")
    tt = inp.type.tensor_type
    if not inp.type.HasField("tensor_type") or tt.elem_type != 1:
        raise KilomlError(f"input {inp.name!r} is not float32; export the ensemble with a "
                          "float32 input (skl2onnx: to_onnx(model, X[:1].astype(np.float32)))",
                          file=path)
    dims = list(tt.shape.dim)
    if len(dims) != 2 or not dims[1].HasField("dim_value") or dims[1].dim_value < 1:
        raise KilomlError(f"input {inp.name!r} must be [N, features] with a fixed number of "
                          "features", file=path)
    return int(dims[1].dim_value)


# ---- the engine's tables ------------------------------------------------------------------

def _below(t: np.float32) -> np.float32:
    return np.nextafter(F32(t), F32(-np.inf))


@dataclass
class _TreeBuild:
    feature: list[int] = field(default_factory=list)
    threshold: list[np.float32] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    left_leaf: list[bool] = field(default_factory=list)
    right_leaf: list[bool] = field(default_factory=list)
    nan_left: list[bool] = field(default_factory=list)


def build_tables(e: EnsembleArrays, where: str = "the tree ensemble") -> ForestTables:
    """ForestTables computing onnxruntime's decisions and probabilities (module docstring);
    a KilomlError (message only: the caller names the file) for a malformed ensemble."""
    k = len(e.class_labels)
    if e.n_features < 1 or e.n_features > MAX_FEATURES:
        raise KilomlError(f"{where} reads {e.n_features} features; the tree kernel takes 1 "
                          f"to {MAX_FEATURES}")
    if np.any(e.weight_class < 0) or np.any(e.weight_class >= k):
        raise KilomlError(f"{where}: a class weight names class {int(e.weight_class.max())} "
                          f"of {k}")
    # leaf weights per (tree, node id), each class at most once
    leaf_rows: dict[tuple[int, int], np.ndarray] = {}
    for t, nid, c, w in zip(e.weight_tree.tolist(), e.weight_node.tolist(),
                            e.weight_class.tolist(), e.weight_value.tolist(), strict=True):
        row = leaf_rows.setdefault((t, nid), np.full(k, np.nan))
        if not np.isnan(row[c]):
            raise KilomlError(f"{where}: tree {t} node {nid} lists class "
                              f"{e.class_labels[c]!r} twice")
        row[c] = w
    mixed: dict[bytes, int] = {}
    mixed_rows: list[np.ndarray] = []

    def payload(row: np.ndarray) -> int:
        row = np.nan_to_num(row, nan=0.0).astype(F32).astype(np.float64)
        nonzero = np.flatnonzero(row)
        if len(nonzero) == 1 and row[nonzero[0]] == 1.0:
            return int(nonzero[0])  # a vote of 1.0: the plain vote adds 1.0f too
        key = row.tobytes()
        if key not in mixed:
            mixed[key] = len(mixed_rows)
            mixed_rows.append(row)
        return k + mixed[key]

    base: list[int] = []
    b = _TreeBuild()
    max_depth = 1
    used_leaves = 0
    for tree in range(e.n_trees):
        lo, hi = int(e.tree_start[tree]), int(e.tree_start[tree + 1])
        local = {int(nid): i for i, nid in enumerate(e.node_id[lo:hi].tolist(), start=lo)}
        if len(local) != hi - lo:
            raise KilomlError(f"{where}: tree {tree} lists a node id twice")
        base.append(len(b.feature))
        depth, leaves = _add_tree(e, tree, lo, hi, local, leaf_rows, payload, b)
        max_depth = max(max_depth, depth)
        used_leaves += leaves
    if used_leaves != len(leaf_rows):
        raise KilomlError(f"{where}: class weights are attached to a node that is not a "
                          "leaf")
    top = max(max(b.left, default=0), max(b.right, default=0))
    if top > MAX_REFERENCES:
        raise KilomlError(f"{where}: the C tables would need {top + 1:,} node and leaf "
                          f"references; they hold at most {MAX_REFERENCES + 1:,}")
    return ForestTables(
        n_classes=k, n_features=e.n_features,
        tree_base=np.array(base, np.int64),
        feature=np.array(b.feature, np.uint8 if e.n_features <= 256 else np.uint16),
        threshold=np.array(b.threshold, F32),
        left=np.array(b.left, np.int64), right=np.array(b.right, np.int64),
        left_is_leaf=np.array(b.left_leaf, bool), right_is_leaf=np.array(b.right_leaf, bool),
        nan_left=np.array(b.nan_left, bool), max_depth=max_depth,
        leaf_proba=np.array(mixed_rows, np.float64).reshape(-1, k),
        leaf_num=np.zeros((0, k), np.uint8), leaf_den=np.zeros(0, np.uint8),
        float32_sums=True)


def _add_tree(e: EnsembleArrays, tree: int, lo: int, hi: int, local: dict[int, int],
              leaf_rows: dict[tuple[int, int], np.ndarray], payload, b: _TreeBuild
              ) -> tuple[int, int]:
    """Append one tree's internal nodes in pre-order (children relative to the tree's
    first node); returns (its depth in internal nodes, its leaves)."""
    def leaf_payload(i: int) -> int:
        row = leaf_rows.get((tree, int(e.node_id[i])))
        if row is None or not np.nansum(row) > 0:
            raise KilomlError(f"tree {tree} leaf {int(e.node_id[i])} has no positive class "
                              "weight")
        return payload(row)

    def child(i: int, side: str) -> int:
        nid = int((e.true_id if side == "true" else e.false_id)[i])
        if nid not in local:
            raise KilomlError(f"tree {tree} node {int(e.node_id[i])}: its {side} child "
                              f"{nid} is not a node of that tree")
        return local[nid]

    if e.mode[lo] == LEAF:  # a tree that is one leaf: a node whose both sides are it
        p = leaf_payload(lo)
        b.feature.append(0)
        b.threshold.append(F32(0.0))
        b.left.append(p)
        b.right.append(p)
        b.left_leaf.append(True)
        b.right_leaf.append(True)
        b.nan_left.append(True)
        if hi - lo != 1:
            raise KilomlError(f"tree {tree}: {hi - lo - 1} nodes are never reached from its "
                              "root (a leaf)")
        return 1, 1
    seen = {lo}
    order: list[int] = []
    depth_of = {lo: 1}
    stack = [lo]
    while stack:  # pre-order, true side first: the internal nodes' table positions
        i = stack.pop()
        order.append(i)
        if depth_of[i] > MAX_DEPTH:
            raise KilomlError(f"tree {tree} is deeper than {MAX_DEPTH} nodes")
        for c in (child(i, "false"), child(i, "true")):
            if c in seen:
                raise KilomlError(f"tree {tree} node {int(e.node_id[c])} is reached twice "
                                  "(the nodes do not form a tree)")
            seen.add(c)
            if e.mode[c] != LEAF:
                depth_of[c] = depth_of[i] + 1
                stack.append(c)
    if len(seen) != hi - lo:
        missed = sorted(set(range(lo, hi)) - seen)[0]
        raise KilomlError(f"tree {tree} node {int(e.node_id[missed])} is never reached from "
                          "the tree's first node")
    position = {i: r for r, i in enumerate(order)}
    leaves = 0
    for i in order:
        f = int(e.feature[i])
        if not 0 <= f < e.n_features:
            raise KilomlError(f"tree {tree} node {int(e.node_id[i])} reads feature {f}; the "
                              f"input has {e.n_features}")
        t = F32(e.value[i])
        mode = int(e.mode[i])
        true_c, false_c = child(i, "true"), child(i, "false")
        # the engine goes left when x <= threshold (or NaN with nan_left)
        if mode in (LEQ, LT):
            threshold, left, right = (t if mode == LEQ else _below(t)), true_c, false_c
            nan_left = bool(e.missing_true[i])
        else:  # GT: x > t is not x <= t; GTE: x >= t is not x <= below(t)
            threshold, left, right = (t if mode == GT else _below(t)), false_c, true_c
            nan_left = not bool(e.missing_true[i])
        b.feature.append(f)
        b.threshold.append(F32(threshold))
        b.nan_left.append(nan_left)
        for c, refs, flags in ((left, b.left, b.left_leaf), (right, b.right, b.right_leaf)):
            if e.mode[c] == LEAF:
                refs.append(leaf_payload(c))
                flags.append(True)
                leaves += 1
            else:
                refs.append(position[c])
                flags.append(False)
    return max(depth_of.values()), leaves


def class_order(labels: list[str], class_names: list[str], path: Path | None = None
                ) -> np.ndarray:
    """project index of each model column: the labels matched to the project's class
    names, or taken as indices when they are 0..K-1 in order."""
    if sorted(labels) == sorted(class_names):
        position = {name: i for i, name in enumerate(class_names)}
        return np.array([position[v] for v in labels], np.int64)
    if labels == [str(i) for i in range(len(class_names))]:
        return np.arange(len(class_names), dtype=np.int64)
    raise KilomlError(f"the model's classes {labels} are not the project's "
                      f"{list(class_names)} (by name), nor 0 to {len(class_names) - 1}",
                      file=path)


# ---- the stage ------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportedTreesConfig:
    """What the estimators and reports read of a tree model's settings."""

    path: str
    kind: str = "imported"
    c_style: str = "table"


class ImportedForest:
    """An ONNX tree ensemble as the pipeline's model stage (features -> class scores)."""

    kind = "trees"
    reads = "features"

    def __init__(self, path: Path, class_names: list[str], n_features: int) -> None:
        self.path = Path(path)
        self.config = ImportedTreesConfig(str(path))
        self.class_names = list(class_names)
        self.n_classes = len(class_names)
        self.n_features = int(n_features)
        self.ensemble: EnsembleArrays | None = None
        self.tables: ForestTables | None = None
        self.columns: np.ndarray | None = None  # project class of each model column

    def fit(self, x: np.ndarray | None = None, y: np.ndarray | None = None) -> ImportedForest:
        """Read the model (nothing is trained: the ensemble is the user's)."""
        self.set_ensemble(read_ensemble(self.path))
        return self

    def set_ensemble(self, e: EnsembleArrays) -> None:
        if e.n_features != self.n_features:
            raise KilomlError(f"the tree ensemble reads {e.n_features} features; the "
                              f"project's [[features]] stages make {self.n_features}",
                              file=self.path)
        if len(e.class_labels) != self.n_classes:
            raise KilomlError(f"the tree ensemble has {len(e.class_labels)} classes "
                              f"{e.class_labels}; the project has {self.n_classes} "
                              f"{self.class_names}", file=self.path)
        columns = class_order(e.class_labels, self.class_names, self.path)
        try:
            tables = build_tables(e)
        except KilomlError as exc:
            raise KilomlError(exc.message, file=self.path,
                              where=f"{ML_DOMAIN}.{ENSEMBLE_OP}") from None
        self.ensemble, self.tables, self.columns = e, tables, columns

    @property
    def permuted(self) -> bool:
        assert self.columns is not None
        return not np.array_equal(self.columns, np.arange(self.n_classes))

    def compile(self, n_features: int) -> ForestTables:
        assert self.tables is not None
        return self.tables

    @property
    def estimators(self) -> list[SimpleNamespace]:
        """Each tree's depth as the estimator reads it (``tree_.max_depth``)."""
        t = self.tables
        assert t is not None
        depths = []
        for tree in range(t.n_trees):
            lo = int(t.tree_base[tree])
            hi = int(t.tree_base[tree + 1]) if tree + 1 < t.n_trees else t.n_nodes
            depths.append(_depth(t, lo, hi))
        return [SimpleNamespace(tree_=SimpleNamespace(max_depth=d)) for d in depths]

    # --- inference: the C vote's mirror, in the project's class order ------------------

    def _batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.tables is not None and self.columns is not None
        labels, _, scores = self.tables.predict_batch(np.asarray(x, F32))
        out = np.zeros_like(scores)
        out[:, self.columns] = scores
        return self.columns[labels], out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._batch(x)[0]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self._batch(x)[1].astype(np.float64)

    def device_scores(self, x: np.ndarray) -> np.ndarray:
        return self._batch(x)[1]

    # --- C ----------------------------------------------------------------------------------

    def emit_c(self, ctx):  # -> CStage
        from kiloml.codegen.cwriter import c_array
        from kiloml.models.forest_c import emit_table, runtime_modules
        from kiloml.stage import CStage

        t = self.tables
        assert t is not None and self.columns is not None
        p = ctx.prefix
        if not self.permuted:
            config, constants, call = emit_table(t, p, ctx.input, ctx.output)
            return CStage(runtime=runtime_modules(t), config=config, constants=constants,
                          call=call)
        # the vote in the model's class order (its ties), then the project's order
        config, constants, call = emit_table(t, p, ctx.input, f"(&{p}model_out)")
        constants += "\n" + c_array("uint8_t" if self.n_classes <= 256 else "uint16_t",
                                    f"{p}class_of_column", self.columns, per_line=16)
        lines = ["{",
                 f"    kml_result_t {p}model_out;",
                 f"    int32_t {p}k;",
                 f"    {call}",
                 f"    {ctx.output}->label = {p}class_of_column[{p}model_out.label];",
                 f"    for ({p}k = 0; {p}k < {self.n_classes}; ++{p}k) {{",
                 f"        {ctx.output}->scores[{p}class_of_column[{p}k]] = "
                 f"{p}model_out.scores[{p}k];",
                 "    }",
                 "}"]
        return CStage(runtime=runtime_modules(t), config=config, constants=constants,
                      call="\n    ".join(lines))

    def cost(self, profile, n_features: int):  # -> StageCost
        from kiloml.models.trees import TreeModel

        # the tree engine's structural estimate reads only the tables and the C style
        return TreeModel.cost(self, profile, n_features)  # type: ignore[arg-type]

    def describe(self) -> dict:
        t = self.tables
        assert t is not None and self.ensemble is not None
        return {"kind": "imported", "reads": "features", "path": str(self.path),
                "format": f"ONNX {ML_DOMAIN}.{ENSEMBLE_OP}",
                "n_trees": t.n_trees, "n_internal_nodes": t.n_nodes,
                "max_depth": t.max_depth, "mixed_leaves": t.n_mixed,
                "model_classes": list(self.ensemble.class_labels),
                "c_style": self.config.c_style, "thresholds": "float32",
                "score_arithmetic": "float32 sums of the model's leaf weights in tree "
                                    "order, not divided (onnxruntime's arithmetic)"}


def _depth(t: ForestTables, lo: int, hi: int) -> int:
    """Internal nodes on the deepest path of the tree whose nodes are [lo, hi)."""
    best, stack = 0, [(0, 1)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        i = lo + node
        for ref, leaf in ((t.left[i], t.left_is_leaf[i]), (t.right[i], t.right_is_leaf[i])):
            if not leaf:
                stack.append((int(ref), d + 1))
    return best if hi > lo else 0


# ---- saved pipelines --------------------------------------------------------------------

def ensemble_state(e: EnsembleArrays) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON fields, arrays) of an ensemble for pipeline.json / pipeline.npz."""
    return ({"n_features": int(e.n_features), "class_labels": list(e.class_labels)},
            {name: np.asarray(getattr(e, name)) for name in ENSEMBLE_ARRAYS})


def ensemble_from_state(n_features: int, class_labels: list[str],
                        arrays: dict[str, np.ndarray]) -> EnsembleArrays:
    """The ensemble back from its state; ``build_tables`` then checks it as at import
    (a saved pipeline may come from someone else)."""
    n = len(arrays["node_id"])
    m = len(arrays["weight_value"])
    for name in ENSEMBLE_ARRAYS:
        a = arrays[name]
        want = len(arrays["tree_start"]) if name == "tree_start" else (
            m if name.startswith("weight_") else n)
        if a.ndim != 1 or len(a) != want:
            raise KilomlError(f"ensemble array {name} has shape {list(a.shape)}; "
                              f"[{want}] expected")
    start = arrays["tree_start"]
    if len(start) < 2 or start[0] != 0 or start[-1] != n or np.any(np.diff(start) < 1):
        raise KilomlError("ensemble tree_start does not split the nodes into trees")
    mode = arrays["mode"]
    if np.any((mode < LEAF) | (mode > GT)):
        raise KilomlError("ensemble node modes out of range")
    if np.any(~np.isfinite(arrays["value"])) or np.any(~np.isfinite(arrays["weight_value"])) \
            or np.any(arrays["weight_value"] < 0):
        raise KilomlError("ensemble thresholds and weights must be finite (weights >= 0)")
    trees = arrays["weight_tree"]
    if np.any((trees < 0) | (trees >= len(start) - 1)):
        raise KilomlError("ensemble weights name a tree that does not exist")
    return EnsembleArrays(n_features=int(n_features),
                          class_labels=[str(c) for c in class_labels],
                          **{name: arrays[name] for name in ENSEMBLE_ARRAYS})
