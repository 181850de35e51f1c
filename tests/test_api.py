"""The Python API (kiloml/api.py): convert every supported kind of model, the Library's
reference against the original model and against its C (host; QEMU for one of each
family), save and load without pickle, Project.run, and one KilomlError line for each
kind of bad input. docs/api.md's code blocks run here too."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 without TensorFlow

import numpy as np
import pytest
from conftest import write_toy_project
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Perceptron, RidgeClassifier, SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

import kiloml
from kiloml.errors import KilomlError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "nn" / "fixtures"
F32 = np.float32
QEMU = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or
                          shutil.which("arm-none-eabi-gcc") is None,
                          reason="needs qemu-system-arm and arm-none-eabi-gcc")


def vectors(seed: int = 0, n: int = 900, f: int = 10, k: int = 3):
    """Feature vectors of k classes (labels as text, as users have them)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, f)) * 1.2
    y = rng.integers(0, k, size=n)
    x = (centers[y] + rng.normal(size=(n, f))).astype(F32)
    names = np.array(["still", "walk", "run", "jump", "fall"][:k])
    return x, names[y]


def windows_channels_first(seed: int = 0, n: int = 600, c: int = 3, t: int = 64):
    """[N, C, T] sine windows of three classes (PyTorch's layout)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    time = np.arange(t)
    x = (np.sin(2 * np.pi * (y[:, None, None] + 1) * time / t * 2)
         * np.array([1, 0.5, 0.2])[None, :, None] + 0.3 * rng.normal(size=(n, c, t)))
    return x.astype(F32), y


def held_out(lib, x: np.ndarray) -> np.ndarray:
    """x plus inputs that stress the C: zeros, huge and tiny values."""
    f = x.shape[1]
    rng = np.random.default_rng(1)
    extra = np.concatenate([np.zeros((2, f)), rng.normal(size=(4, f)) * 1e30,
                            rng.normal(size=(4, f)) * 1e-40]).astype(F32)
    return np.concatenate([x, extra])


def host_parity(figures: dict) -> tuple[int, int]:
    host = figures["parity"]["host"]
    assert host["all_decisions_equal"] and host["streaming"]["all_decisions_equal"], host
    if "kml_predict" in host:
        assert host["kml_predict"]["all_decisions_equal"] and \
            host["kml_predict"]["scores_bit_exact"]
    return host["decisions_equal"], host["n"]


# --- import ----------------------------------------------------------------------------


def test_import_kiloml_stays_light() -> None:
    code = ("import sys, kiloml; heavy = [m for m in ('torch', 'sklearn', 'numpy', "
            "'kiloml.api', 'keras') if m in sys.modules]; print(heavy); "
            "assert callable(kiloml.convert) and 'kiloml.api' in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]", out
    assert {"convert", "Library", "Project", "RunResult"} <= set(dir(kiloml))


# --- scikit-learn ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: DecisionTreeClassifier(max_depth=8, random_state=0),
    lambda: RandomForestClassifier(n_estimators=12, criterion="entropy", bootstrap=False,
                                   n_jobs=2, random_state=0),
    lambda: ExtraTreesClassifier(n_estimators=8, min_samples_leaf=3, random_state=0),
], ids=["decision_tree", "random_forest", "extra_trees"])
def test_trees_equal_sklearn_predict(make) -> None:
    """Any fitted tree classifier (its own hyperparameters, text labels) becomes exact C:
    predict equals scikit-learn's on every input, NaN included."""
    x, y = vectors()
    est = make().fit(x[:600], y[:600])
    lib = kiloml.convert(est)
    test = held_out(lib, x[600:])
    test[:20, 2] = np.nan  # trees route NaN as scikit-learn does
    want = est.predict(test)
    assert list(np.array(lib.class_names)[lib.predict(test)]) == list(want)
    assert lib.family == "trees" and lib.feature_names == [f"x{i}" for i in range(10)]
    assert host_parity(lib.verify(test, emulate=False)) == (len(test), len(test))


LINEAR = {
    "logistic-binary": lambda: LogisticRegression(),
    "logistic-multinomial": lambda: LogisticRegression(C=0.5),
    "logistic-ovr": lambda: OneVsRestClassifier(LogisticRegression()),
    "linear-svc": lambda: LinearSVC(),
    "ridge": lambda: RidgeClassifier(),
    "sgd-log": lambda: SGDClassifier(loss="log_loss", random_state=0),
    "perceptron": lambda: Perceptron(random_state=0),
}


@pytest.mark.parametrize("name", list(LINEAR))
def test_linear_models_equal_sklearn_predict(name: str) -> None:
    k = 2 if name.endswith("binary") else 4
    x, y = vectors(seed=3, k=k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LINEAR[name]().fit(x[:600].astype(np.float64), y[:600])
    lib = kiloml.convert(est, feature_names=[f"f{i}" for i in range(10)])
    test = x[600:]
    assert list(np.array(lib.class_names)[lib.predict(test)]) == list(est.predict(test))
    assert host_parity(lib.verify(held_out(lib, test), emulate=False))[0] == len(test) + 10
    bad = test[:3].copy()
    bad[0, 0], bad[1, 1], bad[2, 2] = np.nan, np.inf, -np.inf
    assert list(lib.predict(bad)) == [-1, -1, -1]  # scikit-learn refuses such input


def test_mlp_classifier_to_int8() -> None:
    x, y = vectors(seed=4, n=1200, f=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier((24, 12), max_iter=400, random_state=0).fit(x[:800], y[:800])
    lib = kiloml.convert(est, calibration=x[:300])
    test, truth = x[800:], np.searchsorted(est.classes_, y[800:])
    float_acc = float(np.mean(lib.float_predict(test) == truth))
    int8_acc = float(np.mean(lib.predict(test) == truth))
    assert float_acc == pytest.approx(np.mean(est.predict(test) == y[800:]), abs=0.005)
    assert int8_acc >= float_acc - 0.02
    assert host_parity(lib.verify(test, emulate=False)) == (len(test), len(test))
    binary = MLPClassifier((8,), max_iter=400, random_state=0).fit(x[:800], y[:800] == "walk")
    lib2 = kiloml.convert(binary, calibration=x[:300])  # one logistic output -> two scores
    assert lib2.class_names == ["False", "True"]
    assert np.mean(lib2.float_predict(test) == binary.predict(test)) > 0.99


# --- networks ----------------------------------------------------------------------------


def _torch_cnn():
    torch = pytest.importorskip("torch")

    class CNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv1d(3, 8, 5, stride=2, padding=2)
            self.c2 = torch.nn.Conv1d(8, 16, 3, padding=1)
            self.fc = torch.nn.Linear(16, 3)

        def forward(self, x):
            x = torch.relu(self.c1(x))
            x = torch.relu(self.c2(x))
            return self.fc(x.mean(dim=2))

    torch.manual_seed(0)
    x, y = windows_channels_first()
    model = CNN()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x[:400])),
                                                 torch.from_numpy(y[:400]))
        loss.backward()
        opt.step()
    return model, x, y


def test_torch_cnn_float_vs_int8() -> None:
    torch = pytest.importorskip("torch")
    model, x, y = _torch_cnn()
    lib = kiloml.convert(model, calibration=x[:200], class_names=["slow", "mid", "fast"])
    assert lib.input_shape == (3, 64)  # PyTorch's [C, T]; the C reads [T][C]
    with torch.no_grad():
        ref = model(torch.from_numpy(x[400:])).argmax(1).numpy()
    assert np.mean(lib.float_predict(x[400:]) == ref) > 0.99
    assert np.mean(lib.predict(x[400:]) == y[400:]) >= np.mean(ref == y[400:]) - 0.02
    assert host_parity(lib.verify(x[400:], emulate=False)) == (200, 200)


def test_keras_model_layers_directly() -> None:
    keras = pytest.importorskip("keras")
    x, y = windows_channels_first(seed=2)
    x = np.ascontiguousarray(x.transpose(0, 2, 1))  # Keras is channels last [T, C]
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((64, 3)), layers.Conv1D(8, 5, strides=2, padding="same"),
        layers.BatchNormalization(), layers.Activation("relu"), layers.MaxPooling1D(2),
        layers.DepthwiseConv1D(3, padding="same", activation="relu"),
        layers.Conv1D(16, 3, padding="valid", activation="relu"),
        layers.GlobalAveragePooling1D(), layers.Dropout(0.1),
        layers.Dense(8, activation="tanh"), layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:400], y[:400], epochs=10, verbose=0)
    lib = kiloml.convert(model, calibration=x[:200])
    assert lib.source == "Keras Sequential" and lib.input_shape == (64, 3)
    ref = model.predict(x[400:], verbose=0).argmax(1)
    assert np.mean(lib.float_predict(x[400:]) == ref) > 0.99
    assert np.mean(lib.predict(x[400:]) == ref) > 0.95
    assert host_parity(lib.verify(x[400:], emulate=False)) == (200, 200)


def test_model_files() -> None:
    """.onnx (float, channels first: quantized on calibration data in its own layout) and
    .tflite (int8: as it is, no calibration)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 128)).astype(F32)  # the ONNX model's [N, C, T]
    onnx_lib = kiloml.convert(FIXTURES / "cnn1d_torch.onnx", calibration=x)
    assert onnx_lib.input_shape == (6, 128) and onnx_lib.name == "cnn1d_torch"
    assert host_parity(onnx_lib.verify(x[:40], emulate=False)) == (40, 40)
    tflite = kiloml.convert(str(FIXTURES / "cnn1d_int8.tflite"))
    assert tflite.float_predict(x[:2].transpose(0, 2, 1)) is None
    assert host_parity(tflite.verify(x[:40].transpose(0, 2, 1), emulate=False)) == (40, 40)


# --- QEMU: one of each family, with resources ------------------------------------------


@QEMU
def test_forest_and_logistic_regression_on_qemu() -> None:
    from test_linear import near_ties, special_rows

    x, y = vectors(seed=6, n=2600)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(x[:600], y[:600])
    lib = kiloml.convert(forest, target="cortex-m4f")
    test = x[600:]
    figures = lib.verify(test)
    m4 = figures["parity"]["cortex-m4f"]
    assert figures["ok"] and m4["emulated"] and m4["decisions_equal"] == len(test)
    assert lib.resources["instructions_per_inference"] > 0
    logistic = LogisticRegression().fit(x[:600].astype(np.float64), y[:600])
    lib = kiloml.convert(logistic, target="cortex-m4f")
    tables = lib.pipeline.model.tables
    rng = np.random.default_rng(7)
    test = np.concatenate([x[600:], near_ties(tables, rng, 200), special_rows(10, rng)])
    assert np.sum(tables.paths(test) == 1) > 100  # the exact path is exercised
    figures = lib.verify(test)
    for place in ("host", "cortex-m4f"):
        p = figures["parity"][place]
        assert p["decisions_equal"] == p["n"] == len(test), place
    finite = np.all(np.isfinite(test), axis=1)
    agree = lib.predict(test[finite]) == np.searchsorted(logistic.classes_,
                                                         logistic.predict(test[finite]))
    assert np.all(agree | tables.sklearn_ambiguous(test[finite]))


@QEMU
def test_torch_cnn_on_qemu() -> None:
    model, x, _ = _torch_cnn()
    lib = kiloml.convert(model, calibration=x[:200])
    figures = lib.verify(x[400:])
    p = figures["parity"]["cortex-m4f"]
    assert figures["ok"] and p["decisions_equal"] == p["n"] == 200
    assert p["streaming"]["all_decisions_equal"]


# --- save and load --------------------------------------------------------------------------


def test_save_and_load(tmp_path: Path) -> None:
    x, y = vectors(seed=8)
    est = LogisticRegression().fit(x[:600].astype(np.float64), y[:600])
    lib = kiloml.convert(est, name="activity")
    folder = lib.save(tmp_path / "lib")
    assert (folder / "firmware" / "kiloml_model.c").is_file()
    assert "kml_predict" in (folder / "firmware" / "kiloml_model.h").read_text()
    assert not list(folder.rglob("*.pkl"))
    again = kiloml.Library.load(folder)
    assert again.class_names == lib.class_names and again.input_shape == (10,)
    assert np.array_equal(again.predict(x[600:]), lib.predict(x[600:]))
    assert np.array_equal(again.scores(x[600:]).view(np.int32),
                          lib.scores(x[600:]).view(np.int32))
    lib.save(folder)  # over a library folder it saved: replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(KilomlError, match="not a kiloml output folder"):
        lib.save(mine)
    assert (mine / "notes.txt").read_text() == "keep"
    with pytest.raises(KilomlError, match=r"not .*library folder"):
        kiloml.Library.load(tmp_path / "mine")
    # a library.json edited by hand: one line naming the field
    doc = json.loads((folder / "library.json").read_text())
    doc["input_shape"] = [11]
    (folder / "library.json").write_text(json.dumps(doc))
    with pytest.raises(KilomlError, match="input_shape"):
        kiloml.Library.load(folder)


def test_save_and_load_a_network_with_its_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 128)).astype(F32)
    lib = kiloml.convert(FIXTURES / "cnn1d_torch.onnx", calibration=x)
    again = kiloml.Library.load(lib.save(tmp_path / "cnn"))
    assert again.input_shape == (6, 128) and again.layout is not None
    assert np.array_equal(again.predict(x), lib.predict(x))


# --- projects ---------------------------------------------------------------------------------


def test_project_run(tmp_path: Path) -> None:
    from kiloml.verify.reference import Reference

    project = kiloml.Project.load(write_toy_project(tmp_path))
    assert project.name == "toy"
    run = project.run(emulate=False)
    assert isinstance(run, kiloml.RunResult) and run.ok and run.report.is_file()
    assert run.output_dir == tmp_path / "out"
    assert run.metrics["parity"]["host"]["all_decisions_equal"]
    ref = Reference.load(run.output_dir / "verify" / "reference.npz")
    assert run.library.input_shape == ref.windows.shape[1:]
    assert np.array_equal(run.library.predict(ref.windows), ref.labels)
    assert run.library.resources["measured_on"].startswith("host-gcc")


# --- bad input: one line each ----------------------------------------------------------------


def one_line(exc: KilomlError, *fragments: str) -> str:
    text = str(exc)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


def test_an_unfitted_estimator() -> None:
    for est in (RandomForestClassifier(), LogisticRegression(), MLPClassifier()):
        with pytest.raises(KilomlError) as err:
            kiloml.convert(est, calibration=np.zeros((4, 3), F32))
        one_line(err.value, f"the {type(est).__name__} is not fitted", "fit(X, y)")


def test_an_unsupported_estimator_names_it_and_what_is_supported() -> None:
    x, y = vectors()
    with pytest.raises(KilomlError) as err:
        kiloml.convert(KNeighborsClassifier().fit(x, y))
    one_line(err.value, "KNeighborsClassifier", "supported:", "RandomForestClassifier",
             "LogisticRegression", "torch.nn.Module", ".onnx")
    for thing in ({"not": "a model"}, 42):
        with pytest.raises(KilomlError) as err:
            kiloml.convert(thing)
        one_line(err.value, type(thing).__qualname__, "supported:")
    with pytest.raises(KilomlError) as err:
        kiloml.convert("model.pkl")
    one_line(err.value, ".pkl", ".onnx and .tflite")


def test_an_unsupported_layer_names_it_and_what_is_supported() -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((16, 3)), keras.layers.LSTM(4),
                              keras.layers.Dense(2)])
    with pytest.raises(KilomlError) as err:
        kiloml.convert(model, calibration=np.zeros((2, 16, 3), F32))
    one_line(err.value, "LSTM", "supported:", "Conv1D", "Dense")
    torch = pytest.importorskip("torch")
    lstm = torch.nn.LSTM(3, 4, batch_first=True)

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.fc = lstm, torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])

    with pytest.raises(KilomlError) as err:
        kiloml.convert(Head(), calibration=np.zeros((2, 16, 3), F32))
    text = one_line(err.value, "torch Head (ONNX export)", "LSTM", "supported:", "Conv")
    assert "kiloml-torch-" not in text  # not the temporary file's name


@pytest.mark.parametrize(("calibration", "fragments"), [
    (np.zeros((5, 11), F32), ("calibration", "shape [5, 11]", "[N, 12]")),
    (np.zeros(12, F32), ("calibration", "[N, 12]")),
    (np.zeros((5, 12), np.int64), ("calibration", "int64", "floating-point")),
    (np.array([["a"] * 12] * 5), ("calibration", "dtype <U1")),
    (np.full((5, 12), np.nan, F32), ("calibration", "NaN")),
    (np.zeros((0, 12), F32), ("calibration", "no samples")),
])
def test_calibration_data_of_the_wrong_shape_or_dtype(calibration, fragments) -> None:
    x, y = vectors(f=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier((4,), max_iter=20, random_state=0).fit(x, y)
    with pytest.raises(KilomlError) as err:
        kiloml.convert(est, calibration=calibration)
    one_line(err.value, *fragments)


def test_a_float_model_without_calibration_data() -> None:
    x, y = vectors(f=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier((4,), max_iter=20, random_state=0).fit(x, y)
    for model in (est, FIXTURES / "mlp_float.tflite", FIXTURES / "cnn1d_torch.onnx"):
        with pytest.raises(KilomlError) as err:
            kiloml.convert(model)
        one_line(err.value, "float network", "calibration=")


def test_other_bad_arguments() -> None:
    x, y = vectors()
    est = LogisticRegression().fit(x, y)
    cases = [
        (dict(class_names=["a", "b"]), ("class_names", "2 names; the model has 3")),
        (dict(class_names=["a", "a", "b"]), ("class_names", "twice")),
        (dict(feature_names="abc"), ("feature_names", "a list of 10 names")),
        (dict(name="my model"), ("name", "not a library name")),
        (dict(target="cortex-m5"), ("target",)),
    ]
    for kwargs, fragments in cases:
        with pytest.raises(KilomlError) as err:
            kiloml.convert(est, **kwargs)
        one_line(err.value, *fragments)
    lib = kiloml.convert(est)
    for bad, fragment in [(x[0], "one input"), (x[:, :5], "[N, 10]"),
                          (np.array([["a"] * 10]), "dtype")]:
        with pytest.raises(KilomlError) as err:
            lib.predict(bad)
        one_line(err.value, fragment)


# --- docs/api.md ------------------------------------------------------------------------------


def test_docs_api_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of docs/api.md, in order, in one namespace (the docs' own
    asserts hold), in a temporary folder."""
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    write_toy_project(tmp_path)
    namespace: dict = {"__name__": "docs_api"}
    for i, block in enumerate(blocks):
        if "# not run" in block.splitlines()[0]:
            continue
        try:
            exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"docs/api.md block {i + 1} failed: {exc!r}\n{block}") from exc
