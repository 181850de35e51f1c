"""A linear model stage saved as its numbers and read back checked (no scikit-learn state,
no pickle): the [model] settings (or none, for a converted estimator), the coefficients and
intercepts (float64, finite, within the range kml_linear holds), the label and score rules
and what scikit-learn's own arithmetic was. The C tables are rebuilt from them."""

from __future__ import annotations

import re

from kiloml.models.linear import LinearModel
from kiloml.models.linear_tables import PROBAS, TIES, LinearTableError, LinearTables
from kiloml.persist.archive import ArrayBook, describe
from kiloml.persist.fields import Fields
from kiloml.project import LINEAR_CONFIGS

SOURCE_PATTERN = re.compile(r"^[A-Za-z0-9_.()+-]{1,200}$")  # an estimator's or a kind's name


def save_linear(model: LinearModel, book: ArrayBook) -> dict:
    t = model.tables
    if t is None or model.constant is not None or \
            list(model.classes) != list(range(model.n_classes)):
        raise ValueError("a linear model is saved when it is fitted on every class")
    return {"kind": "linear",
            "config": None if model.config is None else model.config.model_dump(mode="json"),
            "source": model.source, "n_classes": int(model.n_classes),
            "coef": book.put("model.coef", t.coef), "intercept": book.put("model.intercept",
                                                                          t.intercept),
            "tie": t.tie, "proba": t.proba, "sklearn_bits": int(t.sklearn_bits),
            "converged": model.converged}


def load_linear(f: Fields, n_classes: int, n_features: int) -> LinearModel:
    raw = f.raw("config")
    config = None
    if raw is not None:
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if not isinstance(kind, str) or kind not in LINEAR_CONFIGS:
            raise f.error("config", f"{describe(kind)} is not a linear model kind "
                                    f"({', '.join(LINEAR_CONFIGS)})")
        config = f.config("config", LINEAR_CONFIGS[kind])
    source = f.str("source", max_length=200)
    if not SOURCE_PATTERN.fullmatch(source):
        raise f.error("source", f"{source[:40]!r} is not an estimator name")
    k = f.int("n_classes", n_classes, n_classes)
    scores = 1 if k == 2 else k
    coef = f.array("coef", "float64", (scores, n_features), finite=True)
    intercept = f.array("intercept", "float64", (scores,), finite=True)
    tie = f.str("tie", choices=TIES)
    proba = f.str("proba", choices=PROBAS)
    bits = f.int("sklearn_bits", 24, 53)
    if bits not in (24, 53):
        raise f.error("sklearn_bits", f"{bits}: expected 24 (float32) or 53 (float64)")
    converged = f.raw("converged")
    if converged is not None and not isinstance(converged, bool):
        raise f.error("converged", f"expected true, false or null, got {describe(converged)}")
    try:
        tables = LinearTables(coef.copy(), intercept.copy(), k, tie=tie, proba=proba,
                              sklearn_bits=bits)
    except LinearTableError as exc:
        raise f.error("coef", str(exc)) from None
    model = LinearModel.from_tables(tables, config, source)
    model.converged = converged
    return model
