"""Fitted scikit-learn estimators -> pipeline model stages.

Trees (DecisionTree, RandomForest, ExtraTrees classifiers) go to the exact tree engine:
the estimator is rewritten as the one kiloml's own settings make (one job, every
hyperparameter that predict does not read at kiloml's values) holding the user's fitted
trees, so it is saved and loaded like a project's forest (kiloml.persist checks it against
those settings) and predicts as the user's does. Linear classifiers go to kml_linear
(kiloml.models.linear). MLPClassifier becomes a float graph (fully connected layers) that
the network path quantizes to int8.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np

from kiloml.conversion.result import Converted
from kiloml.errors import KilomlError

TREES = {"DecisionTreeClassifier": "decision_tree", "RandomForestClassifier": "random_forest",
         "ExtraTreesClassifier": "extra_trees"}
MAX_TREES = 1000  # [model] n_estimators' bound


def is_sklearn(model: object) -> bool:
    return type(model).__module__.split(".")[0] == "sklearn"


def check_fitted(model: object) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError:
        raise KilomlError(f"the {type(model).__name__} is not fitted: call fit(X, y) "
                          "before kiloml.convert", where="model") from None
    except TypeError as exc:  # not an estimator at all
        raise KilomlError(f"{type(model).__name__}: {exc}"[:300], where="model") from None


def _class_names(classes: np.ndarray) -> list[str]:
    names = [str(c) for c in np.asarray(classes).tolist()]
    if len(set(names)) != len(names):
        raise KilomlError(f"the classes {names[:10]} are not distinct as text; pass "
                          "class_names", where="model.classes_")
    return names


def _feature_names(model: object) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(n) for n in np.asarray(names).tolist()]


# --- trees ---------------------------------------------------------------------------------


def _kiloml_like(est: object, n_features: int, n_classes: int):
    """(TreeModel, a fitted reference estimator of kiloml's settings with one tree)."""
    from kiloml.models.trees import TreeModel
    from kiloml.project import TreeModelConfig

    kind = TREES[type(est).__name__]
    members = getattr(est, "estimators_", None)
    n_trees = len(members) if members is not None else 1
    if n_trees > MAX_TREES:
        raise KilomlError(f"{n_trees} trees; kiloml emits forests of at most {MAX_TREES}",
                          where="model.estimators_")
    config = TreeModelConfig(kind=kind, n_estimators=n_trees if members is not None else 20,
                             max_depth=None, max_features="all", random_state=0)
    model = TreeModel(config, n_classes)
    reference = copy.deepcopy(model.estimator)
    if members is not None:
        reference.set_params(n_estimators=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(np.zeros((max(n_classes, 2), n_features), np.float32),
                      np.arange(max(n_classes, 2)) % n_classes)
    return model, reference


def _member(reference_member: object, theirs: object, n_features: int, n_classes: int):
    """kiloml's member tree holding their fitted tree."""
    m = copy.copy(reference_member)
    m.__dict__ = dict(reference_member.__dict__)
    tree = theirs.tree_  # type: ignore[attr-defined]
    if int(tree.n_outputs) != 1 or int(tree.n_features) != n_features or \
            int(tree.n_classes[0]) != n_classes:
        raise KilomlError(f"a tree reads {int(tree.n_features)} features into "
                          f"{int(tree.n_classes[0])} classes ({int(tree.n_outputs)} outputs); "
                          f"the model {n_features} into {n_classes}", where="model")
    m.tree_ = tree
    seed = getattr(theirs, "random_state", 0)
    m.random_state = int(seed) if isinstance(seed, (int, np.integer)) and \
        0 <= int(seed) < 2 ** 32 else 0
    return m


def trees(est: object) -> Converted:
    name = type(est).__name__
    if getattr(est, "n_outputs_", 1) != 1:
        raise KilomlError(f"a {name} with {est.n_outputs_} outputs predicts several labels; "  # type: ignore[attr-defined]
                          "kiloml converts single-output classifiers", where="model")
    classes = _class_names(est.classes_)  # type: ignore[attr-defined]
    k = len(classes)
    if k < 2:
        raise KilomlError(f"the {name} was fitted on one class ({classes[0]!r}); it has "
                          "nothing to decide", where="model.classes_")
    f = int(est.n_features_in_)  # type: ignore[attr-defined]
    model, reference = _kiloml_like(est, f, k)
    normalized = copy.copy(reference)
    normalized.__dict__ = dict(reference.__dict__)
    if hasattr(reference, "estimators_"):
        members = est.estimators_  # type: ignore[attr-defined]
        normalized.n_estimators = len(members)
        normalized.estimators_ = [_member(reference.estimators_[0], m, f, k) for m in members]
    else:
        normalized.tree_ = _member(reference, est, f, k).tree_
    model.estimator = normalized
    model.compile(f)
    return Converted(model, "trees", name, (f,), (f,), k, classes=classes,
                     feature_names=_feature_names(est))


# --- linear models ------------------------------------------------------------------------


def linear(est: object) -> Converted:
    from kiloml.models.linear import ONE_VS_REST, LinearModel, tables_from_estimator

    name = type(est).__name__
    tables, classes = tables_from_estimator(est)
    if len(classes) < 2:
        raise KilomlError(f"the {name} was fitted on one class; it has nothing to decide",
                          where="model.classes_")
    source = name if name != ONE_VS_REST else \
        f"{name}({type(est.estimators_[0]).__name__})"  # type: ignore[attr-defined]
    model = LinearModel.from_tables(tables, None, source)
    f = tables.n_features
    notes = []
    if tables.sklearn_bits == 24:
        notes.append("float32 coefficients: scikit-learn scores float32 input in float32, "
                     "so its predict is decided by its BLAS's rounding where the top two "
                     "scores are within about F * 2^-24 of each other; the C decides those "
                     "by the exact scores")
    return Converted(model, "linear", source, (f,), (f,), len(classes),
                     classes=_class_names(np.asarray(classes)),
                     feature_names=_feature_names(est), notes=notes)


# --- MLPClassifier -> float graph -----------------------------------------------------------

MLP_ACTIVATIONS = ("identity", "relu", "tanh", "logistic")


def mlp_graph(est: object):
    """The float32 graph of an MLPClassifier: FULLY_CONNECTED layers (ReLU fused, tanh and
    logistic as their ops), SOFTMAX at the end; a binary model's single logistic output z
    becomes the two scores softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]."""
    from kiloml.nn.graph import Graph, Tensor

    activation = est.activation  # type: ignore[attr-defined]
    if activation not in MLP_ACTIVATIONS:
        raise KilomlError(f"activation {activation!r}; kiloml converts "
                          f"{', '.join(MLP_ACTIVATIONS)}", where="model.activation")
    out_activation = est.out_activation_  # type: ignore[attr-defined]
    if out_activation not in ("softmax", "logistic"):
        raise KilomlError(f"output activation {out_activation!r} (a multilabel MLP?); kiloml "
                          "converts single-label classifiers", where="model")
    coefs = [np.asarray(c, np.float64) for c in est.coefs_]  # type: ignore[attr-defined]
    biases = [np.asarray(b, np.float64) for b in est.intercepts_]  # type: ignore[attr-defined]
    if any(not np.all(np.isfinite(a)) for a in coefs + biases):
        raise KilomlError("a weight or bias is NaN or infinite", where="model.coefs_")
    if out_activation == "logistic":  # one output unit: z -> [0, z]
        coefs[-1] = np.concatenate([np.zeros_like(coefs[-1]), coefs[-1]], axis=1)
        biases[-1] = np.concatenate([np.zeros(1), biases[-1]])
    g = Graph(tensors=[], ops=[], inputs=[], outputs=[], name="mlp_classifier",
              description="scikit-learn MLPClassifier")
    f = coefs[0].shape[0]
    x = g.add_tensor(Tensor("input", (1, f), "float32"))
    g.inputs = [x]
    for i, (w, b) in enumerate(zip(coefs, biases, strict=True)):
        last = i == len(coefs) - 1
        wt = g.add_tensor(Tensor(f"dense_{i}/weights", (w.shape[1], w.shape[0]), "float32",
                                 data=w.T.astype(np.float32)))
        bt = g.add_tensor(Tensor(f"dense_{i}/bias", (w.shape[1],), "float32",
                                 data=b.astype(np.float32)))
        y = g.add_tensor(Tensor(f"dense_{i}", (1, w.shape[1]), "float32"))
        fused = "RELU" if activation == "relu" and not last else "NONE"
        g.add_op("FULLY_CONNECTED", [x, wt, bt], [y], name=f"dense_{i}",
                 fused_activation=fused)
        x = y
        if not last and activation in ("tanh", "logistic"):
            y = g.add_tensor(Tensor(f"{activation}_{i}", (1, w.shape[1]), "float32"))
            g.add_op("TANH" if activation == "tanh" else "LOGISTIC", [x], [y],
                     name=f"{activation}_{i}")
            x = y
    out = g.add_tensor(Tensor("probabilities", g.tensors[x].shape, "float32"))
    g.add_op("SOFTMAX", [x], [out], name="softmax")
    g.outputs = [out]
    return g


def mlp(est: object) -> tuple[object, list[str], list[str] | None, int]:
    """(float graph, class names, feature names, features) of an MLPClassifier."""
    classes = _class_names(est.classes_)  # type: ignore[attr-defined]
    if len(classes) < 2:
        raise KilomlError("the MLPClassifier was fitted on one class; it has nothing to "
                          "decide", where="model.classes_")
    return mlp_graph(est), classes, _feature_names(est), int(est.n_features_in_)  # type: ignore[attr-defined]
