"""Linear classifiers (logistic regression, linear SVM, ridge) as a pipeline stage.

Trained by kiloml from ``[model] kind = "logistic_regression" | "linear_svc" | "ridge"``
or taken from a fitted scikit-learn estimator (``kiloml.convert``). The model is its
coefficients and intercepts; the labels are the exact arg-max of the scores, which is
scikit-learn's predict (the exactness argument and the C tables are in
``linear_tables.py``, the kernel in ``runtime/kml_linear.c``).
"""

from __future__ import annotations

import warnings

import numpy as np

from kiloml.errors import KilomlError
from kiloml.models.linear_tables import LinearTableError, LinearTables, c_config, c_constants
from kiloml.stage import CStage, EmitContext, StageCost
from kiloml.targets.profiles import TargetProfile

F32, F64 = np.float32, np.float64
LINEAR_ESTIMATORS = ("LogisticRegression", "LinearSVC", "RidgeClassifier",
                     "RidgeClassifierCV", "SGDClassifier", "Perceptron")
ONE_VS_REST = "OneVsRestClassifier"


# --- fitted scikit-learn estimators -> tables ----------------------------------------


def _coefficients(est, where: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(coef [S, F], intercept [S], scikit-learn's score bits) of one linear estimator."""
    coef = est.coef_
    coef = np.asarray(coef.toarray() if hasattr(coef, "toarray") else coef)  # sparsify()
    if coef.ndim == 1:  # RidgeClassifier of two classes fitted on float32
        coef = coef.reshape(1, -1)
    intercept = np.broadcast_to(np.asarray(est.intercept_, dtype=F64).reshape(-1)
                                if np.ndim(est.intercept_) else
                                np.full(coef.shape[0], float(est.intercept_)),
                                (coef.shape[0],))
    if coef.dtype not in (F32, F64):
        raise KilomlError(f"coef_ has dtype {coef.dtype}; expected float32 or float64",
                          where=where)
    # float32 coefficients: scikit-learn's X @ coef.T runs in float32 for float32 input
    return coef.astype(F64), np.array(intercept, dtype=F64), 24 if coef.dtype == F32 else 53


def tables_from_estimator(est) -> tuple[LinearTables, list]:
    """The tables and the class labels (``classes_``) of a fitted linear classifier:
    LogisticRegression, LinearSVC, RidgeClassifier(CV), SGDClassifier, Perceptron, or a
    OneVsRestClassifier of one of those (its predict: the last of equal top scores)."""
    name = type(est).__name__
    classes = list(np.asarray(est.classes_).tolist())
    try:
        if name == ONE_VS_REST:
            binarizer = getattr(est, "label_binarizer_", None)
            y_type = getattr(binarizer, "y_type_", "multiclass")
            if y_type not in ("binary", "multiclass"):
                raise KilomlError(f"a {y_type} OneVsRestClassifier has no single label "
                                  "per input; kiloml converts binary and multiclass ones",
                                  where=name)
            parts, bits = [], 53
            for i, member in enumerate(est.estimators_):
                member_name = type(member).__name__
                if member_name not in LINEAR_ESTIMATORS:
                    raise KilomlError(f"its estimator {i} is a {member_name}; a "
                                      f"OneVsRestClassifier converts when its estimators are "
                                      f"{', '.join(LINEAR_ESTIMATORS)}", where=name)
                coef, intercept, b = _coefficients(member, f"{name}.estimators_[{i}]")
                if coef.shape[0] != 1:
                    raise KilomlError(f"its estimator {i} has {coef.shape[0]} scores, "
                                      "expected one (a binary classifier)", where=name)
                parts.append((coef, intercept))
                bits = min(bits, b)
            coef = np.concatenate([c for c, _ in parts])
            intercept = np.concatenate([b for _, b in parts])
            proba = "ovr" if all(hasattr(m, "predict_proba") for m in est.estimators_) \
                else "softmax"
            tables = LinearTables(coef, intercept, len(classes),
                                  tie="last" if coef.shape[0] > 1 else "first",
                                  proba=proba, sklearn_bits=bits)
            return tables, classes
        if name in ("RidgeClassifier", "RidgeClassifierCV"):
            y_type = getattr(getattr(est, "_label_binarizer", None), "y_type_", "multiclass")
            if y_type.startswith("multilabel"):
                raise KilomlError("a multilabel RidgeClassifier has no single label per "
                                  "input; kiloml converts binary and multiclass ones",
                                  where=name)
        coef, intercept, bits = _coefficients(est, name)
        # predict_proba of a multiclass SGDClassifier(loss="log_loss"): normalized
        # sigmoids (one-vs-rest); LogisticRegression: softmax
        proba = "ovr" if name == "SGDClassifier" and coef.shape[0] > 1 else "softmax"
        return LinearTables(coef, intercept, len(classes), proba=proba,
                            sklearn_bits=bits), classes
    except LinearTableError as exc:
        raise KilomlError(str(exc), where=name) from None


# --- the stage ---------------------------------------------------------------------------


def make_estimator(config):
    """The scikit-learn estimator a [model] section of a linear kind makes."""
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    c = config
    if c.kind == "logistic_regression":
        if c.penalty == "none":
            args = dict(C=np.inf, solver=c.solver or "lbfgs")
        else:
            ratio = {"l2": 0.0, "l1": 1.0, "elasticnet": c.l1_ratio}[c.penalty]
            args = dict(C=c.C, l1_ratio=ratio,
                        solver=c.solver or ("lbfgs" if c.penalty == "l2" else "saga"))
        est = LogisticRegression(max_iter=c.max_iter, tol=c.tol, class_weight=c.class_weight,
                                 fit_intercept=c.fit_intercept, random_state=c.random_state,
                                 **args)
        return OneVsRestClassifier(est) if c.multi_class == "ovr" else est
    if c.kind == "linear_svc":
        return LinearSVC(C=c.C, penalty=c.penalty, loss=c.loss, dual=c.dual,
                         multi_class=c.multi_class, class_weight=c.class_weight,
                         fit_intercept=c.fit_intercept, max_iter=c.max_iter, tol=c.tol,
                         random_state=c.random_state)
    return RidgeClassifier(alpha=c.alpha, class_weight=c.class_weight,
                           fit_intercept=c.fit_intercept, solver=c.solver, tol=c.tol,
                           max_iter=c.max_iter, random_state=c.random_state)


class LinearModel:
    """Features -> class scores by a linear classifier, decided exactly (see module doc)."""

    kind = "linear"

    def __init__(self, config, n_classes: int) -> None:
        self.config = config  # a linear [model] section, or None for a converted estimator
        self.n_classes = n_classes
        self.tables: LinearTables | None = None
        # the classes the tables score (a cross-validation fold may miss some)
        self.classes: np.ndarray = np.arange(n_classes)
        self.constant: int | None = None  # a fold with a single class: that class
        self.source: str = config.kind if config is not None else "estimator"
        self.converged: bool | None = None

    # --- training ----------------------------------------------------------------------

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearModel:
        """Fit on float32 features (in float64: the coefficients come out float64, so
        scikit-learn's predict on them rounds at 2^-53)."""
        x64 = np.asarray(x, dtype=F32).astype(F64)
        y = np.asarray(y)
        present = np.unique(y)
        self.tables, self.constant = None, None
        if len(present) == 1:  # a fold of one class: nothing to separate
            self.constant = int(present[0])
            self.classes = present.astype(int)
            return self
        est = make_estimator(self.config)
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            est.fit(x64, y)
        self.converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        tables, classes = tables_from_estimator(est)
        self.tables = tables
        self.classes = np.asarray(classes, dtype=int)
        self.estimator = est
        return self

    @classmethod
    def from_tables(cls, tables: LinearTables, config=None, source: str = "estimator"
                    ) -> LinearModel:
        model = cls(config, tables.n_classes)
        model.tables = tables
        model.source = source
        return model

    # --- inference ---------------------------------------------------------------------

    def _tables(self) -> LinearTables:
        if self.tables is None:
            raise ValueError("the linear model is not fitted")
        return self.tables

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices (int64): the exact arg-max of the scores (-1 for a row with a NaN
        or infinite feature, as the C)."""
        x = np.asarray(x, dtype=F32)
        if self.constant is not None:
            out = np.full(len(x), self.constant, dtype=np.int64)
            out[~np.all(np.isfinite(x), axis=1)] = -1
            return out
        labels = self._tables().labels(x)
        return np.where(labels >= 0, self.classes[np.maximum(labels, 0)], -1)

    def device_scores(self, x: np.ndarray) -> np.ndarray:
        """float32 [N, n_classes]: what the C library writes as scores, bit for bit."""
        x = np.asarray(x, dtype=F32)
        out = np.zeros((len(x), self.n_classes), F32)
        if self.constant is not None:
            out[:, self.constant] = 1
            out[~np.all(np.isfinite(x), axis=1)] = 0
            return out
        t = self._tables()
        out[:, self.classes] = t.device_scores(x)
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Scores [N, n_classes] (float64 copies of the device's float32 scores)."""
        return self.device_scores(x).astype(F64)

    # --- C -----------------------------------------------------------------------------

    def compile(self, n_features: int) -> LinearTables:
        t = self._tables()
        if self.constant is not None or list(self.classes) != list(range(self.n_classes)):
            raise ValueError("the model must be trained on every class to be emitted as C")
        if t.n_features != n_features:
            raise ValueError(f"the model reads {t.n_features} features, the stages make "
                             f"{n_features}")
        return t

    def emit_c(self, ctx: EmitContext) -> CStage:
        t = self.compile(ctx.n_inputs)
        constants, name = c_constants(t, ctx.prefix)
        call = (f"{ctx.output}->label = kml_linear_predict(&{name}, {ctx.input}, "
                f"{ctx.output}->scores, NULL);")
        return CStage(runtime=["kml_linear", "kml_math"], config=c_config(t),
                      constants=constants, call=call)

    def cost(self, profile: TargetProfile, n_features: int) -> StageCost:
        """Uncalibrated: tables as emitted, code, and the fast path's instructions (a
        multiply-add per coefficient and per feature for the bound, the scores' exp)."""
        t = self.compile(n_features)
        s, f, k = t.n_scores, t.n_features, t.n_classes
        per_mac = 6 if profile.has_fpu else 90
        tables = 4 * s * f + 8 * s * f + 12 * s + 4 * f + 64
        return StageCost(flash_bytes=tables + 1800, ram_bytes=0,
                         instructions=per_mac * (s + 1) * f + (60 if profile.has_fpu else 400)
                         * k + 40)

    def describe(self) -> dict:
        info: dict = {"kind": self.source, "family": "linear"}
        if self.tables is not None:
            t = self.tables
            info.update(n_features=t.n_features, n_scores=t.n_scores,
                        tie=("first of equal top scores" if t.tie == "first"
                             else "last of equal top scores (one-vs-rest)"),
                        scores=("softmax" if t.proba == "softmax"
                                else "normalized sigmoids (one-vs-rest)"),
                        decision="exact arg-max of the scores: float32 fast path with a "
                                 "proven error bound, exact integer sums when closer",
                        fast_path=bool(t.fast), accumulator_words=t.limbs)
        if self.converged is not None:
            info["converged"] = self.converged
        return info
