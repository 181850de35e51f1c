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
from kiloml.models.forest_compact import compact_tables
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

    @property
    def compact(self) -> bool:
        """int16 thresholds or integer leaves: the compacted tables are the model (their
        Python mirror is the reference), not scikit-learn's estimator."""
        return self.config.thresholds != "float32" or self.config.leaves != "exact"

    def fit(self, x: np.ndarray, y: np.ndarray) -> TreeModel:
        self.estimator.fit(np.asarray(x, dtype=np.float32), y)
        self.tables = None
        if self.compact and list(self.estimator.classes_) == list(range(self.n_classes)):
            self.compile(np.shape(x)[1])
        return self

    def _compacted(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labels, proba, device scores) of the compacted model."""
        x32 = np.asarray(x, dtype=np.float32)
        classes = self.estimator.classes_.astype(int)
        if list(classes) == list(range(self.n_classes)):
            t = self.tables or self.compile(x32.shape[1])
            return t.predict_batch(x32)
        # a fit without every class (a cross-validation fold): the same compaction on
        # the classes seen, mapped back (such a model is never emitted)
        tables = compact_tables(forest_tables(self.estimators, len(classes), x32.shape[1]),
                                self.config.thresholds, self.config.leaves)
        labels, proba, scores = tables.predict_batch(x32)
        full_p = np.zeros((len(x32), self.n_classes))
        full_s = np.zeros((len(x32), self.n_classes), np.float32)
        full_p[:, classes], full_s[:, classes] = proba, scores
        return classes[labels], full_p, full_s

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.compact:
            return self._compacted(x)[0]
        return self.estimator.predict(np.asarray(x, dtype=np.float32))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Scores [N, n_classes] (columns for classes absent from training are 0)."""
        if self.compact:
            return self._compacted(x)[1]
        proba = self.estimator.predict_proba(np.asarray(x, dtype=np.float32))
        out = np.zeros((len(x), self.n_classes))
        out[:, self.estimator.classes_.astype(int)] = proba
        return out

    def device_scores(self, x: np.ndarray) -> np.ndarray:
        """float32 [N, K]: what the C library writes as scores (predict_proba rounded the
        way the C vote computes it): the decision layer's input, reproduced exactly."""
        t = self.tables or self.compile(x.shape[1])
        return t.predict_batch(np.asarray(x, dtype=np.float32))[2]

    def compile(self, n_features: int) -> ForestTables:
        if list(self.estimator.classes_) != list(range(self.n_classes)):
            raise ValueError("the model must be trained on every class to be emitted as C")
        tables = forest_tables(self.estimators, self.n_classes, n_features)
        self.tables = compact_tables(tables, self.config.thresholds, self.config.leaves)
        return self.tables

    def emit_c(self, ctx: EmitContext) -> CStage:
        t = self.tables or self.compile(ctx.n_inputs)
        emit = emit_inline if self.config.c_style == "inline" else emit_table
        config, constants, call = emit(t, ctx.prefix, ctx.input, ctx.output)
        return CStage(runtime=runtime_modules(t), config=config, constants=constants, call=call)

    def cost(self, profile: TargetProfile, n_features: int) -> StageCost:
        """Uncalibrated structural estimate: table bytes as emitted (``table_bytes``:
        nodes, int16 or float32 thresholds, quantization grid, leaves), code, and
        instructions for every tree walked to max_depth plus the vote (and, with int16
        thresholds, quantizing the used features first)."""
        t = self.tables or self.compile(n_features)
        inline = self.config.c_style == "inline"
        fpu = profile.has_fpu
        mode = t.score_mode
        if t.quantized:  # integer compares: as cheap without an FPU
            per_node = (5 if inline else 14) if fpu else (7 if inline else 18)
            # float32 subtract and multiply, floor and clamp (from the bits without an
            # FPU); measured on the watch forest: ~15 per input on M4F, ~160 on M0+
            per_input = 15 if fpu else 160
        else:
            per_node = (5 if inline else 14) if fpu else (30 if inline else 40)
            per_input = 0
        per_leaf = (4, 12, 40, 6)[mode] * (1 if fpu or mode == 3 else 8)
        code = 14 * t.n_nodes + 10 * (t.n_nodes + t.n_trees) if inline else 600
        if inline:
            tables = 10 * t.n_inputs if t.quantized else 0
            leaves = t.leaf_bytes() if mode in (1, 2) else 0
        else:
            sizes = t.table_bytes()
            leaves = sizes.pop("leaves")
            tables = sum(sizes.values())
        code += (120 if t.quantized else 0) + (2000 if mode in (1, 2) else 0)
        return StageCost(flash_bytes=code + tables + leaves,
                         ram_bytes=0,
                         instructions=t.n_trees * (t.max_depth * per_node + per_leaf)
                         + 12 * t.n_classes + per_input * (t.n_inputs if t.quantized else 0))

    def describe(self) -> dict:
        t = self.tables
        info = {"kind": self.config.kind, "n_trees": len(self.estimators)}
        if t is not None:
            info.update(n_internal_nodes=t.n_nodes, max_depth=t.max_depth,
                        mixed_leaves=t.n_mixed,
                        c_style=self.config.c_style,
                        thresholds=self.config.thresholds, leaves=self.config.leaves,
                        score_arithmetic=("integer votes",
                                          "float32 sums of integer fractions, exact float64 "
                                          "when close",
                                          "float32 sums of float64 fractions, exact float64 "
                                          "when close",
                                          f"integer sums of leaf weights (total "
                                          f"{t.leaf_total} per leaf)")[t.score_mode])
            if t.quantized:
                info.update(quantized_inputs=t.n_inputs)
            if self.config.c_style != "inline":
                info.update(table_bytes=int(sum(t.table_bytes().values())))
        return info
