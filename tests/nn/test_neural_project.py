"""Neural networks in a project: train or import, quantize, evaluate, export, prove with TFLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kiloml.nn.graph import Graph, Tensor
from kiloml.nn.tflite_io import write_tflite
from tests.conftest import CsvProject, assert_user_error, run_cli

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

TREE_MODEL = '''[model]
kind = "random_forest"
n_estimators = 5
max_depth = 6
'''


def use_model(project: CsvProject, text: str, features: bool = True) -> None:
    toml = project.toml.read_text().replace(TREE_MODEL, text)
    if not features:
        toml = toml.replace('[[features]]\nstage = "statistics"\n', "")
    toml = toml.replace("cv_folds = 3", "cv_folds = 0")
    project.toml.write_text(toml)


def metrics(project: CsvProject) -> dict:
    return json.loads((project.out / "metrics.json").read_text())


def test_cnn1d_on_raw_windows(csv_project: CsvProject) -> None:
    use_model(csv_project, '[model]\nkind = "cnn1d"\nfilters = [8, 8]\nepochs = 40\n'
                           'learning_rate = 0.01\nvalidation_groups = 1\n', features=False)
    result = run_cli("run", str(csv_project.toml))
    assert result.exit_code == 0, result.stderr
    m = metrics(csv_project)
    n = m["neural"]
    assert m["model"]["kind"] == "cnn1d" and m["model"]["reads"] == "window"
    assert m["model"]["input_shape"] == [50, 3]
    assert n["training"]["epochs_run"] >= 1 and n["training"]["best_epoch"] >= 1
    assert n["tflm_parity"]["all_bit_exact"] and n["tflm_parity"]["n"] == \
        m["evaluation"]["n_test_windows"]
    # the toy classes differ by their dominant frequency: both models must find it
    assert n["float_accuracy"] > 0.6 and n["int8_accuracy"] > 0.6
    assert abs(n["int8_minus_float_points"]) <= 10
    assert [layer["op"] for layer in n["layers"]][-1] == "SOFTMAX"
    # the network is compiled into the C library and proven on the host and the M4
    for where in ("host", "cortex-m4f"):
        p = m["parity"][where]
        assert p["all_decisions_equal"] and p["streaming"]["all_decisions_equal"], where
        assert p["max_abs_score_diff"] == 0.0, where
    assert n["arena_bytes"] >= n["arena_lower_bound_bytes"] > 0 or \
        n["planner"]["outputs_over_inputs"] > 0
    conv = [layer for layer in n["layers"] if layer["op"] == "CONV_2D"]
    assert conv and all(layer["instructions"] > 0 for layer in conv)
    assert (csv_project.out / "firmware" / "kml_nn.c").exists()
    # the exported int8 model runs in TFLM and says what the metrics say
    interpreter = runtime.Interpreter.from_file(str(csv_project.out / "model.tflite"),
                                                arena_size=1 << 20)
    details = interpreter.get_input_details(0)
    assert list(details["shape"]) == [1, 50, 3] and details["dtype"] == np.int8
    report = (csv_project.out / "report.html").read_text()
    assert "Neural network" in report and "TFLM interpreter" in report
    assert "instructions / MAC" in report
    # SOFTMAX has no DSP fast path: the report says it runs the portable kernel
    assert any("kml_softmax_s8" in note for note in n["notes"])
    assert "no DSP fast path" in report and "kml_softmax_s8" in report
    assert "float / int8" in result.stdout and "bit-exact" in result.stdout
    # a network run's saved reference reads back: `kiloml verify` proves it again (its
    # float32 stream probabilities were refused as "expected float64")
    again = run_cli("verify", str(csv_project.toml))
    assert again.exit_code == 0, again.stderr


def test_mlp_on_features(csv_project: CsvProject) -> None:
    use_model(csv_project, '[model]\nkind = "mlp"\nhidden = [16]\nepochs = 20\n'
                           'validation_groups = 1\ncalibration = "percentile"\n')
    result = run_cli("run", str(csv_project.toml))
    assert result.exit_code == 0, result.stderr
    m = metrics(csv_project)
    assert m["model"]["reads"] == "features"
    assert m["model"]["input_shape"] == [m["features"]["n"]]
    assert m["model"]["calibration"] == "percentile"
    assert m["neural"]["tflm_parity"]["all_bit_exact"]
    assert m["neural"]["int8_accuracy"] > 0.6


def float_model(n_in: int, n_classes: int) -> Graph:
    rng = np.random.default_rng(0)
    g = Graph([], [], [], [], name="user_mlp")
    x = g.add_tensor(Tensor("x", (1, n_in), "float32"))
    w = g.add_tensor(Tensor("w", (n_classes, n_in), "float32",
                            data=rng.normal(size=(n_classes, n_in))))
    b = g.add_tensor(Tensor("b", (n_classes,), "float32", data=np.zeros(n_classes)))
    h = g.add_tensor(Tensor("logits", (1, n_classes), "float32"))
    g.add_op("FULLY_CONNECTED", [x, w, b], [h])
    y = g.add_tensor(Tensor("p", (1, n_classes), "float32"))
    g.add_op("SOFTMAX", [h], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def test_imported_float_tflite_is_quantized_and_checked(csv_project: CsvProject) -> None:
    # statistics on 3 channels: the toy project's feature count, read from a first run
    use_model(csv_project, '[model]\nkind = "imported"\npath = "user.tflite"\n')
    (csv_project.root / "user.tflite").write_bytes(write_tflite(float_model(5, 3)))
    line = assert_user_error(run_cli("run", str(csv_project.toml)), "user.tflite",
                             "model input 'x' has shape [1, 5]")
    n_features = int(line.split("features are [1, ")[1].split("]")[0])
    (csv_project.root / "user.tflite").write_bytes(write_tflite(float_model(n_features, 3)))
    result = run_cli("run", str(csv_project.toml))
    assert result.exit_code == 0, result.stderr
    m = metrics(csv_project)
    assert m["model"]["kind"] == "imported" and m["model"]["calibration"] == "minmax"
    assert m["neural"]["tflm_parity"]["all_bit_exact"]
    assert "training" not in m["neural"]


def test_imported_model_with_the_wrong_number_of_classes(csv_project: CsvProject) -> None:
    use_model(csv_project, '[model]\nkind = "imported"\npath = "mlp.tflite"\n')
    fixture = Path(__file__).parent / "fixtures" / "mlp_int8.tflite"
    (csv_project.root / "mlp.tflite").write_bytes(fixture.read_bytes())
    assert_user_error(run_cli("run", str(csv_project.toml)), "mlp.tflite",
                      "model input", "has shape [1, 24]")
    assert not csv_project.out.exists()


def test_model_configuration_errors(csv_project: CsvProject) -> None:
    use_model(csv_project, '[model]\nkind = "cnn1d"\nepochs = 2\n')
    assert_user_error(run_cli("run", str(csv_project.toml)), "kiloml.toml",
                      "reads the raw window", "[[features]]")
    use_model(csv_project, '[model]\nkind = "dscnn"\nepochs = 2\n')
    csv_project.set_toml('[model]\nkind = "cnn1d"\nepochs = 2\n', '[model]\nkind = "dscnn"\n')
    assert_user_error(run_cli("run", str(csv_project.toml)), "kiloml.toml",
                      "dscnn reads a time-frequency image")
    csv_project.set_toml('[model]\nkind = "dscnn"\n', '[model]\nkind = "imported"\n')
    assert_user_error(run_cli("run", str(csv_project.toml)), "kiloml.toml",
                      "needs path")
    csv_project.set_toml('[model]\nkind = "imported"\n', '[model]\nkind = "mlp"\nhiden = [4]\n')
    assert_user_error(run_cli("run", str(csv_project.toml)), "kiloml.toml:",
                      "unknown key 'hiden'", "did you mean 'hidden'")
    assert not csv_project.out.exists()
