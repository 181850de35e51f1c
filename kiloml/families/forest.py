"""Decision trees, random forests and extra trees on the feature vector: scikit-learn's
estimators, emitted as exact C by the tree engine (kiloml.models.trees)."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from kiloml.families.base import ModelFamily
from kiloml.models.trees import TreeModel
from kiloml.pipeline import Pipeline


class ForestFamily(ModelFamily):
    name = "trees"

    def sample_shape(self, pipeline: Pipeline, n_features: int) -> tuple[int, ...]:
        return (n_features,)

    def new_model(self, pipeline: Pipeline, sample_shape: tuple[int, ...]) -> TreeModel:
        return TreeModel(self.config, pipeline.n_classes)

    def fit(self, model: TreeModel, x: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
            progress: bool = True) -> None:
        model.fit(x, y)

    def search_columns(self, model: TreeModel) -> dict:
        return {"tree": model.describe()}

    def needs_probe(self) -> bool:
        return True  # a forest's size depends on the data: its first trees are grown

    def estimate_before_training(self, pipeline: Pipeline, profile, n_features: int,
                                 n_train_windows: int,
                                 probe: tuple[np.ndarray, np.ndarray] | None) -> dict:
        from kiloml.targets.estimate import estimate_before_training

        return estimate_before_training(pipeline, self.config, profile, n_features,
                                        n_train_windows, probe=probe)

    def check_data_estimator(self, n_classes: int, seed: int):
        return (clone(TreeModel(self.config, n_classes).estimator),
                f"the project's model ({self.config.kind})")
