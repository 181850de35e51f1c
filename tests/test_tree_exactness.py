"""Exact C emission of scikit-learn trees: the C kernel predicts what scikit-learn predicts.

For each case a TreeModel is fitted, emitted with ``emit_c`` (both C styles: node
tables and inline if/else) and compiled with the strict flags together with the
runtime and a small driver that reads float32 feature rows and writes label, scores
and each tree's leaf payload. The C output is compared with ``predict`` (identical
labels), ``predict_proba`` (scores within 1e-6) and ``apply`` (the leaf reached in
every tree) on training rows, rows sitting on the float32 neighbours of every kind of
threshold, and random rows. The data makes ties likely: few trees, many classes,
quantized features, duplicated rows with conflicting labels. The exact float64 path,
which the float32 fast path leaves to near-ties, is also run on every row.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import kiloml
from kiloml.codegen.library import STRICT_CFLAGS
from kiloml.models.forest_c import runtime_modules
from kiloml.models.trees import (
    ForestTables,
    TreeModel,
    float32_threshold,
    forest_tables,
    integer_fractions,
)
from kiloml.project import TreeModelConfig
from kiloml.stage import EmitContext

RUNTIME = Path(kiloml.__file__).resolve().parent / "runtime"
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
F32 = np.float32
F32_MAX = np.finfo(F32).max

DRIVER_C = r"""
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

#include "kml_trees.h"

typedef struct {
    int32_t label;
    float scores[@K@];
} result_t;

@CONSTANTS@

static void predict(const float *x, result_t *out)
{
    @CALL@
}

/* in: int32 n_rows, int32 n_features, float32 rows; out per row: int32 label,
 * float32 scores[K], int32 leaf payload of each tree. */
int main(int argc, char **argv)
{
    FILE *in, *out;
    int32_t head[2], r, t;
    float *x;
    int32_t *leaves;
    result_t result;
#if KML_TREE_INT16_THRESHOLDS && !defined(DRIVER_NO_LEAVES)
    int16_t q[KML_TREE_MAX_INPUTS];
#endif
    if (argc != 3) {
        fprintf(stderr, "usage: driver in out\n");
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL || fread(head, sizeof head[0], 2, in) != 2) {
        fprintf(stderr, "bad input\n");
        return 2;
    }
    x = (float *)malloc((size_t)head[1] * sizeof(float));
    leaves = (int32_t *)malloc((size_t)@T@ * sizeof(int32_t));
    if (x == NULL || leaves == NULL) {
        return 4;
    }
    for (r = 0; r < head[0]; ++r) {
        if (fread(x, sizeof(float), (size_t)head[1], in) != (size_t)head[1]) {
            fprintf(stderr, "short read\n");
            return 3;
        }
        predict(x, &result);
#if KML_TREE_INT16_THRESHOLDS && !defined(DRIVER_NO_LEAVES)
        kml_forest_quantize(&kml_m_forest, x, q); /* compact thresholds: walk on q */
#endif
        for (t = 0; t < @T@; ++t) {
#ifdef DRIVER_NO_LEAVES /* inline trees have no node tables to walk */
            leaves[t] = -1;
#elif KML_TREE_INT16_THRESHOLDS
            leaves[t] = (int32_t)kml_forest_leaf(&kml_m_forest, t, q);
#else
            leaves[t] = (int32_t)kml_forest_leaf(&kml_m_forest, t, x);
#endif
        }
        fwrite(&result.label, sizeof result.label, 1, out);
        fwrite(result.scores, sizeof(float), @K@, out);
        fwrite(leaves, sizeof(int32_t), (size_t)@T@, out);
    }
    free(x);
    free(leaves);
    fclose(in);
    return fclose(out) == 0 ? 0 : 5;
}
"""


# ---------------------------------------------------------------- float32_threshold


def float32_neighbours(v: np.ndarray, steps: int) -> np.ndarray:
    """[len(v), 2 * steps + 1]: v and its `steps` float32 neighbours each way."""
    v = np.asarray(v, F32)
    cols = [v]
    up = down = v
    for _ in range(steps):
        up = np.nextafter(up, F32(np.inf))
        down = np.nextafter(down, F32(-np.inf))
        cols = [down, *cols, up]
    return np.stack(cols, axis=1)


def random_thresholds(rng: np.random.Generator, n: int) -> np.ndarray:
    """float64 thresholds of every awkward sort."""
    sign = rng.choice([-1.0, 1.0], n)
    magnitude = 10.0 ** rng.uniform(-47, 39, n)  # float32 denormals to beyond float32 max
    general = sign * magnitude * rng.uniform(1, 10, n)
    as_f32 = general.astype(F32)  # overflows to inf for the largest; filtered below
    exact = as_f32[np.isfinite(as_f32)].astype(np.float64)  # exactly representable
    up = np.nextafter(exact, np.inf)  # just above / below a float32, in float64
    down = np.nextafter(exact, -np.inf)
    nxt = np.nextafter(as_f32[np.isfinite(as_f32)], F32(np.inf)).astype(np.float64)
    midpoint = exact / 2.0 + nxt / 2.0  # what the best splitter computes
    quantized = np.round(rng.normal(size=n) * 3, 1)  # 0.1 steps: not float32 values
    special = np.array([
        0.0, -0.0, 1e-46, -1e-46, 5e-324, -5e-324, 1.401298464324817e-45,
        float(F32_MAX), -float(F32_MAX), np.nextafter(float(F32_MAX), np.inf),
        np.nextafter(-float(F32_MAX), -np.inf), float(F32_MAX) * (1 + 2.0**-25),
        -float(F32_MAX) * (1 + 2.0**-25), float(F32_MAX) * (1 + 2.0**-23), 3.5e38, -3.5e38,
        1e39, -1e39, 1e300, -1e300, float(np.finfo(np.float64).max),
        float(np.finfo(F32).tiny), -float(np.finfo(F32).tiny), 0.1, -0.1, 1 / 3, 16777217.0,
    ])
    return np.concatenate([general, exact, up, down, midpoint, quantized, special])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_float32_threshold_property() -> None:
    rng = np.random.default_rng(0)
    thresholds = random_thresholds(rng, 3000)
    assert len(thresholds) > 15000
    specials = np.array([0.0, -0.0, np.inf, -np.inf, F32_MAX, -F32_MAX, 1e-45, -1e-45], F32)
    checked = 0
    t32 = np.array([float32_threshold(float(t)) for t in thresholds])
    near = float32_neighbours(thresholds.astype(F32), 5)  # around float32(t)
    assert t32.dtype == F32
    candidates = np.concatenate(
        [near, float32_neighbours(t32, 5), np.broadcast_to(specials, (len(t32), 8))], axis=1)
    candidates = candidates.astype(F32)
    sklearn_side = candidates.astype(np.float64) <= thresholds[:, None]  # x promoted to float64
    kernel_side = candidates <= t32[:, None]
    bad = np.flatnonzero((sklearn_side != kernel_side).any(axis=1))
    assert not len(bad), [(float(thresholds[i]), float(t32[i])) for i in bad[:5]]
    checked += candidates.size
    assert checked > 300000
    # t32 is the largest float32 not above t
    finite = ~np.isneginf(t32)
    assert np.all(t32[finite].astype(np.float64) <= thresholds[finite])
    above = np.nextafter(t32, F32(np.inf)).astype(np.float64)
    assert np.all(above > thresholds)
    # exactly representable thresholds are kept as they are
    exact = thresholds == thresholds.astype(F32).astype(np.float64)
    assert np.array_equal(t32[exact], thresholds[exact].astype(F32))


def test_float32_threshold_examples() -> None:
    with np.errstate(over="ignore"):
        assert float32_threshold(1e39) == F32_MAX
        assert float32_threshold(float(F32_MAX) * (1 + 2.0**-25)) == F32_MAX
        assert float32_threshold(-1e39) == -np.inf
        assert float32_threshold(-float(F32_MAX) * (1 + 2.0**-25)) == -np.inf
    assert float32_threshold(0.1) == np.nextafter(F32(0.1), F32(0))  # float32(0.1) > 0.1
    assert float32_threshold(0.7) == F32(0.7)  # float32(0.7) < 0.7
    assert float32_threshold(1e-46) == 0.0
    assert float32_threshold(-1e-46) == -np.float32(1.4e-45)
    assert isinstance(float32_threshold(2.5), np.float32)


# ---------------------------------------------------------------- integer fractions


def test_integer_fractions() -> None:
    proba = np.array([[1 / 3, 2 / 3, 0.0], [0.5, 0.25, 0.25], [2 / 6, 4 / 6, 0.0]])
    num, den = integer_fractions(proba, np.array([3.0, 4.0, 6.0]))
    assert num.dtype == den.dtype == np.uint8
    assert num.tolist() == [[1, 2, 0], [2, 1, 1], [1, 2, 0]] and den.tolist() == [3, 4, 3]
    assert np.array_equal((num / den[:, None].astype(np.float64)).view(np.int64),
                          proba.view(np.int64))
    # non-integer weights (class_weight): no integer form
    num, den = integer_fractions(proba, np.array([3.0, 4.0, 6.5]))
    assert num.shape == (0, 3) and den.shape == (0,)
    # a fraction that is not count / weight bit for bit
    num, den = integer_fractions(np.array([[0.3, 0.7]]), np.array([3.0]))
    assert den.size == 0
    # wide denominators: uint16, then none
    p = np.array([[1 / 1001, 1000 / 1001]])
    num, den = integer_fractions(p, np.array([1001.0]))
    assert den.dtype == np.uint16 and den.tolist() == [1001]
    p = np.array([[1 / 70001, 70000 / 70001]])
    assert integer_fractions(p, np.array([70001.0]))[1].size == 0
    assert integer_fractions(np.zeros((0, 4)), np.zeros(0))[1].size == 0


def test_integer_fractions_reproduce_sklearn_division() -> None:
    """Fractions formed as sklearn forms them (sum_total / weighted_n) round-trip exactly."""
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 40, size=(2000, 7)).astype(np.float64)
    counts[counts.sum(axis=1) == 0, 0] = 1
    total = counts.sum(axis=1)
    proba = counts / total[:, None]
    num, den = integer_fractions(proba, total)
    assert den.size == len(proba)
    exact = num.astype(np.float64) / den[:, None].astype(np.float64)
    assert np.array_equal(exact.view(np.int64), proba.view(np.int64))
    assert np.all(np.gcd.reduce(np.column_stack([num, den]).astype(np.int64), axis=1) == 1)


# ---------------------------------------------------------------- data and probes


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    n_estimators: int
    max_depth: int | None
    class_weight: str | None
    n_classes: int
    n_features: int
    n_train: int
    mode: int  # the score mode the case must produce
    data: str = "quantized"  # quantized | conflicts | wide_scales
    min_samples_leaf: int = 1


CASES = [
    # fully grown, deterministic labels: pure leaves, integer votes (ties with few trees)
    Case("dt_full", "decision_tree", 1, None, None, 12, 6, 800, 0),
    Case("rf_full", "random_forest", 3, None, None, 12, 6, 800, 0),
    Case("et_full", "extra_trees", 4, None, None, 12, 6, 800, 0),
    Case("et_wide_full", "extra_trees", 4, None, None, 2, 300, 400, 0),
    # depth-limited: mixed leaves with integer counts -> integer fractions
    Case("dt_depth", "decision_tree", 1, 4, None, 5, 6, 800, 1),
    Case("rf_depth", "random_forest", 2, 5, None, 12, 6, 800, 1),
    Case("et_depth", "extra_trees", 3, 6, None, 2, 6, 800, 1),
    Case("rf_wide_depth", "random_forest", 3, 8, None, 12, 300, 600, 1),
    Case("rf_conflicts_full", "random_forest", 3, None, None, 4, 5, 600, 1, "conflicts"),
    Case("dt_wide_scales", "decision_tree", 1, None, None, 3, 6, 600, 1, "wide_scales", 3),
    # class_weight="balanced": non-integer weights -> double fractions
    Case("dt_balanced", "decision_tree", 1, 5, "balanced", 3, 6, 800, 2),
    Case("rf_balanced_subsample", "random_forest", 4, 6, "balanced_subsample", 12, 6, 800, 2),
    # scikit-learn 1.9 draws a random forest's bootstrap with the class weights and
    # gives its trees integer bootstrap counts: "balanced" forests get integer fractions
    Case("rf_balanced", "random_forest", 4, 6, "balanced", 12, 6, 800, 1),
    Case("et_balanced", "extra_trees", 3, None, "balanced", 2, 6, 800, 2, "quantized", 5),
    Case("et_balanced_conflicts", "extra_trees", 2, None, "balanced", 12, 5, 800, 2,
         "conflicts"),
]
CASE = {c.name: c for c in CASES}


def make_data(case: Case, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 features and labels 0..K-1 (all present). Labels are the nearest of K
    centre rows, a deterministic function of the row (so fully grown trees are pure),
    except for the "conflicts" rows appended with random labels."""
    rng = np.random.default_rng(seed)
    n, f, k = case.n_train, case.n_features, case.n_classes
    if case.data == "wide_scales":
        x = rng.standard_normal((n, f)) * 10.0 ** rng.uniform(-3, 4, f)
    else:
        x = np.round(rng.standard_normal((n, f)) * 2, 1)  # many exact ties
    x = x.astype(F32)
    unique = np.unique(x, axis=0)
    centres = unique[rng.choice(len(unique), k, replace=False)]
    informative = slice(None) if f <= 8 else slice(f - 8, f)  # high indices (> 255)
    unit = x.astype(np.float64).std(axis=0) + 1e-12  # every feature counts
    dist = (((x[:, None, informative] - centres[None, :, informative]) / unit[informative])
            ** 2).sum(axis=2)
    y = np.argmin(dist, axis=1)
    if case.data == "conflicts":
        dup = rng.choice(n, n // 4)
        x = np.concatenate([x, x[dup]])
        y = np.concatenate([y, rng.integers(0, k, len(dup))])
    assert set(np.unique(y)) == set(range(k))
    return x, y.astype(np.int64)


def probe_rows(model: TreeModel, x: np.ndarray, rng: np.random.Generator,
               n_random: int = 2000, node_budget: int = 400) -> np.ndarray:
    """Training rows; rows reaching a node with its feature set to the float32 threshold
    and its neighbours; random rows (training values mixed per feature, uniform values,
    quantized values)."""
    rows = [x]
    per_tree = max(1, node_budget // len(model.estimators))
    for est in model.estimators:
        tree = est.tree_
        internal = np.flatnonzero(tree.children_left != -1)
        if not len(internal):
            continue
        path = est.decision_path(x).tocsc()
        for node in rng.choice(internal, min(per_tree, len(internal)), replace=False):
            reaching = path.indices[path.indptr[node]:path.indptr[node + 1]]
            base = x[rng.choice(reaching)]
            values = float32_neighbours([float32_threshold(tree.threshold[node])], 2)[0]
            block = np.repeat(base[None], len(values), axis=0)
            block[:, tree.feature[node]] = values
            rows.append(block)
    n, f = x.shape
    mixed = x[rng.integers(0, n, (n_random, f)), np.arange(f)]
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = hi - lo
    uniform = rng.uniform(lo - 0.1 * span, hi + 0.1 * span, (n_random, f))
    rows += [mixed, uniform.astype(F32), np.round(uniform, 1).astype(F32)]
    return np.concatenate(rows).astype(F32)


# ---------------------------------------------------------------- building and running


def fit_model(case: Case, seed: int) -> tuple[TreeModel, np.ndarray, np.ndarray]:
    x, y = make_data(case, seed)
    subsample = case.class_weight == "balanced_subsample"  # not a kiloml option
    config = TreeModelConfig(kind=case.kind, n_estimators=case.n_estimators,
                             max_depth=case.max_depth, min_samples_leaf=case.min_samples_leaf,
                             class_weight=None if subsample else case.class_weight,
                             random_state=seed)
    model = TreeModel(config, case.n_classes)
    if subsample:  # trees weighted by bootstrap count x class weight: non-integer
        model.estimator.set_params(class_weight="balanced_subsample")
    model.fit(x, y)
    return model, x, y


def build_driver(model: TreeModel, n_features: int, directory: Path, sanitize: bool = False,
                 style: str = "table", always_exact: bool = False) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    model.config = model.config.model_copy(update={"c_style": style})
    ctx = EmitContext(prefix="kml_m_", window="", start_row="", input="x", output="out",
                      window_rows=1, channels=1, n_inputs=n_features)
    stage = model.emit_c(ctx)
    tables = model.tables
    assert stage.runtime == runtime_modules(tables)
    if style == "table":
        assert stage.call == "out->label = kml_forest_predict(&kml_m_forest, x, out->scores);"
    else:
        assert stage.call == "out->label = kml_m_predict(x, out->scores);"
    directory.mkdir(parents=True, exist_ok=True)
    for module in stage.runtime:
        for ext in (".c", ".h"):
            shutil.copyfile(RUNTIME / f"{module}{ext}", directory / f"{module}{ext}")
    shutil.copyfile(RUNTIME / "kml_fp.h", directory / "kml_fp.h")
    config = "\n".join(stage.config)
    (directory / "kml_config.h").write_text(
        f"#ifndef KML_CONFIG_H\n#define KML_CONFIG_H\n\n#include <stdint.h>\n\n{config}\n\n"
        f"#endif\n")
    source = (DRIVER_C.replace("@K@", str(model.n_classes)).replace("@T@", str(tables.n_trees))
              .replace("@CONSTANTS@", stage.constants).replace("@CALL@", stage.call))
    (directory / "driver.c").write_text(source)
    exe = directory / ("driver_asan" if sanitize else "driver")
    defines = (["-DDRIVER_NO_LEAVES"] if style == "inline" else []) + \
        (["-DKML_TREE_ALWAYS_EXACT"] if always_exact else [])
    cmd = [gcc, *STRICT_CFLAGS, "-O2", *(SANITIZE_FLAGS if sanitize else []), *defines,
           f"-I{directory}", str(directory / "driver.c"),
           *[str(directory / f"{m}.c") for m in stage.runtime], "-lm", "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    assert result.stderr == "", result.stderr
    return exe


@dataclass
class COutput:
    labels: np.ndarray  # int32 [N]
    scores: np.ndarray  # float32 [N, K]
    leaves: np.ndarray  # int32 [N, n_trees]


def run_driver(exe: Path, rows: np.ndarray, n_classes: int, n_trees: int,
               work: Path) -> COutput:
    rows = np.ascontiguousarray(rows, dtype="<f4")
    src, dst = work / f"{exe.name}.in", work / f"{exe.name}.out"
    src.write_bytes(np.array(rows.shape, "<i4").tobytes() + rows.tobytes())
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    result = subprocess.run([str(exe), str(src), str(dst)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]  # no sanitizer report
    record = np.dtype([("label", "<i4"), ("scores", "<f4", (n_classes,)),
                       ("leaves", "<i4", (n_trees,))])
    raw = np.fromfile(dst, dtype=record)
    assert len(raw) == len(rows)
    return COutput(raw["label"].copy(), raw["scores"].astype(F32),
                   raw["leaves"].reshape(len(rows), n_trees).astype(np.int32))


def payload_table(tables: ForestTables) -> np.ndarray:
    """Class fractions of every leaf payload: one-hot for pure leaves, then mixed rows."""
    return np.vstack([np.eye(tables.n_classes), tables.leaf_proba])


def check_against_sklearn(model: TreeModel, tables: ForestTables, rows: np.ndarray,
                          c: COutput, what: str) -> None:
    expected_labels = model.predict(rows)
    expected_proba = model.predict_proba(rows)
    wrong = np.flatnonzero(c.labels != expected_labels)
    assert not len(wrong), (
        f"{what}: {len(wrong)} of {len(rows)} labels differ from sklearn, e.g. rows "
        f"{wrong[:5].tolist()}: C {c.labels[wrong[:5]].tolist()} sklearn "
        f"{expected_labels[wrong[:5]].tolist()} proba {expected_proba[wrong[:2]].tolist()}")
    assert np.max(np.abs(c.scores - expected_proba)) < 1e-6, what
    if c.leaves.min() < 0:
        return  # inline trees: no node tables for the driver to walk
    # Every tree reaches the leaf sklearn reaches (same class fractions, bit for bit).
    table = payload_table(tables)
    assert c.leaves.min() >= 0 and c.leaves.max() < len(table), what
    for t, est in enumerate(model.estimators):
        leaf_values = est.tree_.value[est.apply(rows), 0, :]
        got = table[c.leaves[:, t]]
        bad = np.flatnonzero((got.view(np.int64) != leaf_values.view(np.int64)).any(axis=1))
        assert not len(bad), f"{what}: tree {t} reaches another leaf for rows {bad[:5]}"
    # The Python walk (ForestTables.leaf) is the C walk.
    for i in range(0, len(rows), max(1, len(rows) // 150)):
        assert [tables.leaf(t, rows[i]) for t in range(tables.n_trees)] == \
            c.leaves[i].tolist(), f"{what}: python walk, row {i}"


def check_tables(case: Case, model: TreeModel, tables: ForestTables) -> None:
    assert tables.score_mode == case.mode, (case.name, tables.score_mode, tables.n_mixed)
    assert tables.n_classes == case.n_classes
    assert tables.feature_ctype == ("uint16_t" if case.n_features > 256 else "uint8_t")
    if case.n_features > 256:
        assert tables.feature.dtype == np.uint16 and tables.feature.max() > 255
    if tables.score_mode == 1:
        exact = tables.leaf_num.astype(np.float64) / tables.leaf_den[:, None]
        assert np.array_equal(exact.view(np.int64), tables.leaf_proba.view(np.int64))
    # thresholds are float32 and never above sklearn's float64 thresholds
    # (a tree that is a single leaf becomes one node with threshold 0 and two leaves)
    thresholds = np.concatenate([e.tree_.threshold[e.tree_.children_left != -1]
                                 if e.tree_.node_count > 1 else np.zeros(1)
                                 for e in model.estimators])
    assert np.all(tables.threshold.astype(np.float64) <= thresholds)
    assert np.all(np.nextafter(tables.threshold, F32(np.inf)).astype(np.float64) > thresholds)


# ---------------------------------------------------------------- the C kernel == sklearn


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_c_forest_matches_sklearn(case: Case, seed: int, tmp_path: Path) -> None:
    """Table walk for every seed; the inline trees (seed 0) and the exact float64 vote on
    every row (seed 1) too."""
    model, x, _ = fit_model(case, seed)
    tables = model.compile(case.n_features)
    check_tables(case, model, tables)
    rows = probe_rows(model, x, np.random.default_rng(100 + seed))
    assert len(rows) >= 3000
    variants = [("table", False)] + [("inline", False)] * (seed == 0) + \
        [("table", True)] * (seed == 1 and case.mode != 0)
    for style, exact in variants:
        work = tmp_path / f"{style}{'-exact' if exact else ''}"
        exe = build_driver(model, case.n_features, work, style=style, always_exact=exact)
        c = run_driver(exe, rows, case.n_classes, tables.n_trees, work)
        check_against_sklearn(model, tables, rows, c, f"{case.name} seed {seed} {style}"
                              f"{' exact' if exact else ''}")
        if case.mode == 0 and case.n_estimators > 1:
            # the data exercises arg-max ties (first class wins, as numpy's argmax)
            top = c.scores.max(axis=1, keepdims=True)
            assert np.any((c.scores == top).sum(axis=1) > 1), case.name


def test_fast_path_is_sound_and_rarely_gives_up() -> None:
    """Where the float32 sums decide, their arg-max is sklearn's; near-ties go to the
    exact path."""
    for name in ("rf_depth", "rf_conflicts_full", "et_balanced", "rf_balanced_subsample"):
        case = CASE[name]
        model, x, _ = fit_model(case, 0)
        tables = model.compile(case.n_features)
        rows = probe_rows(model, x, np.random.default_rng(4), n_random=400)
        expected = model.predict(rows)
        decided = 0
        for i in range(0, len(rows), 3):
            payloads = [tables.leaf(t, rows[i]) for t in range(tables.n_trees)]
            if tables.fast_path_decides(payloads):
                decided += 1
                assert int(np.argmax(tables.fast_sums(payloads))) == expected[i], (name, i)
        assert decided > 0.5 * len(range(0, len(rows), 3)), name


def test_fraction_widths(tmp_path: Path) -> None:
    """Small leaves give uint8 fractions, large shallow leaves uint16; both exact in C."""
    small = Case("rf_small", "random_forest", 3, 3, None, 4, 5, 150, 1)
    large = Case("dt_large", "decision_tree", 1, 2, None, 3, 5, 3000, 1, "wide_scales")
    for case, ctype in ((small, "uint8_t"), (large, "uint16_t")):
        model, x, _ = fit_model(case, 5)
        tables = model.compile(case.n_features)
        check_tables(case, model, tables)
        assert f"uint{8 * np.dtype(tables.fraction_dtype).itemsize}_t" == ctype, case.name
        rows = probe_rows(model, x, np.random.default_rng(5), n_random=500)
        exe = build_driver(model, case.n_features, tmp_path / case.name)
        c = run_driver(exe, rows, case.n_classes, tables.n_trees, tmp_path / case.name)
        check_against_sklearn(model, tables, rows, c, case.name)


def test_single_leaf_trees(tmp_path: Path) -> None:
    """A forest of 1-leaf trees (a root that is a leaf) and a data set with one
    feature value: roots hold a payload and there are no internal nodes."""
    x = np.zeros((40, 3), F32)
    y = np.arange(40) % 3
    config = TreeModelConfig(kind="random_forest", n_estimators=3, max_depth=None,
                             random_state=0)
    model = TreeModel(config, 3).fit(x, y)
    tables = model.compile(3)
    # each one-leaf tree becomes one node whose both sides are that leaf
    assert tables.n_nodes == tables.n_trees
    assert tables.left_is_leaf.all() and tables.right_is_leaf.all()
    rows = np.random.default_rng(0).normal(size=(50, 3)).astype(F32)
    exe = build_driver(model, 3, tmp_path)
    c = run_driver(exe, rows, 3, tables.n_trees, tmp_path)
    check_against_sklearn(model, tables, rows, c, "single-leaf trees")


def test_nan_features_follow_sklearn(tmp_path: Path) -> None:
    """sklearn sends a NaN feature to the child with more training samples (its
    missing_go_to_left); the C walk must take the same branch."""
    for name in ("dt_full", "rf_depth", "rf_balanced_subsample", "et_balanced"):
        case = CASE[name]
        model, x, _ = fit_model(case, 2)
        tables = model.compile(case.n_features)
        rows = probe_rows(model, x, np.random.default_rng(2), n_random=300)
        rng = np.random.default_rng(3)
        rows[rng.random(rows.shape) < 0.3] = np.nan
        rows[:20] = np.nan
        for style in ("table", "inline"):
            work = tmp_path / case.name / style
            exe = build_driver(model, case.n_features, work, style=style)
            c = run_driver(exe, rows, case.n_classes, tables.n_trees, work)
            check_against_sklearn(model, tables, rows, c, f"{case.name} {style} with NaN")


def test_forest_tables_rejects_missing_classes() -> None:
    case = CASE["rf_depth"]
    model, x, y = fit_model(case, 0)
    keep = y < case.n_classes - 1
    partial = TreeModel(model.config, case.n_classes).fit(x[keep], y[keep])
    with pytest.raises(ValueError, match="every class"):
        partial.compile(case.n_features)
    with pytest.raises(ValueError, match="11 class columns for 12 classes"):
        forest_tables(partial.estimators, case.n_classes, case.n_features)


def test_sanitizers_clean(tmp_path: Path) -> None:
    """ASan + UBSan build of a double-fraction forest (and of an integer-fraction forest
    over 300 features): exit 0, no report, same answers as sklearn."""
    for case in (CASE["rf_balanced_subsample"], CASE["rf_wide_depth"]):
        model, x, _ = fit_model(case, 0)
        tables = model.compile(case.n_features)
        check_tables(case, model, tables)
        rows = probe_rows(model, x, np.random.default_rng(7), n_random=300, node_budget=200)
        nan_rows = rows[:200].copy()
        nan_rows[np.random.default_rng(8).random(nan_rows.shape) < 0.2] = np.nan
        rows = np.concatenate([rows, nan_rows])
        for style, exact in (("table", False), ("inline", False), ("table", True)):
            work = tmp_path / case.name / f"{style}{exact}"
            exe = build_driver(model, case.n_features, work, sanitize=True, style=style,
                               always_exact=exact)
            c = run_driver(exe, rows, case.n_classes, tables.n_trees, work)
            check_against_sklearn(model, tables, rows, c, f"{case.name} {style} sanitized")
