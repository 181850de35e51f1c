"""Tree models (scikit-learn DecisionTree, RandomForest, ExtraTrees) as a pipeline stage.

The flattening and its exactness argument live in ``forest.py``; the C forms
("table" and "inline") in ``forest_c.py``.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from kiloml.models.forest import (  # noqa: F401 - re-exported
    ForestTables,
    float32_threshold,
    forest_tables,
    integer_fractions,
)
from kiloml.models.forest_c import emit_inline, emit_table, runtime_modules
from kiloml.project import TreeModelConfig
from kiloml.stage import CStage, EmitContext, StageCost
from kiloml.targets.profiles import TargetProfile


class TreeModel:
    """A scikit-learn tree classifier as a pipeline stage (features -> class scores)."""

    C_STYLES = ("table", "inline")

    def __init__(self, config: TreeModelConfig, n_classes: int) -> None:
        self.config = config
        self.n_classes = n_classes
        self.estimator = self._make()
        self.tables: ForestTables | None = None

    def _make(self) -> DecisionTreeClassifier | RandomForestClassifier | ExtraTreesClassifier:
        c = self.config
        common = dict(max_depth=c.max_depth, min_samples_leaf=c.min_samples_leaf,
                      max_features=None if c.max_features == "all" else c.max_features,
                      class_weight=c.class_weight,
                      random_state=c.random_state)
        if c.kind == "decision_tree":
            return DecisionTreeClassifier(**common)
        cls = RandomForestClassifier if c.kind == "random_forest" else ExtraTreesClassifier
        # n_jobs=1 keeps predict_proba's summation in tree order (the C order).
        return cls(n_estimators=c.n_estimators, n_jobs=1, **common)

    @property
    def estimators(self) -> list[DecisionTreeClassifier]:
        est = self.estimator
        return [est] if isinstance(est, DecisionTreeClassifier) else list(est.estimators_)

    def fit(self, x: np.ndarray, y: np.ndarray) -> TreeModel:
        self.estimator.fit(np.asarray(x, dtype=np.float32), y)
        self.tables = None
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.estimator.predict(np.asarray(x, dtype=np.float32))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Scores [N, n_classes] (columns for classes absent from training are 0)."""
        proba = self.estimator.predict_proba(np.asarray(x, dtype=np.float32))
        out = np.zeros((len(x), self.n_classes))
        out[:, self.estimator.classes_.astype(int)] = proba
        return out

    def device_scores(self, x: np.ndarray) -> np.ndarray:
        """float32 [N, K]: what the C library writes as scores (predict_proba rounded the
        way the C vote computes it): the decision layer's input, reproduced exactly."""
        t = self.tables or self.compile(x.shape[1])
        x32 = np.asarray(x, dtype=np.float32)
        return np.stack([t.device_scores(row) for row in x32]) if len(x32) else \
            np.zeros((0, self.n_classes), np.float32)

    def compile(self, n_features: int) -> ForestTables:
        if list(self.estimator.classes_) != list(range(self.n_classes)):
            raise ValueError("the model must be trained on every class to be emitted as C")
        self.tables = forest_tables(self.estimators, self.n_classes, n_features)
        return self.tables

    def emit_c(self, ctx: EmitContext) -> CStage:
        t = self.tables or self.compile(ctx.n_inputs)
        emit = emit_inline if self.config.c_style == "inline" else emit_table
        config, constants, call = emit(t, ctx.prefix, ctx.input, ctx.output)
        return CStage(runtime=runtime_modules(t), config=config, constants=constants, call=call)

    def cost(self, profile: TargetProfile, n_features: int) -> StageCost:
        t = self.tables or self.compile(n_features)
        inline = self.config.c_style == "inline"
        per_node = (5 if inline else 14) if profile.has_fpu else (30 if inline else 40)
        per_leaf = (4, 12, 40)[t.score_mode] * (1 if profile.has_fpu else 8)
        code = 14 * t.n_nodes + 10 * (t.n_nodes + t.n_trees) if inline else 600
        table = 0 if inline else t.n_nodes * (1 + 4 + 2 * np.dtype(t.ref_dtype).itemsize)
        leaves = t.n_mixed * (t.n_classes + 2) * 2
        return StageCost(flash_bytes=code + table + leaves + (2000 if t.score_mode else 0),
                         ram_bytes=0,
                         instructions=t.n_trees * (t.max_depth * per_node + per_leaf)
                         + 12 * t.n_classes)

    def describe(self) -> dict:
        t = self.tables
        info = {"kind": self.config.kind, "n_trees": len(self.estimators)}
        if t is not None:
            info.update(n_internal_nodes=t.n_nodes, max_depth=t.max_depth,
                        mixed_leaves=t.n_mixed,
                        c_style=self.config.c_style,
                        score_arithmetic=("integer votes",
                                          "float32 sums of integer fractions, exact float64 "
                                          "when close",
                                          "float32 sums of float64 fractions, exact float64 "
                                          "when close")[t.score_mode])
        return info
