"""An imported ONNX tree ensemble ([model] kind = "imported", path = "<model>.onnx" holding
an ai.onnx.ml.TreeEnsembleClassifier): a tree model on the feature vector, on kiloml's
tree engine with onnxruntime's arithmetic (kiloml.models.onnx_trees). Nothing is trained
here; onnxruntime, where installed, checks the decisions on the held-out windows."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from kiloml.data.splits import Split
from kiloml.data.windows import WindowSet
from kiloml.families.base import ModelFamily
from kiloml.models.onnx_trees import ImportedForest
from kiloml.pipeline import Pipeline
from kiloml.project import NeuralModelConfig

IMPORTED_TREES_CV_NOTE = ("an imported tree ensemble is not retrained per fold; it was "
                          "trained elsewhere, so its scores on the training groups stand in "
                          "for out-of-fold scores (calibrated thresholds are fitted on them)")


class ImportedTreesFamily(ModelFamily):
    name = "imported_trees"
    config: NeuralModelConfig

    @property
    def retrainable(self) -> bool:
        return False

    @property
    def path(self) -> Path:
        assert self.config.path is not None
        return self.project.resolve(self.config.path)

    def sample_shape(self, pipeline: Pipeline, n_features: int) -> tuple[int, ...]:
        return (n_features,)

    def new_model(self, pipeline: Pipeline, sample_shape: tuple[int, ...]) -> ImportedForest:
        return ImportedForest(self.path, pipeline.class_names, int(np.prod(sample_shape)))

    def fit(self, model: ImportedForest, x: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
            progress: bool = True) -> None:
        model.fit(x, y)

    def cross_validate(self, pipeline: Pipeline, inputs, windows: WindowSet, split: Split
                       ) -> dict:
        return {"folds": 0, "note": IMPORTED_TREES_CV_NOTE}

    def out_of_fold_scores(self, cv: dict, model: ImportedForest, x: np.ndarray,
                           split: Split) -> np.ndarray | None:
        scores = model.predict_proba(x[split.train])
        out = np.full((len(x), scores.shape[1]), np.nan)
        out[split.train] = scores
        return out

    def finish(self, out: Path, model: ImportedForest, x: np.ndarray, windows: WindowSet,
               split: Split) -> dict:
        return {"imported_trees": {"onnxruntime_parity": onnxruntime_parity(
            model, x[split.test].reshape(len(split.test), -1))}}

    def search_columns(self, model: ImportedForest) -> dict:
        return {"tree": model.describe()}

    def estimate_before_training(self, pipeline: Pipeline, profile, n_features: int,
                                 n_train_windows: int,
                                 probe: tuple[np.ndarray, np.ndarray] | None) -> dict:
        """The ensemble is known before anything is trained: its own tables' estimate."""
        from kiloml.targets.estimate import estimate_resources

        model = self.new_model(pipeline, (n_features,))
        model.fit()
        p = copy.copy(pipeline)
        p.model = model
        return estimate_resources(p, profile, n_features)

    def check_data_estimator(self, n_classes: int, seed: int):
        from sklearn.ensemble import RandomForestClassifier

        return (RandomForestClassifier(n_estimators=50, random_state=seed, n_jobs=1),
                "random_forest (50 trees), a stand-in for the imported tree ensemble")


def onnxruntime_parity(model: ImportedForest, features: np.ndarray) -> dict:
    """The imported model run by onnxruntime (one thread: trees summed in order) on the
    held-out windows' features against kiloml's tables: labels and probabilities."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"checked": False, "note": "onnxruntime is not installed"}
    assert model.ensemble is not None and model.columns is not None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # threads merge partial sums in another order
    sess = ort.InferenceSession(str(model.path), options, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(features, np.float32)
    outputs = sess.run(None, {sess.get_inputs()[0].name: x})
    labels = [str(v) for v in np.asarray(outputs[0]).reshape(-1)]
    proba = outputs[1]
    if isinstance(proba, list):  # a ZipMap: one {label: probability} per row
        proba = np.array([[row[_key(row, c)] for c in model.ensemble.class_labels]
                          for row in proba], np.float32)
    proba = np.asarray(proba, np.float32).reshape(len(x), -1)
    want = np.zeros_like(proba)
    want[:, model.columns] = proba
    column = {c: i for i, c in enumerate(model.ensemble.class_labels)}
    want_labels = model.columns[[column[v] for v in labels]]
    got = model.device_scores(x)
    equal = int(np.sum(model.predict(x) == want_labels))
    return {"checked": True, "n": len(x), "labels_equal": equal,
            "all_labels_equal": equal == len(x),
            "scores_bit_exact": bool(np.array_equal(got.view(np.uint32),
                                                    want.view(np.uint32))),
            "max_abs_score_diff": float(np.abs(got - want).max(initial=0.0))}


def _key(row: dict, label: str):
    """A ZipMap row's key for a class label (int64 labels are ints there)."""
    return label if label in row else int(label)
