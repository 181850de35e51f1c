"""ONNX tree ensembles (ai.onnx.ml.TreeEnsembleClassifier) on kiloml's tree engine:
decisions and probabilities equal to onnxruntime's, the skl2onnx fixtures (RandomForest,
ExtraTrees, DecisionTree) as `[model] kind = "imported"` in projects with host and QEMU
parity, saved pipelines read back through the import's checks, bad ensembles one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from kiloml.errors import KilomlError  # noqa: E402
from kiloml.models.onnx_trees import build_tables, read_ensemble  # noqa: E402
from kiloml.persist.pipeline_state import load_pipeline  # noqa: E402
from tests.conftest import assert_user_error, run_cli  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
SKL2ONNX = ("forest_sklearn.onnx", "extra_trees_sklearn.onnx", "tree_sklearn.onnx")
F32 = np.float32


def onnxruntime(path: Path, x: np.ndarray, labels: list[str]) -> tuple[list[str], np.ndarray]:
    """(labels, probabilities in the model's class order) from onnxruntime, one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {sess.get_inputs()[0].name: x})[:2]
    if isinstance(proba, list):  # ZipMap
        proba = np.array([[row[c] if c in row else row[int(c)] for c in labels]
                          for row in proba], F32)
    return [str(v) for v in np.asarray(label).reshape(-1)], np.asarray(proba, F32)


def probe_inputs(path: Path, n: int = 2000, seed: int = 0) -> np.ndarray:
    """Random rows, rows with a feature exactly at a threshold, at its float32 neighbour
    above and below, and rows with NaN features."""
    e = read_ensemble(path)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, e.n_features)) * 2).astype(F32)
    branch = e.mode != 0
    th, feat = e.value[branch], e.feature[branch]
    pick = rng.integers(0, len(th), n)
    rows = [x]
    for shift in (0, 1, -1):
        y = x.copy()
        value = th[pick]
        if shift:
            value = np.nextafter(value, F32(np.inf if shift > 0 else -np.inf))
        y[np.arange(n), feat[pick]] = value
        rows.append(y)
    nan = x.copy()
    nan[rng.random(nan.shape) < 0.15] = np.nan
    rows.append(nan)
    return np.concatenate(rows)


def assert_equal_to_onnxruntime(path: Path, x: np.ndarray) -> None:
    e = read_ensemble(path)
    tables = build_tables(e)
    want_labels, want = onnxruntime(path, x, e.class_labels)
    labels, proba, scores = tables.predict_batch(x)
    assert [e.class_labels[i] for i in labels] == want_labels
    np.testing.assert_array_equal(scores.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(proba, want.astype(np.float64))
    for i in range(0, len(x), 397):  # the per-row walk (the C kernel's order) agrees
        np.testing.assert_array_equal(tables.device_scores(x[i]), scores[i])


@pytest.mark.parametrize("name", SKL2ONNX)
def test_skl2onnx_ensembles_decide_as_onnxruntime(name: str) -> None:
    path = FIXTURES / name
    assert_equal_to_onnxruntime(path, probe_inputs(path))


# ---- hand-made ensembles: every branch mode, missing values, shapes -----------------------

def ensemble_onnx(path: Path, *, n_features: int = 2, labels=(0, 1, 2),
                  trees: list[list[tuple]], weights: list[tuple], **extra) -> Path:
    """trees: per tree, nodes (node_id, mode, feature, value, true_id, false_id,
    missing_true); weights: (tree, node_id, class, weight)."""
    cols: dict[str, list] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_modes", "nodes_featureids", "nodes_values",
        "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true")}
    for t, nodes in enumerate(trees):
        for nid, mode, feature, value, true_id, false_id, missing in nodes:
            for k, v in zip(cols, (t, nid, mode, feature, value, true_id, false_id, missing),
                            strict=True):
                cols[k].append(v)
    attrs = {**cols,
             "class_treeids": [w[0] for w in weights], "class_nodeids": [w[1] for w in weights],
             "class_ids": [w[2] for w in weights], "class_weights": [w[3] for w in weights],
             "post_transform": "NONE"}
    strings = isinstance(labels[0], str)
    attrs["classlabels_strings" if strings else "classlabels_int64s"] = list(labels)
    attrs.update(extra)
    node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "probabilities"],
                            domain="ai.onnx.ml", name="ensemble", **attrs)
    graph = helper.make_graph(
        [node], "trees", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                        [None, n_features])],
        [helper.make_tensor_value_info("label", TensorProto.STRING if strings else
                                       TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                       [None, len(labels)])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def two_level_tree(mode: str, missing: int, value: float = 0.5) -> list[tuple]:
    """x0 <mode> value ? (x1 <= -0.25 ? leaf 3 : leaf 4) : leaf 2."""
    return [(0, mode, 0, value, 1, 2, missing),
            (1, "BRANCH_LEQ", 1, -0.25, 3, 4, 1 - missing),
            (2, "LEAF", 0, 0.0, 0, 0, 0), (3, "LEAF", 0, 0.0, 0, 0, 0),
            (4, "LEAF", 0, 0.0, 0, 0, 0)]


LEAF_WEIGHTS = [(0, 2, 0, 0.75), (0, 2, 1, 0.25), (0, 3, 1, 1.0), (0, 4, 2, 0.5),
                (0, 4, 0, 0.5)]


@pytest.mark.parametrize("mode", ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"])
@pytest.mark.parametrize("missing", [0, 1])
def test_branch_modes_and_missing_values(tmp_path: Path, mode: str, missing: int) -> None:
    value = 0.1  # not a float32: the file holds its float32 rounding
    path = ensemble_onnx(tmp_path / "m.onnx", trees=[two_level_tree(mode, missing, value)],
                         weights=LEAF_WEIGHTS)
    t = F32(value)
    near = [np.nextafter(t, F32(-np.inf)), t, np.nextafter(t, F32(np.inf))]
    x0 = np.array([*near, -1.0, 2.0, np.nan, np.inf, -np.inf, 0.0], F32)
    x1 = np.array([-0.25, np.nextafter(F32(-0.25), F32(0)), 1.0, np.nan], F32)
    x = np.array([[a, b] for a in x0 for b in x1], F32)
    assert_equal_to_onnxruntime(path, x)


def test_ties_go_to_the_first_class_and_trees_add_in_order(tmp_path: Path) -> None:
    # two trees voting 1/2 for classes 2 and 0: equal float32 sums, class 0 wins; weights
    # whose float32 sums differ from their exact sums decide as onnxruntime's
    leaf = [(0, "LEAF", 0, 0.0, 0, 0, 0)]
    weights = [(0, 0, 2, 0.5), (1, 0, 0, 0.5), (2, 0, 1, 0.1), (2, 0, 2, 0.2),
               (3, 0, 1, 0.2), (3, 0, 0, 0.1), (4, 0, 1, 0.3), (4, 0, 2, 0.2)]
    path = ensemble_onnx(tmp_path / "m.onnx", trees=[leaf] * 5, weights=weights)
    assert_equal_to_onnxruntime(path, np.zeros((3, 2), F32))


BAD = [
    ({"post_transform": "SOFTMAX"}, "post_transform SOFTMAX is not supported"),
    ({"base_values": [0.1, 0.0, 0.0]}, "base_values are not supported"),
]


@pytest.mark.parametrize("extra, fragment", BAD)
def test_boosted_ensembles_are_refused(tmp_path: Path, extra: dict, fragment: str) -> None:
    path = ensemble_onnx(tmp_path / "m.onnx", trees=[two_level_tree("BRANCH_LEQ", 0)],
                         weights=LEAF_WEIGHTS, **extra)
    with pytest.raises(KilomlError, match=fragment):
        read_ensemble(path)


def test_two_class_ensembles_are_refused(tmp_path: Path) -> None:
    # onnxruntime decides two classes by the positive class's sum against 0.5 (skl2onnx
    # stores one weight per leaf), not by comparing sums: refused, not approximated
    path = ensemble_onnx(tmp_path / "m.onnx", labels=(0, 1),
                         trees=[two_level_tree("BRANCH_LEQ", 0)],
                         weights=[(0, 2, 0, 0.25), (0, 3, 0, 1.0), (0, 4, 0, 0.5)])
    with pytest.raises(KilomlError, match=r"2 classes \['0', '1'\] is not supported "
                                          r"\(onnxruntime's binary rules\)"):
        read_ensemble(path)


def malformed(kind: str) -> tuple[list[list[tuple]], list[tuple], int]:
    tree = two_level_tree("BRANCH_LEQ", 0)
    weights = list(LEAF_WEIGHTS)
    n_features = 2
    if kind == "eq":
        tree[0] = (0, "BRANCH_EQ", 0, 0.5, 1, 2, 0)
    elif kind == "negative":
        weights[0] = (0, 2, 0, -0.75)
    elif kind == "no weights":
        weights = [w for w in weights if w[1] != 3]
    elif kind == "weight on a branch":
        weights.append((0, 1, 0, 0.5))
    elif kind == "class twice":
        weights.append((0, 3, 1, 0.5))
    elif kind == "missing child":
        tree[0] = (0, "BRANCH_LEQ", 0, 0.5, 1, 9, 0)
    elif kind == "reached twice":
        tree[1] = (1, "BRANCH_LEQ", 1, -0.25, 3, 2, 0)
    elif kind == "unreached":
        tree.append((5, "LEAF", 0, 0.0, 0, 0, 0))
        weights.append((0, 5, 0, 1.0))
    elif kind == "feature":
        tree[1] = (1, "BRANCH_LEQ", 4, -0.25, 3, 4, 0)
    elif kind == "infinite":
        tree[0] = (0, "BRANCH_LEQ", 0, float("inf"), 1, 2, 0)
    return [tree], weights, n_features


@pytest.mark.parametrize("kind, fragment", [
    ("eq", "mode BRANCH_EQ is not supported"),
    ("negative", "not negative"),
    ("no weights", "leaf 3 has no positive class weight"),
    ("weight on a branch", "attached to a node that is not a leaf"),
    ("class twice", "lists class '1' twice"),
    ("missing child", "false child 9 is not a node of that tree"),
    ("reached twice", "node 2 is reached twice"),
    ("unreached", "node 5 is never reached"),
    ("feature", "reads feature 4; the input has 2"),
    ("infinite", "threshold is not finite"),
])
def test_malformed_ensembles_are_one_line(tmp_path: Path, kind: str, fragment: str) -> None:
    trees, weights, n_features = malformed(kind)
    try:
        path = ensemble_onnx(tmp_path / "m.onnx", trees=trees, weights=weights,
                             n_features=n_features)
        build_tables(read_ensemble(path))
    except KilomlError as exc:
        text = str(exc)
        assert fragment in text and "\n" not in text, text
        return
    raise AssertionError(f"{kind}: accepted")


# ---- in a project ---------------------------------------------------------------------

def write_tree_project(root: Path, classes: list[str], channels: int, statistics: list[str],
                       model: str) -> Path:
    seed = 0
    for k, label in enumerate(classes):
        for subject in ("s1", "s2", "s3"):
            rng = np.random.default_rng(seed)
            seed += 1
            t = np.arange(400) / 50
            cols = [t] + [rng.standard_normal(len(t)) * (1 + 0.3 * k) + 0.5 * k * (c % 2)
                          for c in range(channels)]
            path = root / "data" / label / f"{subject}_rec.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("t," + ",".join(f"c{c}" for c in range(channels)) + "\n" + "\n".join(
                ",".join(f"{v:.6f}" for v in row) for row in np.column_stack(cols)) + "\n")
    (root / model).write_bytes((FIXTURES / model).read_bytes())
    toml = root / "kiloml.toml"
    toml.write_text(f'''name = "trees"

[data]
source = "csv"
path = "data"
sample_rate_hz = 50
timestamp_column = "t"
label_from_folder = true
group_pattern = "(?P<group>s\\\\d+)_"

[window]
window_ms = 1000
stride_ms = 500

[[features]]
stage = "statistics"
statistics = {json.dumps(statistics)}

[model]
kind = "imported"
path = "{model}"

[evaluation]
test_groups = ["s3"]
cv_folds = 0

[target]
name = "cortex-m4f"

[output]
dir = "out"
''')
    return toml


@pytest.mark.parametrize("model, classes, channels, statistics", [
    # class labels 0..3: the project's classes in their order
    ("forest_sklearn.onnx", ["a", "b", "c", "d"], 4, ["mean", "std"]),
    # string labels sorted as text (level1, level10, level2 ...): matched by name, the vote
    # in the model's order (its ties), the C maps the label and the scores after it
    ("tree_sklearn.onnx", ["level1", "level2", "level3", "level10", "level20"], 5, ["mean"]),
])
def test_imported_tree_ensemble_is_a_tree_model_in_a_project(
        tmp_path: Path, model: str, classes: list[str], channels: int,
        statistics: list[str]) -> None:
    toml = write_tree_project(tmp_path, classes, channels, statistics, model)
    result = run_cli("run", str(toml))
    assert result.exit_code == 0, result.stderr
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["model"]["format"] == "ONNX ai.onnx.ml.TreeEnsembleClassifier"
    assert "neural" not in m
    ort_parity = m["imported_trees"]["onnxruntime_parity"]
    assert ort_parity["all_labels_equal"] and ort_parity["scores_bit_exact"]
    assert ort_parity["n"] == m["evaluation"]["n_test_windows"] > 0
    for where in ("host", "cortex-m4f"):
        p = m["parity"][where]
        assert p["all_decisions_equal"] and p["max_abs_score_diff"] == 0.0, where
        assert p["streaming"]["all_decisions_equal"], where
    # the saved pipeline reads back through the import's checks and decides the same
    pipeline = load_pipeline(tmp_path / "out" / "pipeline.json")
    e = pipeline.model.ensemble
    x = probe_inputs(FIXTURES / model, n=200)
    want_labels, want = onnxruntime(tmp_path / model, x, e.class_labels)
    got = pipeline.model.device_scores(x)
    np.testing.assert_array_equal(got[:, pipeline.model.columns].view(np.uint32),
                                  want.view(np.uint32))
    want_classes = pipeline.model.columns[[e.class_labels.index(v) for v in want_labels]]
    np.testing.assert_array_equal(pipeline.model.predict(x), want_classes)


def test_a_tampered_saved_ensemble_is_one_line(tmp_path: Path) -> None:
    toml = write_tree_project(tmp_path, ["a", "b", "c"], 3, ["mean", "std"],
                              "extra_trees_sklearn.onnx")
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    npz = tmp_path / "out" / "pipeline.npz"
    arrays = dict(np.load(npz))
    arrays["model.true_id"][0] = arrays["model.node_id"][0]  # the root its own child
    np.savez(npz, **arrays)
    with pytest.raises(KilomlError) as info:
        load_pipeline(tmp_path / "out" / "pipeline.json")
    text = str(info.value)
    assert "model.arrays" in text and "reached twice" in text and "\n" not in text


def test_stress_with_augmentation_on_an_imported_ensemble_is_one_line(
        tmp_path: Path) -> None:
    """Augmentation retrains the model; an imported ensemble was not trained here: one line
    naming [model] kind (not "an imported network"), and --no-augment runs."""
    toml = write_tree_project(tmp_path, ["a", "b", "c"], 3, ["mean", "std"],
                              "extra_trees_sklearn.onnx")
    assert run_cli("run", str(toml), "--no-emulator").exit_code == 0
    result = run_cli("stress", str(toml), "--perturbations", "gain")
    assert_user_error(result, "[model] kind", "imported model", "--no-augment")
    assert "network" not in result.stderr
    done = run_cli("stress", str(toml), "--perturbations", "gain", "--no-augment")
    assert done.exit_code == 0, done.stderr


def test_ensemble_that_does_not_fit_the_project(tmp_path: Path) -> None:
    toml = write_tree_project(tmp_path, ["a", "b", "c", "d"], 4, ["mean"],
                              "forest_sklearn.onnx")
    assert_user_error(run_cli("run", str(toml)), "forest_sklearn.onnx",
                      "reads 8 features; the project's [[features]] stages make 4")
    toml.write_text(toml.read_text().replace('["mean"]', '["mean", "std"]'))
    (tmp_path / "data" / "d").rename(tmp_path / "data" / "e")
    (tmp_path / "data" / "a").rename(tmp_path / "data" / "f")
    # other class names: the labels 0..3 stand for the project's classes in its order
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr  # labels 0..3 are the project's order
    tree = write_tree_project(tmp_path / "named", ["walk", "run", "sit", "stand", "lie"], 5,
                              ["mean"], "tree_sklearn.onnx")
    assert_user_error(run_cli("run", str(tree)), "tree_sklearn.onnx",
                      "the model's classes ['level1', 'level10', 'level2', 'level20', "
                      "'level3'] are not the project's")
