"""Tree compaction ([model] thresholds = "int16", leaves = "uint8" | "uint16"): the
compacted model is the reference, and the C library computes it bit for bit.

The compacted tables are emitted in both C styles, compiled with the strict flags and
run (tests/test_tree_exactness.py's driver) on training rows, rows on the float32
neighbours of every kind of threshold, rows on the edges of the int16 grid cells
(where floor steps), random rows, NaN, +-inf, +-FLT_MAX and denormals. Labels, scores
(bit patterns) and the leaf reached in every tree must equal the Python mirror's.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from kiloml.models.forest import QNAN, forest_tables, quantize_inputs
from kiloml.models.forest_compact import compact_tables, input_grid, quantize_leaves
from kiloml.models.trees import TreeModel
from kiloml.targets.profiles import load_profile
from tests.conftest import CsvProject, assert_user_error, run_cli
from tests.test_tree_exactness import (
    CASE,
    build_driver,
    fit_model,
    float32_neighbours,
    probe_rows,
    run_driver,
)

F32 = np.float32
F32_MAX = np.finfo(F32).max
COMBOS = [("int16", "exact"), ("float32", "uint8"), ("int16", "uint8"), ("int16", "uint16")]
CTYPE_BYTES = {"uint8_t": 1, "uint16_t": 2, "int16_t": 2, "uint32_t": 4, "float": 4,
               "uint64_t": 8}


def compact_model(name: str, thresholds: str, leaves: str, seed: int = 0
                  ) -> tuple[TreeModel, np.ndarray]:
    model, x, y = fit_model(CASE[name], seed)
    model.config = model.config.model_copy(update={"thresholds": thresholds,
                                                   "leaves": leaves})
    model.fit(x, y)
    assert model.compact and model.tables is not None
    return model, x


def edge_rows(model: TreeModel, x: np.ndarray, rng: np.random.Generator,
              per_node: int = 1) -> np.ndarray:
    """Rows with one feature on a quantization edge of a node: the float32 threshold,
    where q reaches the node's integer threshold and where it steps past it (+-3
    float32 steps each)."""
    t = model.tables
    if not t.quantized:
        return np.zeros((0, x.shape[1]), F32)
    rows = []
    for i in range(t.n_nodes):
        u, f = int(t.node_input[i]), int(t.feature[i])
        offset, scale = float(t.input_offset[u]), float(t.input_scale[u])
        step = int(t.qthreshold[i])
        points = [t.threshold[i], offset + step / scale, offset + (step + 1) / scale]
        values = float32_neighbours(np.array(points, F32), 3).ravel()
        block = np.repeat(x[rng.integers(0, len(x), per_node)], len(values), axis=0)
        block[:, f] = np.tile(values, per_node)
        rows.append(block)
    return np.concatenate(rows)


def special_rows(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    specials = np.array([np.nan, np.inf, -np.inf, F32_MAX, -F32_MAX, 1e-45, -1e-45, 0.0,
                         -0.0, 1e30, -1e30], F32)
    rows = x[rng.integers(0, len(x), 400)].copy()
    mask = rng.random(rows.shape) < 0.2
    rows[mask] = rng.choice(specials, int(mask.sum()))
    whole = np.repeat(specials[:, None], x.shape[1], axis=1)  # every feature at once
    return np.concatenate([rows, whole])


def check_c(model: TreeModel, rows: np.ndarray, work: Path, style: str) -> None:
    t = model.tables
    exe = build_driver(model, t.n_features, work, style=style)
    c = run_driver(exe, rows, t.n_classes, t.n_trees, work)
    labels, proba, scores = t.predict_batch(rows)
    assert np.array_equal(model.predict(rows), labels)
    assert np.array_equal(model.predict_proba(rows), proba)
    bad = np.flatnonzero(c.labels != labels)
    assert not len(bad), (style, bad[:5], c.labels[bad[:5]], labels[bad[:5]])
    assert np.array_equal(c.scores.view(np.int32), scores.view(np.int32)), style
    assert np.array_equal(model.device_scores(rows).view(np.int32), scores.view(np.int32))
    if style == "table":
        assert np.array_equal(c.leaves, t.leaves(rows)), style
        for i in range(0, len(rows), max(1, len(rows) // 40)):  # the per-row walk too
            assert [t.leaf(k, rows[i]) for k in range(t.n_trees)] == c.leaves[i].tolist()


# mode 0 (pure leaves), mode 1 (integer fractions), mode 2 (float64 fractions), > 256
# features, extra trees
CASES = ["dt_full", "rf_depth", "et_balanced", "rf_balanced_subsample", "rf_wide_depth"]


@pytest.mark.parametrize("name", CASES)
def test_compact_c_matches_python(name: str, tmp_path: Path) -> None:
    for k, (thresholds, leaves) in enumerate(COMBOS):
        model, x = compact_model(name, thresholds, leaves, seed=k)
        rng = np.random.default_rng(k)
        rows = np.concatenate([probe_rows(model, x, rng, n_random=500, node_budget=150),
                               edge_rows(model, x, rng), special_rows(x, rng)])
        t = model.tables
        assert t.quantized == (thresholds == "int16")
        assert (t.score_mode == 3) == (leaves != "exact" and t.n_mixed > 0)
        if t.score_mode == 3:
            assert t.leaf_total in ({"uint8": (255, 127, 63), "uint16": (65535,)}[leaves])
        styles = ("table", "inline") if k % 2 == 0 or name == "rf_depth" else ("table",)
        for style in styles:
            check_c(model, rows, tmp_path / f"{thresholds}-{leaves}-{style}", style)


def test_compact_model_stays_close_to_sklearn() -> None:
    """Compaction moves only inputs within a grid cell of a threshold (and near-ties of
    the vote): on training rows and random rows the compact model mostly agrees."""
    model, x = compact_model("rf_depth", "int16", "uint8")
    rng = np.random.default_rng(0)
    u = rng.uniform(x.min(axis=0), x.max(axis=0), (3000, x.shape[1])).astype(F32)
    for rows in (x, u):
        assert np.mean(model.predict(rows) == model.estimator.predict(rows)) > 0.99
    # every x <= a node's float32 threshold still goes left (the cell above may follow)
    t = model.tables
    q = t.quantize(x)
    for i in range(t.n_nodes):
        v = x[:, t.feature[i]]
        assert np.all(q[v <= t.threshold[i], t.node_input[i]] <= t.qthreshold[i])


def test_quantizer_properties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        thresholds = np.sort(rng.normal(size=rng.integers(1, 30)) * 10.0 ** rng.uniform(-8, 8))
        offset, scale = input_grid(thresholds.astype(F32))
        assert np.isfinite(offset) and np.isfinite(scale) and scale > 0
        x = np.sort(np.concatenate([
            rng.normal(size=2000) * 10.0 ** rng.uniform(-10, 10),
            thresholds, [-np.inf, np.inf, F32_MAX, -F32_MAX]]).astype(F32))
        q = quantize_inputs(x[:, None], np.array([offset]), np.array([scale]))[:, 0]
        assert np.all(np.diff(q.astype(np.int32)) >= 0)  # monotone
        assert q.min() >= -32767 and q.max() <= 32767
        tq = quantize_inputs(thresholds.astype(F32)[:, None], np.array([offset]),
                             np.array([scale]))[:, 0]
        assert np.abs(tq.astype(np.int32)).max() <= 32766  # thresholds inside the grid
        if len(np.unique(thresholds.astype(F32))) == len(thresholds):
            assert len(np.unique(tq)) >= len(tq) - 1  # distinct thresholds stay apart
    assert quantize_inputs(np.array([[np.nan]], F32), np.zeros(1, F32), np.ones(1, F32)) \
        == QNAN
    offset, scale = input_grid(np.array([2.5], F32))  # one threshold: a fine grid
    assert offset == F32(2.5) and scale > 1e4
    offset, scale = input_grid(np.array([-np.inf], F32))
    assert (offset, scale) == (0.0, 1.0)


def test_quantize_leaves() -> None:
    proba = np.array([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], [0.999, 0.001, 0.0],
                      [0.2, 0.3, 0.5]])
    w = quantize_leaves(proba, 255)
    assert w.sum(axis=1).tolist() == [255] * 4
    assert w.tolist() == [[85, 85, 85], [128, 127, 0], [255, 0, 0], [51, 77, 127]]
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(7), 500)
    for total in (255, 65535):
        w = quantize_leaves(p, total)
        assert np.all(w.sum(axis=1) == total) and np.all(np.abs(w - p * total) < 1)


def test_leaf_rows_shrink_and_merge() -> None:
    """Integer weights: leaves that round alike share a row, a leaf rounding to one class
    becomes a pure leaf (payload < n_classes)."""
    model, _, _ = fit_model(CASE["rf_balanced_subsample"], 0)
    base = forest_tables(model.estimators, 12, 6)
    compact = compact_tables(base, "float32", "uint8")
    assert compact.score_mode == 3 and compact.n_mixed <= base.n_mixed
    assert compact.leaf_num.dtype == np.uint8
    assert np.all(compact.leaf_num.astype(int).sum(axis=1) == 255)
    with pytest.raises(ValueError, match="thresholds must be one of"):
        compact_tables(base, "int8")


def emitted_table_bytes(constants: str) -> int:
    total = 0
    for ctype, n in re.findall(r"static const (\w+) \w+\[(\d+)\]", constants):
        total += CTYPE_BYTES[ctype] * int(n)
    return total


def test_table_bytes_shrink_and_cost() -> None:
    from kiloml.stage import EmitContext

    ctx = EmitContext(prefix="kml_m_", window="", start_row="", input="x", output="out",
                      window_rows=1, channels=1, n_inputs=6)
    sizes = {}
    costs = {}
    for combo in [("float32", "exact"), *COMBOS]:
        model, _ = compact_model("rf_depth", *combo) if combo != ("float32", "exact") else \
            (fit_model(CASE["rf_depth"], 0)[0], None)
        t = model.tables or model.compile(6)
        stage = model.emit_c(ctx)
        # table_bytes() (the cost model's input) is what the C constants hold
        assert emitted_table_bytes(stage.constants) == sum(t.table_bytes().values()), combo
        sizes[combo] = sum(t.table_bytes().values())
        assert ("kml_f64" in stage.runtime) == (t.score_mode in (1, 2))
        costs[combo] = model.cost(load_profile("cortex-m0plus"), 6)
    base = sizes[("float32", "exact")]
    assert sizes[("int16", "exact")] < base
    assert sizes[("int16", "uint8")] <= sizes[("int16", "exact")]  # uint8 fractions already
    assert sizes[("int16", "uint8")] < sizes[("int16", "uint16")]
    # float64 leaves (class weights) -> uint8 weights
    model, _, _ = fit_model(CASE["rf_balanced_subsample"], 0)
    exact = model.compile(6)
    compact = compact_tables(exact, "int16", "uint8")
    assert exact.score_mode == 2
    assert exact.leaf_bytes() > 3 * compact.leaf_bytes()
    assert sum(compact.table_bytes().values()) < 0.5 * sum(exact.table_bytes().values())
    # no float64 path: smaller; an integer vote: fewer instructions; int16 thresholds:
    # quantizing every used feature costs more than the integer compares save (as
    # measured on QEMU, bench/results/tree_compaction.md)
    assert costs[("int16", "uint8")].flash_bytes < costs[("float32", "exact")].flash_bytes - 1500
    assert costs[("float32", "uint8")].instructions < costs[("float32", "exact")].instructions
    assert costs[("int16", "exact")].instructions > costs[("float32", "exact")].instructions


def test_missing_class_fold() -> None:
    """A cross-validation fold without some class still predicts (in the classes seen)."""
    model, x, y = fit_model(CASE["rf_depth"], 0)
    model.config = model.config.model_copy(update={"thresholds": "int16", "leaves": "uint8"})
    keep = y != 2
    model.fit(x[keep], y[keep])
    labels = model.predict(x)
    proba = model.predict_proba(x)
    assert 2 not in set(labels.tolist()) and proba.shape == (len(x), CASE["rf_depth"].n_classes)
    assert np.all(proba[:, 2] == 0)
    with pytest.raises(ValueError, match="every class"):
        model.compile(6)


def test_project_compact_run_is_exact(csv_project: CsvProject) -> None:
    """kiloml run with compact trees: host parity exact (decisions and score bits)."""
    csv_project.set_toml("max_depth = 6\n",
                         'max_depth = 6\nthresholds = "int16"\nleaves = "uint8"\n')
    result = run_cli("run", str(csv_project.toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    import json

    metrics = json.loads((csv_project.out / "metrics.json").read_text())
    model = metrics["model"]
    assert model["thresholds"] == "int16" and model["leaves"] == "uint8"
    host = metrics["parity"]["host"]
    assert host["all_decisions_equal"] and host["decisions_equal"] == host["n"], host
    assert host["max_abs_score_diff"] == 0.0, host  # the scores are the reference's bits
    assert host["streaming"]["all_decisions_equal"], host["streaming"]
    assert host["streaming"]["decision_layer"]["device_scores_bit_exact"]
    config = (csv_project.out / "firmware" / "kml_config.h").read_text()
    assert "#define KML_TREE_INT16_THRESHOLDS 1" in config
    assert not (csv_project.out / "firmware" / "kml_f64.c").exists()


@pytest.mark.parametrize("line, fragments", [
    ('thresholds = "int8"', ["thresholds", "float32", "int16"]),
    ('leaves = "float"', ["leaves", "exact", "uint8"]),
])
def test_bad_compaction_keys(csv_project: CsvProject, line: str, fragments: list[str]
                             ) -> None:
    csv_project.set_toml("max_depth = 6\n", f"max_depth = 6\n{line}\n")
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"), *fragments)


def test_batch_mirror_is_the_c_vote(tmp_path: Path) -> None:
    """Uncompacted forests too: the vectorized mirror (predict_batch, behind
    device_scores) writes the C scores bit for bit, in the float32 fast path and in the
    exact float64 path (near-ties), and agrees with the per-row mirror."""
    for name in ("rf_conflicts_full", "rf_balanced_subsample"):
        model, x, _ = fit_model(CASE[name], 0)
        t = model.compile(x.shape[1])
        assert t.score_mode in (1, 2) and not model.compact
        rows = probe_rows(model, x, np.random.default_rng(3), n_random=300, node_budget=100)
        exe = build_driver(model, t.n_features, tmp_path / name)
        c = run_driver(exe, rows, t.n_classes, t.n_trees, tmp_path / name)
        scores = model.device_scores(rows)
        assert np.array_equal(c.scores.view(np.int32), scores.view(np.int32)), name
        assert np.array_equal(c.leaves, t.leaves(rows))
        assert np.array_equal(t.predict_batch(rows)[0], model.predict(rows))  # == sklearn
        deferred = [i for i in range(len(rows))
                    if not t.fast_path_decides([int(p) for p in c.leaves[i]])]
        assert deferred, name  # the exact path is exercised
        for i in [*deferred[:20], *range(0, len(rows), 97)]:
            assert np.array_equal(t.device_scores(rows[i]).view(np.int32),
                                  scores[i].view(np.int32))


QUANTIZE_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "kml_trees.h"

static const uint8_t feature[3] = {0, 1, 2};
static const float offset[3] = {0.0f, 0.0f, 2.5f};
static const float scale[3] = {1.0f, 0.5f, 1000.0f};

int main(int argc, char **argv)
{
    kml_forest_t forest = {0};
    float x[3];
    int16_t q[3];
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    (void)argc;
    forest.n_inputs = 3;
    forest.input_feature = feature;
    forest.input_offset = offset;
    forest.input_scale = scale;
    while (fread(x, sizeof(float), 3, in) == 3) {
        kml_forest_quantize(&forest, x, q);
        fwrite(q, sizeof(int16_t), 3, out);
    }
    fclose(in);
    return fclose(out);
}
"""


def test_c_quantizer_bit_patterns(tmp_path: Path) -> None:
    """kml_forest_quantize (floor and clamp from the float's bits) against numpy on
    random float32 bit patterns of every exponent, integers and their neighbours,
    the clamp edges, +-0, denormals, +-inf and NaNs."""
    import shutil
    import subprocess

    from kiloml.codegen.library import STRICT_CFLAGS
    from tests.test_tree_exactness import RUNTIME

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 2**32, 60000, dtype=np.uint64).astype(np.uint32).view(F32)
    ints = np.arange(-33000, 33000, 7, dtype=np.float64).astype(F32)
    edges = np.array([32767, 32768, -32767, -32768, -32769, 0.5, -0.5, 1, -1, 0, -0.0,
                      1e-45, -1e-45, 1e-40, -1e-40, np.inf, -np.inf, np.nan, -np.nan], F32)
    values = np.concatenate([random_bits, rng.normal(size=20000).astype(F32) * 1000,
                             float32_neighbours(np.concatenate([ints, edges]), 2).ravel()])
    values = values[: len(values) // 3 * 3]
    x = values.reshape(-1, 3)
    (tmp_path / "kml_config.h").write_text(
        "#ifndef KML_CONFIG_H\n#define KML_CONFIG_H\n#include <stdint.h>\n"
        "#define KML_TREE_INT16_THRESHOLDS 1\n#define KML_TREE_MAX_INPUTS 3\n#endif\n")
    for name in ("kml_trees.c", "kml_trees.h", "kml_fp.h"):
        shutil.copyfile(RUNTIME / name, tmp_path / name)
    (tmp_path / "main.c").write_text(QUANTIZE_C)
    (tmp_path / "in").write_bytes(np.ascontiguousarray(x, "<f4").tobytes())
    expected = quantize_inputs(x, np.array([0.0, 0.0, 2.5], F32),
                               np.array([1.0, 0.5, 1000.0], F32))
    for from_bits in (0, 1):  # the FPU form and the soft-float form (from the bits)
        exe = tmp_path / f"quantize{from_bits}"
        subprocess.run([gcc, *STRICT_CFLAGS, "-O2", "-Wno-missing-field-initializers",
                        f"-DKML_TREE_FLOOR_FROM_BITS={from_bits}", f"-I{tmp_path}",
                        str(tmp_path / "main.c"), str(tmp_path / "kml_trees.c"), "-o",
                        str(exe)], check=True)
        out = tmp_path / f"out{from_bits}"
        subprocess.run([str(exe), str(tmp_path / "in"), str(out)], check=True)
        got = np.fromfile(out, "<i2").reshape(-1, 3)
        bad = np.flatnonzero((got != expected).any(axis=1))
        assert not len(bad), (from_bits, x[bad[:5]], got[bad[:5]], expected[bad[:5]])
    assert (expected == QNAN).any() and (expected == 32767).any() and (expected == -32767).any()
