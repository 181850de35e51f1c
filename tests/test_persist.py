"""Saved pipelines without pickle (kiloml.persist): exact round trips for every stage and
model kind, and hostile or damaged run folders ending in one line, never in code run."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, run_cli, write_toy_project

from kiloml.codegen.library import write_library
from kiloml.codegen.nn_c import emit_network
from kiloml.decision.layer import DecisionLayer, DecisionParams
from kiloml.dsp.raw import RawWindow
from kiloml.errors import KilomlError
from kiloml.models.neural import NeuralModel
from kiloml.models.trees import TreeModel
from kiloml.nn.graph import Graph, Tensor
from kiloml.nn.load import load_model
from kiloml.nn.quantize import quantize_graph
from kiloml.nn.tflite_io import write_tflite
from kiloml.persist.archive import read_npz
from kiloml.persist.pipeline_state import load_pipeline, save_pipeline
from kiloml.pipeline import Pipeline
from kiloml.prepare import prepare_data
from kiloml.project import NeuralModelConfig, OptimizeConfig, TreeModelConfig, load_project
from kiloml.search.evaluate import read_feature_cache
from kiloml.verify.reference import REFERENCE_FILE, Reference

FIXTURES = Path(__file__).parent / "nn" / "fixtures"
ALL_STAGES = '''[[preprocess]]
stage = "filter"
type = "bandpass"
cutoff_hz = [0.5, 60]
order = 2

[[preprocess]]
stage = "pre_emphasis"
coefficient = 0.9

[[preprocess]]
stage = "decimate"
factor = 2

[[features]]
stage = "statistics"
statistics = ["mean", "std", "kurtosis"]

[[features]]
stage = "spectral"
fft_length = 32
n_bands = 4
band_spacing = "log"
f_min_hz = 4

[[features]]
stage = "mfcc"
frame_ms = 160
frame_stride_ms = 80
fft_length = 32
n_filters = 8
n_coefficients = 4

[[features]]
stage = "scale"
method = "minmax"
'''


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    """The toy project at 200 Hz through every preprocess and feature stage: (pipeline
    without a model, windows, split, window-stage outputs)."""
    root = tmp_path_factory.mktemp("persist")
    toml = write_toy_project(root, rate_scale=4)
    text = toml.read_text().replace('[[features]]\nstage = "statistics"\n', ALL_STAGES)
    toml.write_text(text.replace("sample_rate_hz = 50", "sample_rate_hz = 200"))
    _, _, pipeline, windows, split = prepare_data(load_project(toml), announce=False)
    return pipeline, windows, split, pipeline.window_features(windows.x)


def library_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def bits(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    return a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()


def round_trip(p: Pipeline, x: np.ndarray, work: Path) -> Pipeline:
    """Save (after emitting the library, as `kiloml run` does), load, and check that the
    loaded pipeline computes the same features, scores, decisions and C, bit for bit."""
    # one creation time for both (it is recorded in the library; seconds may tick between)
    when = "2026-01-01T00:00:00Z"
    before = library_files(write_library(p, work / "before", created_utc=when).directory)
    save_pipeline(p, work / "pipeline.json")
    q = load_pipeline(work / "pipeline.json")
    assert library_files(write_library(q, work / "after", created_utc=when).directory) == before
    features = p.model_input(x)
    assert bits(q.model_input(x)) == bits(features)
    if p.features:
        assert bits(q.compute_features(x)) == bits(p.compute_features(x))
    assert bits(q.predict(x)) == bits(p.predict(x))
    assert bits(np.asarray(q.model.predict_proba(features))) == \
        bits(np.asarray(p.model.predict_proba(features)))
    scores = p.device_scores(features)
    assert bits(q.device_scores(features)) == bits(scores)
    labels = p.model.predict(features)
    ours, theirs = (DecisionLayer(r.decision_params).run(scores, labels) for r in (p, q))
    for field in ("smoothed", "candidate", "decision", "changed"):
        assert bits(getattr(ours, field)) == bits(getattr(theirs, field)), field
    # and saved again, the loaded pipeline writes the same document and arrays
    save_pipeline(q, work / "again.json")
    assert (work / "again.json").read_text() == (work / "pipeline.json").read_text()
    a, b = read_npz(work / "pipeline.npz"), read_npz(work / "again.npz")
    assert sorted(a) == sorted(b) and all(bits(a[k]) == bits(b[k]) for k in a)
    return q


def decision(k: int) -> DecisionParams:
    return DecisionParams(k, np.linspace(0.1, 0.3, k, dtype=np.float32), min_score=0.2,
                          min_margin=0.05, smoothing="average", smoothing_windows=3,
                          on_windows=2, off_windows=3,
                          calibration={"target": "precision", "value": 0.9,
                                       "achieved": [0.93, math.nan, math.inf],
                                       "support": np.int64(12), "score": np.float32(0.25),
                                       "pair": (1, "two"), "none": None})


def tree_pipeline(prepared, kind: str, c_style: str, thresholds: str, leaves: str,
                  class_weight: str | None = None) -> Pipeline:
    base, windows, split, parts = prepared
    p = copy.deepcopy(base)
    cfg = TreeModelConfig(kind=kind, n_estimators=4, max_depth=None if kind == "extra_trees"
                          else 5, c_style=c_style, thresholds=thresholds, leaves=leaves,
                          class_weight=class_weight, random_state=3)
    p.model = TreeModel(cfg, p.n_classes)
    features = p.assemble(parts, fit_rows=split.train, y=windows.y)
    p.model.fit(features[split.train], windows.y[split.train])
    p.decision = decision(p.n_classes)
    return p


FOREST_CASES = [(kind, style, thr, leaves)
                for i, (style, thr, leaves) in enumerate(
                    (s, t, v) for s in ("table", "inline") for t in ("float32", "int16")
                    for v in ("exact", "uint8", "uint16"))
                for kind in [("random_forest", "extra_trees", "decision_tree")[i % 3]]]


@pytest.mark.parametrize(("kind", "c_style", "thresholds", "leaves"), FOREST_CASES)
def test_forest_round_trip_is_exact(prepared, kind, c_style, thresholds, leaves,
                                    tmp_path: Path) -> None:
    p = tree_pipeline(prepared, kind, c_style, thresholds, leaves,
                      class_weight="balanced" if leaves == "exact" else None)
    q = round_trip(p, prepared[1].x[prepared[2].test], tmp_path)
    assert type(q.model.estimator) is type(p.model.estimator)
    assert [type(s) for s in q.preprocess] == [type(s) for s in p.preprocess]
    assert [type(s) for s in q.features] == [type(s) for s in p.features]
    assert q.model.tables is not None and q.model.describe() == p.model.describe()
    assert q.decision.calibration["support"] == np.int64(12)
    assert math.isnan(q.decision.calibration["achieved"][1])
    assert q.decision.calibration["pair"] == (1, "two")


def test_template_networks_round_trip_exactly(prepared, tmp_path: Path) -> None:
    base, windows, split, parts = prepared
    # an MLP on the features, structurally pruned (its sizes change), with a history
    p = copy.deepcopy(base)
    features = p.assemble(parts, fit_rows=split.train, y=windows.y)
    cfg = NeuralModelConfig(kind="mlp", hidden=[12, 8], epochs=2, validation_groups=1)
    optimize = OptimizeConfig(prune="structured", sparsity=0.5, fine_tune_epochs=1)
    p.model = NeuralModel(cfg, p.n_classes, (features.shape[1],), None, optimize)
    p.model.fit(features[split.train], windows.y[split.train], windows.group[split.train],
                progress=False)
    p.decision = decision(p.n_classes)
    x = windows.x[split.test]
    q = round_trip(p, x, tmp_path / "mlp")
    assert q.model.params == p.model.params and q.model.optimize == p.model.optimize
    assert q.model.history == p.model.history
    f = p.model_input(x)
    assert bits(q.model.predict_proba_float(f)) == bits(p.model.predict_proba_float(f))
    # a 1-D CNN on the raw window
    p = copy.deepcopy(base)
    p.features = [RawWindow(p.window_samples, p.n_channels)]
    cfg = NeuralModelConfig(kind="cnn1d", filters=[4, 4], epochs=1, validation_groups=0)
    p.model = NeuralModel(cfg, p.n_classes, (p.window_samples, p.n_channels))
    p.model.fit(windows.x[split.train], windows.y[split.train], windows.group[split.train],
                progress=False)
    round_trip(p, x, tmp_path / "cnn")


def imported_pipeline(name: str) -> tuple[Pipeline, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 128, 6)).astype(np.float32)
    cfg = NeuralModelConfig(kind="imported", path=name, input="window")
    model = NeuralModel(cfg, 7, (128, 6), FIXTURES / name)
    model.fit(x, rng.integers(0, 7, len(x)), np.repeat(np.arange(4), 10), progress=False)
    p = Pipeline(name="imported", channels=[f"c{i}" for i in range(6)], sample_rate_hz=50.0,
                 window_samples=128, stride_samples=64, class_names=[f"k{i}" for i in range(7)],
                 features=[RawWindow(128, 6)], model=model, input_sample_rate_hz=50.0)
    return p, x


@pytest.mark.parametrize("name", ["cnn1d_int8.tflite", "cnn1d_float.tflite"])
def test_imported_network_round_trip_is_exact(name: str, tmp_path: Path) -> None:
    p, x = imported_pipeline(name)
    q = round_trip(p, x, tmp_path)
    assert q.model.model_path == p.model.model_path
    assert (q.model.float_graph is None) == (p.model.float_graph is None)


# --- old and hostile run folders --------------------------------------------------------


class WritesMarker:
    """Unpickling this writes a file: the proof that something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


@pytest.fixture
def run_copy(toy_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished toy run's project folder (its kiloml.toml)."""
    root = tmp_path / "project"
    shutil.copytree(toy_run.parent, root)
    return root / "kiloml.toml"


def test_an_old_run_folder_is_never_unpickled(run_copy: Path, tmp_path: Path) -> None:
    out = run_copy.parent / "out"
    marker = tmp_path / "marker"
    (out / "pipeline.json").unlink()
    (out / "pipeline.npz").unlink()
    (out / "pipeline.pkl").write_bytes(pickle.dumps(WritesMarker(marker)))
    for command in ("verify", "stress", "check-data"):
        assert_user_error(run_cli(command, str(run_copy)), "pipeline.pkl", "older kiloml",
                          f"run `kiloml run {run_copy}` again")
    with pytest.raises(KilomlError, match="no longer reads"):
        load_pipeline(out / "pipeline.pkl")
    with pytest.raises(KilomlError, match="older kiloml"):
        load_pipeline(out / "pipeline.json")
    assert not marker.exists()


def test_malformed_pipeline_is_one_line_in_every_command(run_copy: Path) -> None:
    path = run_copy.parent / "out" / "pipeline.json"
    doc = json.loads(path.read_text())
    doc["version"] = 2
    path.write_text(json.dumps(doc))
    for command in ("verify", "stress", "check-data"):
        assert_user_error(run_cli(command, str(run_copy)), str(path), "version",
                          "format version 2")
    doc["version"] = 1
    del doc["pipeline"]["model"]["estimator"]["state"]["estimators_"]
    path.write_text(json.dumps(doc))
    assert_user_error(run_cli("stress", str(run_copy)), str(path),
                      "pipeline.model.estimator.state.estimators_", "missing")


def test_a_damaged_metrics_file_is_one_line(run_copy: Path) -> None:
    metrics = run_copy.parent / "out" / "metrics.json"
    for text, message in (("{", "not valid JSON"), ("[]", "expected a JSON object")):
        metrics.write_text(text)
        for command in ("verify", "stress", "check-data"):
            assert_user_error(run_cli(command, str(run_copy)), str(metrics), message)


def test_verify_builds_only_the_library_the_pipeline_generates(run_copy: Path) -> None:
    source = run_copy.parent / "out" / "firmware" / "kiloml_model.c"
    source.write_text(source.read_text() + "\nint planted_by_someone_else;\n")
    assert_user_error(run_cli("verify", str(run_copy)), str(source), "differs from the "
                      "library pipeline.json generates", "kiloml run")
    source.write_text(source.read_text().replace("\nint planted_by_someone_else;\n", ""))
    config = source.with_name("kml_config.h")
    config.unlink()
    assert_user_error(run_cli("verify", str(run_copy)), str(config), "is missing from")


# --- malformed documents, one fault at a time ---------------------------------------------


@pytest.fixture(scope="module")
def saved(prepared, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved forest pipeline (every stage kind); tests edit copies of it."""
    work = tmp_path_factory.mktemp("saved")
    p = tree_pipeline(prepared, "random_forest", "table", "int16", "uint8")
    write_library(p, work / "firmware")
    save_pipeline(p, work / "pipeline.json")
    return work / "pipeline.json"


def edited(saved: Path, tmp_path: Path, edit_json=None, edit_arrays=None) -> Path:
    """A copy of the saved pipeline with its JSON and/or arrays edited."""
    path = tmp_path / "pipeline.json"
    doc = json.loads(saved.read_text())
    if edit_json is not None:
        edit_json(doc)
    path.write_text(json.dumps(doc))
    arrays = read_npz(saved.with_suffix(".npz"))
    if edit_arrays is not None:
        edit_arrays(arrays)
    np.savez(path.with_suffix(".npz"), **arrays)  # allow_pickle: object arrays on purpose
    return path


def estimator_state(doc: dict) -> dict:
    return doc["pipeline"]["model"]["estimator"]["state"]


def tree_nodes(arrays: dict) -> np.ndarray:
    return arrays["model.estimator.estimators_.0.tree_.nodes"]


def _set(doc: dict, path: str, value) -> None:
    *head, last = path.split(".")
    for key in head:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    if isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


def _delete(doc: dict, path: str) -> None:
    *head, last = path.split(".")
    for key in head:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    del doc[last]


def _left(nodes: np.ndarray, value: int) -> None:
    inner = np.flatnonzero(nodes["left_child"] != -1)
    nodes["left_child"][inner[-1]] = value


def _other_feature_count(doc: dict) -> None:
    """Every tree of the forest reading 999 features (consistent among themselves)."""
    state = estimator_state(doc)
    state["n_features_in_"] = 999
    for member in state["estimators_"]:
        member["$estimator"]["state"]["n_features_in_"] = 999
        member["$estimator"]["state"]["tree_"]["$tree"]["n_features"] = 999


JSON_FAULTS = {
    "wrong version": (lambda d: _set(d, "version", 99), "version", "format version 99"),
    "other format": (lambda d: _set(d, "format", "x"), "format", "not a kiloml-pipeline"),
    "missing field": (lambda d: _delete(d, "pipeline.window_samples"),
                      "pipeline.window_samples", "missing"),
    "unknown field": (lambda d: _set(d, "pipeline.decision.extra", 1), "pipeline.decision.extra",
                      "unknown field"),
    "unknown type tag": (lambda d: _set(d, "pipeline.decision.calibration.x",
                                        {"$pickle": "gASV"}),
                         "pipeline.decision.calibration.x", "unknown type tag '$pickle'"),
    "class outside the allow-list": (
        lambda d: _set(d, "pipeline.model.estimator.class", "subprocess.Popen"),
        "pipeline.model.estimator.class", "not one of RandomForestClassifier"),
    "member class outside the allow-list": (
        lambda d: _set(estimator_state(d)["estimators_"][0]["$estimator"], "class", "SVC"),
        "estimators_[0].class", "not one of"),
    "template class outside the allow-list": (
        lambda d: _set(estimator_state(d), "estimator", {"$class": "builtins.eval"}),
        "state.estimator", "not an allowed estimator class"),
    "dunder attribute": (lambda d: _set(estimator_state(d), "__class__", "x"),
                         "state.__class__", "not an attribute"),
    "method as attribute": (lambda d: _set(estimator_state(d), "predict", 1),
                            "state.predict", "not an attribute"),
    "wrong type": (lambda d: _set(d, "pipeline.stride_samples", "25"),
                   "pipeline.stride_samples", "expected a whole number"),
    "bool for a number": (lambda d: _set(d, "pipeline.window_samples", True),
                          "pipeline.window_samples", "expected a whole number"),
    "invalid stage setting": (lambda d: _set(d, "pipeline.features.1.fft_length", 33),
                              "pipeline.features[1].fft_length",
                              "FFT length 33 is not a power of two"),
    "settings that change the features": (
        lambda d: _set(d, "pipeline.features.1.n_bands", 5),
        "pipeline.features[3].offset", "array of shape [180], expected [183]"),
    "trees reading other features": (_other_feature_count, "state.n_features_in_",
                                     "the trees read 999 features, the stages make 180"),
    "pydantic coercion refused": (
        lambda d: _set(d, "pipeline.model.config.max_depth", 0),
        "pipeline.model.config.max_depth", "greater than or equal to 1"),
    "project name closing a C comment": (lambda d: _set(d, "pipeline.name", "x*/ int y; /*"),
                                         "pipeline.name", "not a project name"),
    "sample rate against the preprocessing": (
        lambda d: _set(d, "pipeline.input_sample_rate_hz", 400.0),
        "pipeline.sample_rate_hz", "preprocessing give"),
    "scikit-learn version": (lambda d: _set(d, "pipeline.model.scikit_learn", "0.24.2"),
                             "pipeline.model.scikit_learn", "run `kiloml run` again"),
    "forest run in parallel": (lambda d: _set(estimator_state(d), "n_jobs", -1),
                               "state.n_jobs", "expected a whole number in [1, 1]"),
    "nested too deeply": (lambda d: _set(d, "pipeline.decision.calibration.x",
                                         json.loads("[" * 100 + "]" * 100)),
                          "pipeline.decision.calibration.x", "nested too deeply"),
    "array reference to nothing": (lambda d: _set(d, "pipeline.features.3.gain",
                                                                  {"$array": "nope"}),
                                   "pipeline.features[3].gain", "does not hold"),
    "threshold above its range": (lambda d: _set(d, "pipeline.decision.min_score", 2.0),
                                  "pipeline.decision.min_score", "is not in [0.0, 1.0]"),
    "too much smoothing": (lambda d: _set(d, "pipeline.decision.smoothing_windows", 10**9),
                           "pipeline.decision.smoothing_windows", "outside [1, 64]"),
}


@pytest.mark.parametrize("fault", list(JSON_FAULTS))
def test_a_malformed_document_names_the_file_and_field(saved: Path, tmp_path: Path,
                                                       fault: str) -> None:
    edit, where, message = JSON_FAULTS[fault]
    path = edited(saved, tmp_path, edit_json=edit)
    with pytest.raises(KilomlError) as info:
        load_pipeline(path)
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"{path}: "), line
    assert where in (info.value.where or ""), line
    assert message in line, line


ARRAY_FAULTS = {
    "wrong dtype": (lambda a: a.update({"decision.thresholds": a["decision.thresholds"]
                                        .astype(np.float64)}),
                    "pipeline.decision.thresholds", "dtype <f8, expected float32"),
    "big-endian": (lambda a: a.update({"decision.thresholds": a["decision.thresholds"]
                                       .astype(">f4")}),
                   "pipeline.decision.thresholds", "dtype >f4"),
    "wrong shape": (lambda a: a.update({"features.3.offset": a["features.3.offset"][:-1]}),
                    "pipeline.features[3].offset", "array of shape"),
    "NaN": (lambda a: a["features.3.gain"].__setitem__(0, np.nan),
            "pipeline.features[3].gain", "NaN or infinite"),
    "missing member": (lambda a: a.pop("features.3.gain"), "pipeline.features[3].gain",
                       "does not hold"),
    "child outside the tree": (lambda a: _left(tree_nodes(a), 10**6),
                               "estimators_[0].state.tree_.nodes", "child outside the tree"),
    "child before its parent": (lambda a: _left(tree_nodes(a), 0),
                                "estimators_[0].state.tree_.nodes", "not after it"),
    "feature outside the input": (
        lambda a: tree_nodes(a)["feature"].__setitem__(0, 10**5),
        "estimators_[0].state.tree_.nodes", "tests feature 100000"),
    "nodes that are not node records": (
        lambda a: a.update({"model.estimator.estimators_.0.tree_.nodes":
                            np.zeros(len(tree_nodes(a)))}),
        "estimators_[0].state.tree_.nodes", "expected records (left_child, right_child"),
}


@pytest.mark.parametrize("fault", list(ARRAY_FAULTS))
def test_a_malformed_array_names_the_field(saved: Path, tmp_path: Path, fault: str) -> None:
    edit, where, message = ARRAY_FAULTS[fault]
    path = edited(saved, tmp_path, edit_arrays=edit)
    with pytest.raises(KilomlError) as info:
        load_pipeline(path)
    assert where in (info.value.where or ""), str(info.value)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_object_array_is_refused_unread(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = edited(saved, tmp_path, edit_arrays=lambda a: a.update(
        {"decision.thresholds": np.array([WritesMarker(marker)], dtype=object)}))
    with pytest.raises(KilomlError, match=r"holds Python objects \(dtype object\)") as info:
        load_pipeline(path)
    assert info.value.file == str(path.with_suffix(".npz"))
    assert info.value.where == "decision.thresholds.npy"
    assert not marker.exists()


def _npy_member(header_shape: tuple[int, ...], payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": header_shape})
    return buf.getvalue() + payload


@pytest.mark.parametrize(("content", "message"), [
    (b"", "not a readable .npz archive"),
    (b"PK\x03\x04 truncated", "not a readable .npz archive"),
    ({"a.npy": _npy_member((10**12,), b"\0" * 16)}, "declares shape [1000000000000]"),
    ({"a.npy": _npy_member((2,), b"\0" * 4)}, "holds 4"),
    ({"a.txt": b"x"}, "not an .npy member"),
    ({"a.npy": b"\x93NUMPY\x09\x00"}, "NPY format version 9.0 is not supported"),
])
def test_a_damaged_archive_is_one_line(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "x.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in content.items():
                zf.writestr(name, data)
    with pytest.raises(KilomlError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")) as info:
        read_npz(path)
    assert info.value.file == str(path)


@pytest.mark.parametrize(("text", "message"), [
    ("", "not valid JSON"), ('{"format": NaN}', "not valid JSON: NaN is not JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"), ("\xff", "not UTF-8"),
    ("[1, 2]", "expected a JSON object"),
])
def test_a_document_that_is_not_json_is_one_line(saved: Path, tmp_path: Path, text: str,
                                                 message: str) -> None:
    path = tmp_path / "pipeline.json"
    shutil.copyfile(saved.with_suffix(".npz"), path.with_suffix(".npz"))
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(KilomlError, match=message) as info:
        load_pipeline(path)
    assert info.value.file == str(path)


def test_a_fifo_is_not_waited_for(saved: Path, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.json"
    os.mkfifo(path)
    with pytest.raises(KilomlError, match="not a regular file"):
        load_pipeline(path)
    shutil.copyfile(saved, path.with_name("p.json"))
    os.mkfifo(path.with_name("p.npz"))
    with pytest.raises(KilomlError, match="not a regular file"):
        load_pipeline(path.with_name("p.json"))


def test_network_names_cannot_close_a_c_comment(tmp_path: Path) -> None:
    p, _ = imported_pipeline("cnn1d_int8.tflite")
    save_pipeline(p, tmp_path / "pipeline.json")
    doc = json.loads((tmp_path / "pipeline.json").read_text())
    for key, where in (("tensors", "graph.tensors[3].name"), ("ops", "graph.ops[0].name")):
        bad = copy.deepcopy(doc)
        bad["pipeline"]["model"]["graph"][key][3 if key == "tensors" else 0]["name"] = \
            "w */ system(\"rm -rf ~\"); /*"
        (tmp_path / "pipeline.json").write_text(json.dumps(bad))
        with pytest.raises(KilomlError, match="control character or '\\*/'") as info:
            load_pipeline(tmp_path / "pipeline.json")
        assert where in info.value.where


def test_an_imported_tensor_name_stays_inside_its_c_comment(tmp_path: Path) -> None:
    """A name from a model file ends up in a comment of the generated C: it must not close
    the comment and put its own code into the library that kiloml compiles and runs."""
    rng = np.random.default_rng(0)
    g = Graph([], [], [], [], name="m")
    x = g.add_tensor(Tensor("x", (1, 4), "float32"))
    w = g.add_tensor(Tensor("w */ int planted = 1; /*", (3, 4), "float32",
                            data=rng.normal(size=(3, 4))))
    b = g.add_tensor(Tensor("b", (3,), "float32", data=np.zeros(3)))
    y = g.add_tensor(Tensor("y", (1, 3), "float32"))
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    g.inputs, g.outputs = [x], [y]
    (tmp_path / "m.tflite").write_bytes(write_tflite(g))
    graph = quantize_graph(load_model(tmp_path / "m.tflite"),
                           [rng.normal(size=(16, 4)).astype(np.float32)])
    source = emit_network(graph, prefix="kml_m_").source
    assert "planted" in source
    for line in source.splitlines():
        if "planted" in line:
            assert line.startswith("/*") and line.endswith("*/") and line.count("*/") == 1


@pytest.mark.parametrize(("edit", "where", "message"), [
    (lambda g: g["ops"][0].update(kind="CUSTOM"), "graph.ops[0].kind", "is not one of"),
    (lambda g: g["ops"][0]["inputs"].__setitem__(0, 999), "graph.ops[0].inputs[0]",
     "outside"),
    (lambda g: g["ops"][1]["options"].update(stride_w=0), "graph: operator 1",
     "stride_w = 0; it must be an integer of at least 1"),
    (lambda g: g["ops"][1]["options"].update(stride_w=True), "options.stride_w",
     "not a valid stride_w"),
    (lambda g: g["ops"][1]["options"].update(padding="FULL"), "graph: operator 1",
     "padding 'FULL'"),
    (lambda g: g["ops"][1]["options"].pop("padding"), "options.padding", "missing"),
    (lambda g: g["ops"][-1]["options"].update(beta=1e30), "graph: operator",
     "softmax beta = 1e+30"),
    (lambda g: g["tensors"][0].update(dtype="complex64"), "tensors[0].dtype", "not one of"),
    (lambda g: g["tensors"][0].update(shape=[1, 128, 7]), "graph", "not a valid network"),
    (lambda g: g["tensors"][0].update(quant=None), "graph: operator 0",
     "has no quantization parameters"),
    (lambda g: g["ops"].append(g["ops"][0]), "graph.ops", "written before"),
])
def test_a_malformed_network_names_the_field(tmp_path: Path, edit, where: str,
                                             message: str) -> None:
    p, _ = imported_pipeline("cnn1d_int8.tflite")
    save_pipeline(p, tmp_path / "pipeline.json")
    doc = json.loads((tmp_path / "pipeline.json").read_text())
    edit(doc["pipeline"]["model"]["graph"])
    (tmp_path / "pipeline.json").write_text(json.dumps(doc))
    with pytest.raises(KilomlError) as info:
        load_pipeline(tmp_path / "pipeline.json")
    assert where in (info.value.where or ""), str(info.value)
    assert message in str(info.value), str(info.value)


def test_a_malformed_quantization_names_the_field(tmp_path: Path) -> None:
    p, _ = imported_pipeline("cnn1d_int8.tflite")
    save_pipeline(p, tmp_path / "pipeline.json")
    arrays = read_npz(tmp_path / "pipeline.npz")
    scale = next(k for k in arrays if k.endswith(".scale"))
    for bad, message in ((-1.0, "has scale -1; scales must be finite"),
                         (1e-45, "scales must be finite and in")):
        changed = dict(arrays)
        changed[scale] = np.full_like(arrays[scale], bad)
        np.savez(tmp_path / "pipeline.npz", **changed)
        with pytest.raises(KilomlError, match=message) as info:
            load_pipeline(tmp_path / "pipeline.json")
        assert info.value.where.startswith("pipeline.model.graph: operator ")


# --- mutation fuzzing: load fine and work, or one KilomlError ---------------------------


# KILOML_PERSIST_FUZZ_SCALE=20 runs 20x the mutants (make test runs 1x: about 8 s)
SCALE = int(os.environ.get("KILOML_PERSIST_FUZZ_SCALE", "1"))
BOUNDARY_VALUES = [None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63), 1e308, -1e-300,
                   0.5, "", "x", "nan", [], {}, [0], [None], {"$array": "nope"},
                   {"$float": "nan"}, {"$tuple": []}, {"$np": ["int64", 2**40]},
                   {"$estimator": {"class": "DecisionTreeClassifier", "state": {}}}]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _mutate(doc: dict, rng: np.random.Generator) -> str:
    paths = [p for p in _paths(doc) if p]
    path = paths[rng.integers(len(paths))]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    action = rng.integers(4)
    if action == 0 and isinstance(parent, dict):
        del parent[last]
        return f"delete {path}"
    if action == 1:
        other = paths[rng.integers(len(paths))]
        value = doc
        for key in other:
            value = value[key]
        parent[last] = copy.deepcopy(value)
        return f"{path} = value of {other}"
    if action == 2 and isinstance(parent[last], (int, float)) and \
            not isinstance(parent[last], bool):
        step = 1 if isinstance(parent[last], int) else 1e-3
        parent[last] = parent[last] + (step if rng.integers(2) else -step)
        return f"nudge {path}"
    parent[last] = copy.deepcopy(BOUNDARY_VALUES[rng.integers(len(BOUNDARY_VALUES))])
    return f"{path} = {parent[last]!r}"[:200]


def _use(q: Pipeline, x: np.ndarray, work: Path) -> None:
    f = q.model_input(x)
    q.predict(x)
    q.device_scores(f)
    DecisionLayer(q.decision_params).run(q.device_scores(f), q.model.predict(f))
    write_library(q, work)


def test_mutated_documents_load_and_work_or_fail_in_one_line(saved: Path, prepared,
                                                             tmp_path: Path) -> None:
    x = prepared[1].x[prepared[2].test][:8]
    original = json.loads(saved.read_text())
    rng = np.random.default_rng(13)
    outcomes = {"loaded": 0, "refused": 0}
    shutil.copyfile(saved.with_suffix(".npz"), tmp_path / "pipeline.npz")
    for i in range(200 * SCALE):
        doc = copy.deepcopy(original)
        what = _mutate(doc, rng)
        (tmp_path / "pipeline.json").write_text(json.dumps(doc))
        try:
            q = load_pipeline(tmp_path / "pipeline.json")
        except KilomlError as exc:
            assert "\n" not in str(exc) and exc.file is not None, (what, str(exc))
            outcomes["refused"] += 1
            continue
        try:
            _use(q, x, tmp_path / f"lib{i}")
        except Exception as exc:  # any failure here is the finding
            pytest.fail(f"mutant {i} ({what}) loaded but fails: {type(exc).__name__}: {exc}")
        outcomes["loaded"] += 1
    print(f"mutants: {outcomes}")
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 10, outcomes


def test_mutated_archives_load_and_work_or_fail_in_one_line(saved: Path, prepared,
                                                            tmp_path: Path) -> None:
    x = prepared[1].x[prepared[2].test][:8]
    compressed = saved.with_suffix(".npz").read_bytes()
    np.savez(tmp_path / "plain.npz", **read_npz(saved.with_suffix(".npz")))
    plain = (tmp_path / "plain.npz").read_bytes()  # flips land in the arrays themselves
    shutil.copyfile(saved, tmp_path / "pipeline.json")
    rng = np.random.default_rng(17)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(300 * SCALE):
        mutant = bytearray(plain if i % 2 else compressed)
        if i % 5 == 0:
            mutant = mutant[:rng.integers(len(mutant))]
        else:
            for _ in range(rng.integers(1, 4)):
                mutant[rng.integers(len(mutant))] ^= 1 << rng.integers(8)
        (tmp_path / "pipeline.npz").write_bytes(bytes(mutant))
        try:
            q = load_pipeline(tmp_path / "pipeline.json")
        except KilomlError as exc:
            assert "\n" not in str(exc), str(exc)
            outcomes["refused"] += 1
            continue
        _use(q, x, tmp_path / f"lib{i}")
        outcomes["loaded"] += 1
    print(f"mutants: {outcomes}")
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 10, outcomes


def _mutate_array(arrays: dict, rng: np.random.Generator) -> str:
    """One element of one array: a bit flipped, or all its bytes set to 0x00, 0x7f, 0x80 or
    0xff (NaN, huge, negative and zero values, child indices and features out of range)."""
    keys = sorted(k for k, v in arrays.items() if v.size)
    key = keys[rng.integers(len(keys))]
    a = arrays[key] = arrays[key].copy()
    raw = a.reshape(-1).view(np.uint8)
    j = int(rng.integers(raw.size))
    if rng.integers(2):
        raw[j] ^= np.uint8(1 << int(rng.integers(8)))
        return f"{key}: bit flip at byte {j}"
    first = j // a.itemsize * a.itemsize
    raw[first:first + a.itemsize] = (0, 0x7F, 0x80, 0xFF)[rng.integers(4)]
    return f"{key}: element {first // a.itemsize} set to {raw[first]:#x} bytes"


@pytest.mark.parametrize("which", ["forest", "imported network"])
def test_mutated_arrays_load_and_work_or_fail_in_one_line(saved: Path, prepared, which: str,
                                                          tmp_path: Path) -> None:
    if which == "forest":
        x, source = prepared[1].x[prepared[2].test][:8], saved
    else:
        p, x = imported_pipeline("cnn1d_int8.tflite")
        x, source = x[:4], tmp_path / "source" / "pipeline.json"
        source.parent.mkdir()
        write_library(p, source.parent / "firmware")
        save_pipeline(p, source)
    original = read_npz(source.with_suffix(".npz"))
    shutil.copyfile(source, tmp_path / "pipeline.json")
    rng = np.random.default_rng(23)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(300 * SCALE):
        arrays = dict(original)
        what = _mutate_array(arrays, rng)
        np.savez(tmp_path / "pipeline.npz", **arrays)
        try:
            q = load_pipeline(tmp_path / "pipeline.json")
        except KilomlError as exc:
            assert "\n" not in str(exc) and exc.where, (what, str(exc))
            outcomes["refused"] += 1
            continue
        try:
            with np.errstate(over="ignore"):  # a scaling gain of 1e38 overflows, as in C
                _use(q, x, tmp_path / f"lib{i}")
        except Exception as exc:  # any failure here is the finding
            pytest.fail(f"mutant {i} ({what}) loaded but fails: {type(exc).__name__}: {exc}")
        outcomes["loaded"] += 1
    print(f"mutants: {outcomes}")
    assert outcomes["refused"] > 50 and outcomes["loaded"] > 50, outcomes


# --- other files read back ---------------------------------------------------------------


def test_reference_is_checked_against_itself_and_the_pipeline(toy_run: Path,
                                                              tmp_path: Path) -> None:
    out = toy_run.parent / "out"
    pipeline = load_pipeline(out / "pipeline.json")
    good = read_npz(out / "verify" / REFERENCE_FILE)
    Reference.load(out / "verify" / REFERENCE_FILE, pipeline)
    cases = {
        "labels": (good["labels"][:-1], "axis 0 (N)"),
        "scores": (good["scores"].astype(np.float32), "float32 array"),
        "stream_lengths": (good["stream_lengths"] + 1, "add up to"),
        "stream_recording": (good["stream_recording"] + 100, "names a recording"),
        "features": (good["features"][:, :-1], "axis 1 (F)"),
        "windows": (np.array([WritesMarker(tmp_path / "m")], dtype=object), "holds Python objects"),
    }
    for key, (value, message) in cases.items():
        np.savez(tmp_path / "r.npz", **{**good, key: value})
        with pytest.raises(KilomlError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Reference.load(tmp_path / "r.npz", pipeline)
    del good["labels"]
    np.savez(tmp_path / "r.npz", **good)
    with pytest.raises(KilomlError, match="missing"):
        Reference.load(tmp_path / "r.npz")
    assert not (tmp_path / "m").exists()


def test_feature_cache_is_used_only_when_it_is_whole(tmp_path: Path) -> None:
    parts = [np.ones((5, 3), np.float32), np.zeros((5, 2), np.float32)]
    path = tmp_path / "features-x.npz"
    np.savez(path, p0=parts[0], p1=parts[1])
    got = read_feature_cache(path, 5, [3, 2])
    assert got is not None and all(bits(a) == bits(b) for a, b in zip(got, parts, strict=True))
    for bad in ({"p0": parts[0]}, {"p0": parts[0], "p1": parts[1].astype(np.float64)},
                {"p0": parts[0], "p1": np.array([WritesMarker(tmp_path / "m")], object)},
                {"p0": parts[0][:4], "p1": parts[1][:4]}):
        np.savez(path, **bad)
        assert read_feature_cache(path, 5, [3, 2]) is None
    assert read_feature_cache(path, 5, [3, 3]) is None
    path.write_bytes(b"PK\x03\x04garbage")
    assert read_feature_cache(path, 5, [3, 2]) is None
    assert not (tmp_path / "m").exists()
