"""The fitted scikit-learn tree classifiers kiloml trains, saved as their attributes and
restored from them (never by unpickling).

Only these classes are restored: DecisionTreeClassifier, RandomForestClassifier,
ExtraTreesClassifier and the ExtraTreeClassifier an extra-trees ensemble holds. An
estimator's state is its ``__getstate__`` dict (plain attributes; the codec refuses
anything else); a tree (``sklearn.tree._tree.Tree``) is what its ``__reduce__`` gives:
(n_features, n_classes, n_outputs) and max_depth, node_count, nodes (a structured
array without objects), values. scikit-learn's prediction code does no bounds checks
on the node arrays, so they are checked here: children after their parent and inside
the tree, every node but the root reached exactly once, features inside the input,
class fractions, max_depth the tree's real depth. ``check_fitted_like`` then holds the
estimator to what kiloml's settings make: the same attributes and hyperparameters as
the same settings fitted here on a few rows.
"""

from __future__ import annotations

import re

import numpy as np
import sklearn
from sklearn.base import BaseEstimator
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier
from sklearn.tree._tree import NODE_DTYPE, Tree

from kiloml.persist.archive import ArrayBook, Document, describe
from kiloml.persist.codec import Decoders, decode, encode
from kiloml.persist.fields import Fields

ESTIMATOR_TAG = "$estimator"
CLASS_TAG = "$class"
TREE_TAG = "$tree"
SINGLE_TREES = {"DecisionTreeClassifier": DecisionTreeClassifier,
                "ExtraTreeClassifier": ExtraTreeClassifier}
ENSEMBLES = {"RandomForestClassifier": (RandomForestClassifier, DecisionTreeClassifier),
             "ExtraTreesClassifier": (ExtraTreesClassifier, ExtraTreeClassifier)}
ALLOWED = {**SINGLE_TREES, **{k: v[0] for k, v in ENSEMBLES.items()}}
_ATTRIBUTE = re.compile(r"^_?[A-Za-z][A-Za-z0-9_]*$")  # no dunders
MAX_FEATURES = 1 << 24
MAX_CLASSES = 1 << 16
MAX_SAMPLES = float(1 << 53)  # whole numbers stay exact in float64
FLT_MAX = float(np.finfo(np.float32).max)


# --- saving --------------------------------------------------------------------------


def _objects_encoder(book: ArrayBook):
    def encode_object(value: object, key: str) -> object | None:
        if isinstance(value, type) and SINGLE_TREES.get(value.__name__) is value:
            return {CLASS_TAG: value.__name__}
        if isinstance(value, Tree):
            return {TREE_TAG: encode_tree(value, book, key)}
        if ALLOWED.get(type(value).__name__) is type(value):
            return {ESTIMATOR_TAG: save_estimator(value, book, key)}
        return None
    return encode_object


def encode_tree(tree: Tree, book: ArrayBook, key: str) -> dict:
    cls, (n_features, n_classes, n_outputs), state = tree.__reduce__()
    assert cls is Tree
    return {"n_features": int(n_features),
            "n_classes": [int(c) for c in np.asarray(n_classes).reshape(-1)],
            "n_outputs": int(n_outputs), "max_depth": int(state["max_depth"]),
            "node_count": int(state["node_count"]),
            "nodes": book.put(f"{key}.nodes", state["nodes"]),
            "values": book.put(f"{key}.values", state["values"])}


def save_estimator(estimator: object, book: ArrayBook, key: str) -> dict:
    """The estimator's JSON (arrays into ``book`` under ``key``)."""
    name = type(estimator).__name__
    if ALLOWED.get(name) is not type(estimator):
        raise TypeError(f"{key}: {name} is not a saved estimator kind")
    state = dict(estimator.__getstate__())  # type: ignore[attr-defined]
    state.pop("_sklearn_version", None)
    return {"class": name, "state": encode(state, book, key, _objects_encoder(book))}


# --- loading --------------------------------------------------------------------------


def load_estimator(f: Fields, allowed: dict[str, type], *, check: bool = True) -> object:
    """An estimator of one of the ``allowed`` classes, its state checked as fitted
    (``check``: not for the unfitted template an ensemble keeps)."""
    name = f.str("class", choices=sorted(allowed))
    cls = allowed[name]
    doc = f.doc
    state_where = f.path("state")
    raw = f.raw("state")
    f.done()
    if not isinstance(raw, dict):
        raise doc.error(state_where, f"expected an object, got {describe(raw)}")
    for attr in raw:
        if not _ATTRIBUTE.fullmatch(attr) or hasattr(cls, attr):
            raise doc.error(f"{state_where}.{attr[:40]}", "not an attribute a fitted "
                                                          f"{name} stores")
    state = decode(raw, doc, state_where, _decoders(doc))
    assert isinstance(state, dict)
    estimator = cls.__new__(cls)
    estimator.__dict__.update(state)
    if not check:
        return estimator
    if name in SINGLE_TREES:
        _check_single(estimator, doc, state_where)
    else:
        _check_ensemble(estimator, ENSEMBLES[name][1], doc, state_where)
    return estimator


def _decoders(doc: Document) -> Decoders:
    def estimator(payload: object, where: str) -> object:
        return load_estimator(Fields(payload, where, doc), SINGLE_TREES, check=False)

    def klass(payload: object, where: str) -> object:
        if not isinstance(payload, str) or payload not in SINGLE_TREES:
            raise doc.error(where, f"{describe(payload)} is not an allowed estimator class")
        return SINGLE_TREES[payload]

    def tree(payload: object, where: str) -> object:
        return load_tree(Fields(payload, where, doc))

    return {ESTIMATOR_TAG: estimator, CLASS_TAG: klass, TREE_TAG: tree}


def _attr(estimator: object, name: str, doc: Document, where: str) -> object:
    if name not in estimator.__dict__:
        raise doc.error(f"{where}.{name}", "missing")
    return estimator.__dict__[name]


def _count(value: object, doc: Document, where: str, lo: int, hi: int) -> int:
    if isinstance(value, np.integer):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise doc.error(where, f"expected a whole number in [{lo}, {hi}], got "
                               f"{describe(value)}")
    return value


def _classes(estimator: object, n_classes: int, doc: Document, where: str) -> None:
    classes = _attr(estimator, "classes_", doc, where)
    if not isinstance(classes, np.ndarray) or classes.shape != (n_classes,) or \
            classes.dtype.kind not in "iuf" or not np.all(np.isfinite(classes)):
        raise doc.error(f"{where}.classes_", f"expected {n_classes} class numbers")


def _check_single(tree_model: object, doc: Document, where: str) -> None:
    tree = _attr(tree_model, "tree_", doc, where)
    if not isinstance(tree, Tree):
        raise doc.error(f"{where}.tree_", "expected a tree")
    n_features = _count(_attr(tree_model, "n_features_in_", doc, where),
                        doc, f"{where}.n_features_in_", 1, MAX_FEATURES)
    if n_features != tree.n_features:
        raise doc.error(f"{where}.n_features_in_", f"{n_features}, but its tree reads "
                                                   f"{tree.n_features} features")
    _count(_attr(tree_model, "n_outputs_", doc, where), doc, f"{where}.n_outputs_", 1, 1)
    k = _count(_attr(tree_model, "n_classes_", doc, where), doc, f"{where}.n_classes_", 1,
               MAX_CLASSES)
    if k != int(tree.n_classes[0]):
        raise doc.error(f"{where}.n_classes_", f"{k}, but its tree has "
                                               f"{int(tree.n_classes[0])} classes")
    _classes(tree_model, k, doc, where)


def _check_ensemble(forest: object, member: type, doc: Document, where: str) -> None:
    members = _attr(forest, "estimators_", doc, where)
    if not isinstance(members, list) or not members:
        raise doc.error(f"{where}.estimators_", "expected a list of trees")
    n_features = _count(_attr(forest, "n_features_in_", doc, where),
                        doc, f"{where}.n_features_in_", 1, MAX_FEATURES)
    k = _count(_attr(forest, "n_classes_", doc, where), doc, f"{where}.n_classes_", 1,
               MAX_CLASSES)
    _count(_attr(forest, "n_outputs_", doc, where), doc, f"{where}.n_outputs_", 1, 1)
    _classes(forest, k, doc, where)
    # predict_proba in tree order (the C order) needs one job
    _count(_attr(forest, "n_jobs", doc, where), doc, f"{where}.n_jobs", 1, 1)
    for i, m in enumerate(members):
        at = f"{where}.estimators_[{i}]"
        if type(m) is not member:
            raise doc.error(at, f"expected a {member.__name__}")
        _check_single(m, doc, at)
        if m.n_features_in_ != n_features or int(m.n_classes_) != k:
            raise doc.error(at, f"reads {m.n_features_in_} features into {int(m.n_classes_)} "
                                f"classes; the ensemble {n_features} into {k}")


def check_fitted_like(estimator: object, reference: object, params: dict, doc: Document,
                      where: str) -> None:
    """The loaded estimator holds the attributes ``reference`` (the same settings fitted
    on a few rows by this scikit-learn, one tree for an ensemble) holds, no more and no
    fewer, and the hyperparameters ``params`` of kiloml's settings: what predict reads is
    what the settings make. An ensemble's trees are compared with the reference's tree
    (their random_state aside)."""
    _like(estimator, reference, doc, where, params)  # estimator_ (the template) in it
    if hasattr(reference, "estimators_"):
        if len(estimator.estimators_) != params["n_estimators"]:  # type: ignore[attr-defined]
            raise doc.error(f"{where}.estimators_", f"{len(estimator.estimators_)} trees, "  # type: ignore[attr-defined]
                                                    f"n_estimators is {params['n_estimators']}")
        for i, member in enumerate(estimator.estimators_):  # type: ignore[attr-defined]
            _like(member, reference.estimators_[0], doc, f"{where}.estimators_[{i}].state",
                  member=True)


def _like(got: object, want: object, doc: Document, where: str, params: dict | None = None,
          member: bool = False) -> None:
    if type(got) is not type(want):
        raise doc.error(where, f"expected a {type(want).__name__}, got {describe(got)}")
    missing = sorted(set(want.__dict__) - set(got.__dict__))
    extra = sorted(set(got.__dict__) - set(want.__dict__))
    if missing or extra:
        raise doc.error(f"{where}.{(missing or extra)[0]}",
                        "missing" if missing else f"not an attribute a fitted "
                                                  f"{type(want).__name__} stores")
    if params is None:
        params = want.get_params(deep=False)  # type: ignore[attr-defined]
    for key, value in want.__dict__.items():
        have, at = got.__dict__[key], f"{where}.{key}"
        if key in params:
            if member and key == "random_state":
                _count(have, doc, at, 0, (1 << 32) - 1)
            elif not _same(have, params[key]):
                raise doc.error(at, f"{describe(have)}, but the [model] settings make "
                                    f"{params[key]!r}"[:200])
        elif isinstance(value, BaseEstimator):
            _like(have, value, doc, at)
        elif type(have) is not type(value) or (isinstance(value, tuple) and not _same(
                have, value)) or (isinstance(value, np.ndarray) and (
                have.dtype != value.dtype or have.ndim != value.ndim)):
            raise doc.error(at, f"{describe(have)} where a fitted {type(want).__name__} "
                                f"has a {type(value).__name__}")


def _same(a: object, b: object) -> bool:
    """Equal values of the same types, element by element (arrays inside never compared
    with ``==``, which would be ambiguous)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # type: ignore[attr-defined,index]
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)  # type: ignore[union-attr]
    if isinstance(a, BaseEstimator):
        return a is b
    return bool(a == b)


def load_tree(f: Fields) -> Tree:
    n_features = f.int("n_features", 1, MAX_FEATURES)
    n_classes = f.ints("n_classes", 1, MAX_CLASSES)
    if len(n_classes) != 1:
        raise f.error("n_classes", "expected one output")
    f.int("n_outputs", 1, 1)
    k = n_classes[0]
    node_count = f.int("node_count", 1, 1 << 31)
    nodes = f.array("nodes", [NODE_DTYPE], (node_count,))
    values = f.array("values", "float64", (node_count, 1, k), finite=True)
    max_depth = f.int("max_depth", 0, node_count)
    f.done()
    left, right = nodes["left_child"], nodes["right_child"]
    leaf = left == -1
    index = np.arange(node_count)
    inner = ~leaf
    if np.any((right == -1) != leaf):
        raise f.error("nodes", f"node {int(np.flatnonzero((right == -1) != leaf)[0])} has "
                               "one child")
    bad = inner & ((left <= index) | (right <= index) | (left >= node_count)
                   | (right >= node_count) | (left == right))
    if np.any(bad):
        raise f.error("nodes", f"node {int(np.flatnonzero(bad)[0])} has a child outside the "
                               "tree or not after it")
    parents = np.bincount(np.concatenate([left[inner], right[inner]]), minlength=node_count)
    if parents[0] != 0 or np.any(parents[1:] != 1):
        odd = int(np.flatnonzero(parents != np.r_[0, np.ones(node_count - 1)])[0])
        raise f.error("nodes", f"node {odd} is reached {int(parents[odd])} times, not once")
    feature = nodes["feature"]
    bad = inner & ((feature < 0) | (feature >= n_features))
    if np.any(bad):
        raise f.error("nodes", f"node {int(np.flatnonzero(bad)[0])} tests feature "
                               f"{int(feature[np.flatnonzero(bad)[0]])} of {n_features}")
    threshold = nodes["threshold"][inner]
    # a split lies between two float32 feature values (or at inf, for missing values)
    if np.any(np.isnan(threshold) | (np.isfinite(threshold) & (np.abs(threshold) > FLT_MAX))):
        raise f.error("nodes", "a threshold is NaN or beyond float32")
    weights, counts = nodes["weighted_n_node_samples"], nodes["n_node_samples"]
    if np.any(~np.isfinite(weights) | (weights <= 0) | (weights > MAX_SAMPLES)) or \
            np.any((counts < 1) | (counts > MAX_SAMPLES)):
        raise f.error("nodes", f"a node's sample count is not in [1, {MAX_SAMPLES}]")
    if np.any(nodes["missing_go_to_left"] > 1):
        raise f.error("nodes", "missing_go_to_left is not 0 or 1")
    # a classifier's node values are class fractions (scikit-learn >= 1.4)
    if np.any((values < 0) | (values > 1)) or np.any(np.abs(values.sum(axis=2) - 1) > 1e-6):
        raise f.error("values", "a node's class fractions are not in [0, 1] summing to 1")
    depth = np.zeros(node_count, np.int64)
    for i in np.flatnonzero(inner):  # parents come before their children
        depth[left[i]] = depth[right[i]] = depth[i] + 1
    if int(depth.max()) != max_depth:
        raise f.error("max_depth", f"{max_depth}, but the tree is {int(depth.max())} deep")
    tree = Tree(n_features, np.asarray(n_classes, dtype=np.intp), 1)
    try:
        tree.__setstate__({"max_depth": max_depth, "node_count": node_count,
                           "nodes": nodes, "values": values})
    except (ValueError, TypeError) as exc:
        raise f.error("nodes", f"not a scikit-learn tree: {exc}"[:200]) from None
    return tree


def sklearn_version() -> str:
    return sklearn.__version__
