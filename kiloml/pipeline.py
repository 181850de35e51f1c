"""A pipeline: window -> feature stages -> model, the object every step walks.

Training, evaluation, code generation, verification and reporting all use the
same ordered list of stages, so a stage added once shows up everywhere.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kiloml.dsp.statistics import Statistics
from kiloml.errors import KilomlError
from kiloml.models.trees import TreeModel
from kiloml.project import Project
from kiloml.stage import FeatureStage


def make_feature_stages(project: Project) -> list[FeatureStage]:
    stages: list[FeatureStage] = []
    for cfg in project.features:
        if cfg.stage == "statistics":
            stages.append(Statistics(list(cfg.statistics)))
        else:  # pragma: no cover - the schema admits only known stages
            raise KilomlError(f"unknown feature stage '{cfg.stage}'")
    return stages


@dataclass
class Pipeline:
    name: str
    channels: list[str]
    sample_rate_hz: float
    window_samples: int
    stride_samples: int
    class_names: list[str]
    features: list[FeatureStage]
    model: TreeModel
    notes: dict = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def feature_names(self) -> list[str]:
        names = list(self.channels)
        for stage in self.features:
            names = stage.feature_names(names)
        return names

    def fit_features(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = x
        for stage in self.features:
            out = stage.fit(out, y).transform(out)
        return out

    def compute_features(self, x: np.ndarray) -> np.ndarray:
        out = x
        for stage in self.features:
            out = stage.transform(out)
        return np.asarray(out, dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(self.compute_features(x))

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(self, f)

    @staticmethod
    def load(path: Path) -> Pipeline:
        with open(path, "rb") as f:
            return pickle.load(f)
