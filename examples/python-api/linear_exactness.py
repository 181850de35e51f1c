"""How often scikit-learn's own predict and kiloml's exact linear reference differ, and
why: on ~3,100 inputs per model (random, scaled, integer, near ties at float32 precision,
zeros, huge and subnormal values; the generators of tests/test_linear.py), for models
fitted on float64 data (float64 coefficients) and on float32 data (float32 coefficients,
which scikit-learn applies in float32).

    .venv/bin/python examples/python-api/linear_exactness.py

Per model: rows, rows the C decides on its exact path, rows inside scikit-learn's own
rounding band (sklearn_ambiguous), rows where scikit-learn's predict differs from the
exact reference (all inside the band, none outside), and rows of the band where
scikit-learn's answer for the row alone differs from its answer in the batch."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from test_linear import ESTIMATORS, inputs, training_data

from kiloml.models.linear import tables_from_estimator

warnings.simplefilter("ignore")
for dtype in ("float64", "float32"):
    for name, (make, k) in ESTIMATORS.items():
        rng = np.random.default_rng(len(name) + 7 * (dtype == "float32"))
        x_train, y = training_data(rng, k, 8, dtype)
        est = make().fit(x_train, y)
        tables, _ = tables_from_estimator(est)
        x = inputs(tables, rng, 2000)
        x = x[np.all(np.isfinite(x), axis=1)]
        want, got, band = tables.labels(x), est.predict(x), tables.sklearn_ambiguous(x)
        alone = np.array([est.predict(r[None])[0] for r in x[band]]) if band.any() else []
        print(f"{dtype} {name:26s} rows {len(x)}  exact path {int((tables.paths(x) == 1).sum())}"
              f"  in sklearn's band {int(band.sum())}  sklearn != exact "
              f"{int((got != want).sum())} (outside the band {int(((got != want) & ~band).sum())})"
              f"  sklearn alone != in batch {int(np.sum(alone != got[band]))}")
