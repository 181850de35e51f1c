"""The payload of a forest blob: the table-style forest in an updatable library's fixed
types (kiloml.models.forest_c.UPDATABLE_TYPES), the decision layer's parameters and the
golden vectors the device's self-test replays (docs/blob_format.md, "Sections")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiloml.blob import format as fmt
from kiloml.decision.layer import SMOOTHING, DecisionLayer, DecisionParams
from kiloml.models.forest import ForestTables
from kiloml.models.forest_c import UPDATABLE_TYPES, heads_as, inv_total, sparse_entries

F32 = np.float32
GOLDEN_VECTORS = 32  # held-out feature vectors per blob (consecutive windows)


@dataclass(frozen=True)
class Golden:
    features: np.ndarray   # float32 [n, F]
    labels: np.ndarray     # int [n]: kml_forest_predict's class
    decisions: np.ndarray  # int [n]: kml_decision_step's decision from a reset state


def golden_of(tables: ForestTables, decision: DecisionParams, features: np.ndarray
              ) -> Golden:
    """The decisions the C library makes on ``features`` (in order, from a reset decision
    layer): the forest's C twin and the decision layer's twin, bit for bit."""
    x = np.ascontiguousarray(features, F32)
    labels, _, scores = tables.predict_batch(x)
    steps = DecisionLayer(decision).run(np.asarray(scores, F32), np.asarray(labels))
    return Golden(x, np.asarray(labels, np.int64), steps.decision)


def _le(values, dtype) -> bytes:
    return np.asarray(values).astype(np.dtype(dtype).newbyteorder("<")).tobytes()


def forest_sections(t: ForestTables) -> bytes:
    u = UPDATABLE_TYPES
    starts, classes, nums, values = sparse_entries(t) if t.score_mode else ([0], [], [], [])
    meta = np.array([t.n_trees, t.n_classes, t.n_features, t.max_depth, t.score_mode,
                     t.n_nodes, t.n_mixed, len(classes)], "<i4").tobytes()
    meta += np.array([t.margin, inv_total(t)], "<f4").tobytes()
    out = fmt.section(fmt.FOREST, meta)
    out += fmt.section(fmt.TREE_BASE, _le(t.tree_base, u["base"]))
    out += fmt.section(fmt.HEAD, _le(heads_as(t, u["head"]), u["head"]))
    out += fmt.section(fmt.THRESHOLD, _le(t.threshold, "f4"))
    out += fmt.section(fmt.LEFT, _le(t.left, u["ref"]))
    out += fmt.section(fmt.RIGHT, _le(t.right, u["ref"]))
    out += fmt.section(fmt.NAN_LEFT, np.packbits(t.nan_left, bitorder="little").tobytes())
    if t.score_mode:
        out += fmt.section(fmt.LEAF_START, _le(starts, "u2"))
        out += fmt.section(fmt.ENTRY_CLASS, _le(classes, u["class"]))
        if t.score_mode == 1:
            out += fmt.section(fmt.ENTRY_NUM, _le(nums, u["fraction"]))
        else:
            out += fmt.section(fmt.ENTRY_VALUE, _le(np.array(values, np.uint64), "u8"))
    return out


def decision_section(d: DecisionParams) -> bytes:
    head = np.array([d.n_classes, SMOOTHING[d.smoothing], d.smoothing_windows,
                     d.on_windows, d.off_windows], "<i4").tobytes()
    head += np.array([d.min_score, d.min_margin], "<f4").tobytes()
    return fmt.section(fmt.DECISION, head + _le(np.asarray(d.thresholds, F32), "f4"))


def golden_section(g: Golden) -> bytes:
    n, f = g.features.shape
    data = np.array([n, f], "<i4").tobytes() + _le(g.features, "f4")
    data += _le(g.labels, "i4") + _le(g.decisions, "i4")
    return fmt.section(fmt.GOLDEN, data)


def payload(t: ForestTables, d: DecisionParams, g: Golden) -> bytes:
    return forest_sections(t) + decision_section(d) + golden_section(g)
