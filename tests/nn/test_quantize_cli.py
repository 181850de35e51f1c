"""`kiloml model quantize` and `kiloml model compile --calibration`: float .onnx / .tflite
models to TFLite-spec int8, what quantization cost, and every bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kiloml.errors import KilomlError
from kiloml.nn.load import load_model
from kiloml.nn.quantize import check_calibration, quantize_graph, quantize_input
from kiloml.nn.reference import Interpreter
from tests.conftest import assert_user_error, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
TORCH_CNN = FIXTURES / "cnn1d_torch.onnx"   # input [N, 6, 128] (channels first)
MLP_FLOAT = FIXTURES / "mlp_float.tflite"   # input [1, 24], 7 classes, softmax
MLP_INT8 = FIXTURES / "mlp_int8.tflite"


def save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def windows(n: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 6, 128)).astype(np.float32)


def test_quantize_an_onnx_cnn_keeps_its_input_layout_and_runs_in_tflm(tmp_path: Path) -> None:
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    x = save(tmp_path / "x.npy", windows())
    out = tmp_path / "cnn_int8.tflite"
    result = run_cli("model", "quantize", str(TORCH_CNN), "--calibration", str(x),
                     "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert "int8 arg-max equals float on" in result.stdout
    assert "calibrated     48 samples (minmax)" in result.stdout
    graph = load_model(out)
    assert graph.is_quantized
    t_in = graph.input_tensors[0]
    assert t_in.shape == (1, 6, 128) and t_in.name == "x"  # as the ONNX model declares
    # the written model runs in TFLM, bit-exact with kiloml's reference
    xq = quantize_input(np.load(x)[:6], t_in)
    want = Interpreter(graph).run([xq])[0]
    interpreter = runtime.Interpreter.from_file(str(out), arena_size=1 << 20)
    for i in range(len(xq)):
        interpreter.set_input(xq[i:i + 1], 0)
        interpreter.invoke()
        np.testing.assert_array_equal(interpreter.get_output(0).reshape(-1), want[i])


def test_quantize_with_labels_prints_float_and_int8_accuracy(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 24)).astype(np.float32)
    labels = Interpreter(load_model(MLP_FLOAT)).run([x])[0].argmax(1)  # float = 1.0
    out = tmp_path / "mlp_int8.tflite"
    result = run_cli("model", "quantize", str(MLP_FLOAT), "--calibration",
                     str(save(tmp_path / "x.npy", x)), "--labels",
                     str(save(tmp_path / "y.npy", labels)), "--out", str(out),
                     "--method", "percentile", "--percentile", "99.9")
    assert result.exit_code == 0, result.stderr
    line = next(s for s in result.stdout.splitlines() if s.startswith("float / int8"))
    assert "1.0000 / " in line and "points from quantization" in line
    int8_acc = float(line.split(" / ")[2].split()[0])
    agreement = float(result.stdout.split("equals float on ")[1].split("%")[0]) / 100
    assert abs(int8_acc - agreement) < 1e-4  # labels are the float arg-max here
    assert int8_acc > 0.8


@pytest.mark.parametrize("make, fragments", [
    (lambda: windows().transpose(0, 2, 1).copy(), ["x.npy", "shape [48, 128, 6]",
                                                    "needs [N, 6, 128]"]),
    (lambda: windows().astype(np.float64), ["x.npy", "dtype float64", "is float32"]),
    (lambda: (windows() * 10).astype(np.int8), ["x.npy", "dtype int8", "is float32"]),
    (lambda: np.zeros((0, 6, 128), np.float32), ["x.npy", "hold no samples"]),
    (lambda: np.where(np.arange(6 * 128).reshape(1, 6, 128) == 5, np.nan,
                      windows(1)).astype(np.float32), ["x.npy", "is not finite", "[0, 0, 5]"]),
])
def test_bad_calibration_data_is_one_line(tmp_path: Path, make, fragments) -> None:
    x = save(tmp_path / "x.npy", make())
    out = tmp_path / "q.tflite"
    assert_user_error(run_cli("model", "quantize", str(TORCH_CNN), "--calibration", str(x),
                              "--out", str(out)), *fragments)
    assert not out.exists()


def test_bad_labels_and_options_are_one_line(tmp_path: Path) -> None:
    x = save(tmp_path / "x.npy", np.zeros((10, 24), np.float32))
    out = tmp_path / "q.tflite"

    def quantize(*extra: str):
        return run_cli("model", "quantize", str(MLP_FLOAT), "--calibration", str(x),
                       "--out", str(out), *extra)

    for labels, fragment in ((np.zeros(9, np.int64), "[10] labels are needed"),
                             (np.zeros(10, np.float32), "dtype float32; integer class"),
                             (np.full(10, 7), "the model has 7 outputs")):
        y = save(tmp_path / "y.npy", labels)
        assert_user_error(quantize("--labels", str(y)), "y.npy", fragment)
    assert_user_error(quantize("--method", "median"), "--method", "minmax, percentile, mse")
    assert_user_error(quantize("--percentile", "20"), "--percentile")
    assert not out.exists()
    assert_user_error(run_cli("model", "quantize", str(MLP_FLOAT), "--calibration", str(x),
                              "--out", str(tmp_path / "q.bin")), ".tflite")
    assert_user_error(run_cli("model", "quantize", str(MLP_FLOAT), "--calibration", str(x),
                              "--out", str(x)), "the calibration file")
    assert_user_error(run_cli("model", "quantize", str(MLP_INT8), "--calibration", str(x),
                              "--out", str(out)), "mlp_int8.tflite", "int8 already")
    assert not out.exists()


def test_quantize_without_calibration_data_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "q.tflite"
    assert_user_error(run_cli("model", "quantize", str(MLP_FLOAT), "--out", str(out)),
                      "Missing option '--calibration'")
    assert_user_error(run_cli("model", "quantize", str(MLP_FLOAT), "--calibration",
                              str(tmp_path / "none.npy"), "--out", str(out)),
                      "none.npy", "not found")
    assert not out.exists()


def test_compile_a_float_model_needs_calibration(tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert_user_error(run_cli("model", "compile", str(TORCH_CNN), "--target", "host",
                              "--out", str(out)),
                      "cnn1d_torch.onnx", "the model is float32", "--calibration X.npy")
    x = save(tmp_path / "x.npy", np.zeros((4, 24), np.float32))
    assert_user_error(run_cli("model", "compile", str(MLP_INT8), "--target", "host",
                              "--out", str(out), "--calibration", str(x)),
                      "mlp_int8.tflite", "int8 already")
    bad = save(tmp_path / "bad.npy", np.zeros((4, 128, 6), np.float32))
    assert_user_error(run_cli("model", "compile", str(TORCH_CNN), "--target", "host",
                              "--out", str(out), "--calibration", str(bad)),
                      "bad.npy", "needs [N, 6, 128]")
    assert not out.exists()


def test_compile_a_float_onnx_model_with_calibration(tmp_path: Path) -> None:
    out = tmp_path / "c"
    x = save(tmp_path / "x.npy", windows(32))
    result = run_cli("model", "compile", str(TORCH_CNN), "--target", "cortex-m4f",
                     "--out", str(out), "--calibration", str(x))
    assert result.exit_code == 0, result.stderr
    r = json.loads((out / "resources.json").read_text())
    assert r["parity"]["host"]["bit_exact"] == r["parity"]["host"]["n"] > 0
    assert r["parity"]["cortex-m4f"]["bit_exact"] == r["parity"]["cortex-m4f"]["n"]
    assert r["quantized"]["calibration_samples"] == 32
    assert r["quantized"]["model_file"] == "model_int8.tflite"
    assert load_model(out / "model_int8.tflite").is_quantized
    assert "quantized      " in result.stdout


def test_quantize_graph_checks_its_calibration_arrays() -> None:
    graph = load_model(MLP_FLOAT)
    with pytest.raises(KilomlError, match=r"shape \[5, 23\]; the model input .* needs "
                                          r"\[N, 24\]"):
        quantize_graph(graph, [np.zeros((5, 23), np.float32)])
    with pytest.raises(KilomlError, match="dtype int64"):
        quantize_graph(graph, [np.zeros((5, 24), np.int64)])
    with pytest.raises(KilomlError, match="2 calibration arrays for a model with 1 inputs"):
        quantize_graph(graph, [np.zeros((5, 24))] * 2)
    with pytest.raises(KilomlError, match="not finite"):
        check_calibration(graph, [np.full((2, 24), np.inf)])
    # float64 arrays are taken (as float32), one array without a list too
    assert check_calibration(graph, np.ones((3, 24)))[0].dtype == np.float32
    assert quantize_graph(graph, [np.ones((3, 24))]).is_quantized
