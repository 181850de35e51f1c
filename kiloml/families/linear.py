"""Linear classifiers on the feature vector (logistic regression, linear SVM, ridge):
scikit-learn's estimators, emitted as exact C by kml_linear (kiloml.models.linear)."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from kiloml.errors import KilomlError
from kiloml.families.base import ModelFamily
from kiloml.models.linear import LinearModel, make_estimator
from kiloml.pipeline import Pipeline
from kiloml.project import locate


class LinearFamily(ModelFamily):
    name = "linear"

    def sample_shape(self, pipeline: Pipeline, n_features: int) -> tuple[int, ...]:
        return (n_features,)

    def new_model(self, pipeline: Pipeline, sample_shape: tuple[int, ...]) -> LinearModel:
        return LinearModel(self.config, pipeline.n_classes)

    def fit(self, model: LinearModel, x: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
            progress: bool = True) -> None:
        try:
            model.fit(x, y)
        except ValueError as exc:  # settings scikit-learn refuses for this data
            project = self.project
            raise KilomlError(f"scikit-learn cannot fit [model] kind = '{self.config.kind}' "
                              f"with these settings: {exc}"[:400], file=project.path,
                              line=locate(project, ("model",), "kind"),
                              where="[model]") from None

    def finish(self, out, model: LinearModel, x, windows, split) -> dict:
        if model.converged is False:
            return {"linear": {"note": f"the {self.config.kind} solver did not converge in "
                                       f"max_iter = {self.config.max_iter} iterations; "
                                       "scale the features ([[features]] stage = "
                                       "\"scale\") or raise max_iter"}}
        return {}

    def search_columns(self, model: LinearModel) -> dict:
        return {"linear": model.describe()}

    def estimate_before_training(self, pipeline: Pipeline, profile, n_features: int,
                                 n_train_windows: int,
                                 probe: tuple[np.ndarray, np.ndarray] | None) -> dict:
        from kiloml.targets.estimate import estimate_before_training

        return estimate_before_training(pipeline, self.config, profile, n_features,
                                        n_train_windows)

    def check_data_estimator(self, n_classes: int, seed: int):
        return (clone(make_estimator(self.config)),
                f"the project's model ({self.config.kind})")
