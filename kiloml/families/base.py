"""The contract every model kind follows, walked in the same order by every job.

A job (``kiloml run``, a search candidate, ``kiloml stress``'s retraining, the Python
API) prepares the data (kiloml.prepare), then asks the project's model family for:

1. ``model_inputs``: what the model reads for every window (the window stages' outputs
   assembled through the vector stages, fitted on the training rows; or the raw window),
   in the model's sample shape;
2. ``cross_validate``: grouped k-fold on the training groups, vector stages refitted on
   each fold's training rows, with out-of-fold scores;
3. ``new_model`` + ``fit``: the model stage trained on all training windows;
4. ``out_of_fold_scores``: what calibrated decision thresholds are fitted on;
5. ``finish``: the family's own metrics and files (a network's float / int8 accuracy,
   model.tflite, TFLM parity), then, after the library is verified, ``after_target``.

Everything after that (C library, host and MCU parity, budgets, report) is common: the
model stage is the pipeline's last stage whatever its family.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from kiloml.data.splits import Split
from kiloml.data.windows import WindowSet
from kiloml.evaluate.metrics import classification_metrics
from kiloml.pipeline import Pipeline
from kiloml.prepare import window_features_in_batches
from kiloml.progress import track
from kiloml.project import LoadedProject

OOF_KEY = "_oof_scores"  # cross-validation's out-of-fold scores [N, K]; popped by the job


@dataclass
class ModelInputs:
    """What the model reads. ``parts``: the window stages' outputs for every window (kept
    so vector stages can be refitted per fold); ``x``: [N, *sample_shape] float32 with the
    vector stages fitted on the training rows."""

    parts: list[np.ndarray]
    sample_shape: tuple[int, ...]
    x: np.ndarray

    @property
    def features(self) -> np.ndarray:
        """[N, F]: the flat vector the C library computes for each window."""
        return self.x.reshape(len(self.x), -1)


class ModelFamily(ABC):
    """One model kind (trees, networks, ...) as every job walks it."""

    name: ClassVar[str]

    def __init__(self, project: LoadedProject) -> None:
        self.project = project
        self.config = project.config.model

    @property
    def retrainable(self) -> bool:
        """Whether `kiloml stress` may train it again on augmented recordings."""
        return True

    # --- 1. inputs ---------------------------------------------------------------------

    @property
    def reads_window(self) -> bool:
        """The model reads the raw window (no feature stages)."""
        return False

    def prepare_pipeline(self, pipeline: Pipeline) -> None:
        """Adjust the pipeline's feature stages to what the model reads (before features
        are computed). Models on the feature vector keep the project's stages."""
        return None

    @abstractmethod
    def sample_shape(self, pipeline: Pipeline, n_features: int) -> tuple[int, ...]:
        """The shape of one sample the model reads, checked against the settings."""

    def model_inputs(self, pipeline: Pipeline, windows: WindowSet, split: Split,
                     parts: list[np.ndarray] | None = None) -> ModelInputs:
        self.prepare_pipeline(pipeline)
        if parts is None:
            parts = window_features_in_batches(pipeline, windows)
        flat = pipeline.assemble(parts, fit_rows=split.train, y=windows.y)
        shape = self.sample_shape(pipeline, flat.shape[1])
        return ModelInputs(parts, shape, flat.reshape(len(flat), *shape))

    def assemble(self, pipeline: Pipeline, inputs: ModelInputs, rows: np.ndarray,
                 y: np.ndarray) -> np.ndarray:
        """The model's input for every window with the vector stages fitted on ``rows``."""
        flat = pipeline.assemble(inputs.parts, fit_rows=rows, y=y)
        return flat.reshape(len(flat), *inputs.sample_shape)

    # --- 2.-3. models ----------------------------------------------------------------------

    @abstractmethod
    def new_model(self, pipeline: Pipeline, sample_shape: tuple[int, ...]):
        """An unfitted model stage with the project's settings."""

    @abstractmethod
    def fit(self, model, x: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
            progress: bool = True) -> None:
        """Train ``model`` on samples ``x`` (groups pick validation sets where needed)."""

    def cross_validate(self, pipeline: Pipeline, inputs: ModelInputs, windows: WindowSet,
                       split: Split) -> dict:
        """Grouped k-fold on the training groups: accuracy per fold and out-of-fold
        scores (vector stages refitted on each fold's training rows)."""
        if not split.folds:
            return {"folds": 0, "note": split.cv_note or "no cross-validation"}
        accuracies, balanced = [], []
        oof = np.full((len(windows), pipeline.n_classes), np.nan)
        for fit_idx, val_idx in track(split.folds, "cross-validating"):
            x = self.assemble(pipeline, inputs, fit_idx, windows.y)
            model = self.new_model(pipeline, inputs.sample_shape)
            self.fit(model, x[fit_idx], windows.y[fit_idx], windows.group[fit_idx],
                     progress=False)
            pred = model.predict(x[val_idx])
            oof[val_idx] = model.predict_proba(x[val_idx])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = classification_metrics(windows.y[val_idx], pred, windows.group[val_idx],
                                           windows.class_names)
            accuracies.append(m["accuracy"])
            balanced.append(m["balanced_accuracy"])
        return {"folds": len(split.folds), "accuracy_per_fold": accuracies,
                "accuracy_mean": float(np.mean(accuracies)),
                "accuracy_std": float(np.std(accuracies)),
                "balanced_accuracy_mean": float(np.mean(balanced)),
                **({"note": split.cv_note} if split.cv_note else {}),
                OOF_KEY: oof}

    def out_of_fold_scores(self, cv: dict, model, x: np.ndarray, split: Split
                           ) -> np.ndarray | None:
        """Scores never seen in training, for calibrated thresholds (pops them from cv)."""
        return cv.pop(OOF_KEY, None)

    # --- 5. the family's own results ----------------------------------------------------

    def finish(self, out: Path, model, x: np.ndarray, windows: WindowSet, split: Split
               ) -> dict:
        """Metrics (and files in ``out``) of the family's own; merged into metrics.json."""
        return {}

    def after_target(self, metrics: dict, model, x: np.ndarray, split: Split, profile,
                     out: Path, emulate: bool) -> None:
        """Called once the library is verified on the target (per-layer figures ...)."""
        return None

    def search_columns(self, model) -> dict:
        """What a search keeps of a trained candidate besides its score and estimate."""
        return {}

    # --- the estimate before training and the data checks' model -----------------------

    @abstractmethod
    def estimate_before_training(self, pipeline: Pipeline, profile, n_features: int,
                                 n_train_windows: int,
                                 probe: tuple[np.ndarray, np.ndarray] | None) -> dict:
        """The calibrated estimate of a candidate before anything is trained."""

    def needs_probe(self) -> bool:
        """Whether the estimate before training wants the training windows' features."""
        return False

    @abstractmethod
    def check_data_estimator(self, n_classes: int, seed: int):
        """(a scikit-learn estimator, its description) for `kiloml check-data`."""
