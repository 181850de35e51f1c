"""Post-training quantization: float models (converter-made .tflite and .onnx, kiloml's own)
-> int8 graphs that TFLM runs bit-exactly like kiloml, close to the float model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kiloml.nn.analysis import validate
from kiloml.nn.graph import Graph, Tensor
from kiloml.nn.load import load_model
from kiloml.nn.quantize import (
    choose_quantization,
    dequantize_output,
    prepare_float_graph,
    quantize_graph,
    quantize_input,
    quantize_weights,
)
from kiloml.nn.reference import Interpreter
from kiloml.nn.tflite_io import write_tflite

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

FIXTURES = Path(__file__).parent / "fixtures"
FLOAT_MODELS = ["mlp_float.tflite", "cnn1d_float.tflite", "dscnn_float.tflite",
                "cnn1d_torch.onnx", "cnn1d_keras.onnx", "mlp_sklearn.onnx"]


@pytest.mark.parametrize("name", FLOAT_MODELS)
@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_float_model_to_int8_is_tflm_exact_and_close_to_float(name: str, method: str) -> None:
    float_graph = load_model(FIXTURES / name)
    assert not float_graph.is_quantized
    shape = float_graph.input_tensors[0].shape
    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(128, *shape[1:])).astype(np.float32)
    int8 = quantize_graph(float_graph, [calibration], method=method)
    validate(int8)
    assert int8.is_quantized
    x = rng.normal(size=(40, *shape[1:])).astype(np.float32)
    xq = quantize_input(x, int8.input_tensors[0])
    got = Interpreter(int8).run([xq])[0]
    interpreter = runtime.Interpreter.from_bytes(write_tflite(int8), arena_size=1 << 20)
    for i in range(len(x)):
        interpreter.set_input(xq[i:i + 1], 0)
        interpreter.invoke()
        np.testing.assert_array_equal(got[i:i + 1].reshape(-1),
                                      interpreter.get_output(0).reshape(-1))
    want = Interpreter(float_graph).run([x])[0].reshape(len(x), -1)
    deq = dequantize_output(got, int8.output_tensors[0]).reshape(len(x), -1)
    step = int8.output_tensors[0].quant.s
    span = float(want.max() - want.min())
    # within a few output steps (random-weight fixtures give near-uniform softmax outputs)
    assert np.mean(np.abs(deq - want)) < max(0.05 * span, 2 * step), name
    if span > 20 * step:
        assert np.mean(deq.argmax(1) == want.argmax(1)) >= 0.8, name


def test_weights_are_symmetric_per_channel_and_bias_int32() -> None:
    rng = np.random.default_rng(3)
    g = Graph([], [], [], [])
    x = g.add_tensor(Tensor("x", (1, 4, 4, 2), "float32"))
    w = rng.normal(size=(3, 3, 3, 2)).astype(np.float32)
    w[1] *= 10  # channels with very different ranges
    wi = g.add_tensor(Tensor("w", w.shape, "float32", data=w))
    b = g.add_tensor(Tensor("b", (3,), "float32", data=np.array([0.5, -1.0, 2.0])))
    y = g.add_tensor(Tensor("y", (1, 4, 4, 3), "float32"))
    g.add_op("CONV_2D", [x, wi, b], [y], padding="SAME")
    r = g.add_tensor(Tensor("r", (1, 4, 4, 3), "float32"))
    g.add_op("RELU", [y], [r])
    g.inputs, g.outputs = [x], [r]
    fused = prepare_float_graph(g)
    assert [op.kind for op in fused.ops] == ["CONV_2D"]
    assert fused.ops[0].options["fused_activation"] == "RELU"
    q = quantize_graph(g, [rng.normal(size=(32, 4, 4, 2)).astype(np.float32)])
    wq = q.tensors[q.ops[0].inputs[1]]
    bq = q.tensors[q.ops[0].inputs[2]]
    assert wq.dtype == "int8" and wq.quant.axis == 0 and wq.quant.scale.size == 3
    assert np.all(wq.quant.zero_point == 0)
    np.testing.assert_allclose(wq.quant.scale, np.abs(w).reshape(3, -1).max(1) / 127, rtol=1e-6)
    assert np.abs(wq.data).max() == 127 and wq.data.min() >= -127
    x_scale = np.float32(q.input_tensors[0].quant.s)
    assert bq.dtype == "int32"
    np.testing.assert_array_equal(bq.quant.scale, (x_scale * wq.quant.scale).astype(np.float32))
    np.testing.assert_array_equal(bq.data, np.round(np.array([0.5, -1.0, 2.0])
                                                    / (x_scale * wq.quant.scale)))
    # the output range starts at 0 after the fused ReLU: zero point at -128
    assert q.output_tensors[0].quant.zp == -128


def test_depthwise_weights_per_channel_on_axis_3() -> None:
    w = np.random.default_rng(0).normal(size=(1, 3, 3, 8)).astype(np.float32)
    q, quant = quantize_weights(w, 3)
    assert quant.axis == 3 and quant.scale.size == 8
    assert np.array_equal(np.abs(q).max(axis=(0, 1, 2)), np.full(8, 127))
    np.testing.assert_allclose(quant.scale, np.abs(w).max(axis=(0, 1, 2)) / 127, rtol=1e-6)
    _, fc = quantize_weights(w.reshape(8, 9), None)
    assert fc.scale.size == 1


def test_calibration_methods_clip_outliers() -> None:
    rng = np.random.default_rng(0)
    g = Graph([], [], [], [])
    x = g.add_tensor(Tensor("x", (1, 16), "float32"))
    w = g.add_tensor(Tensor("w", (4, 16), "float32", data=rng.normal(size=(4, 16))))
    y = g.add_tensor(Tensor("y", (1, 4), "float32"))
    g.add_op("FULLY_CONNECTED", [x, w, -1], [y])
    g.inputs, g.outputs = [x], [y]
    data = rng.normal(size=(4000, 16)).astype(np.float32)
    data[0, 0] = 80.0  # one outlier
    scales = {m: quantize_graph(g, [data], method=m).input_tensors[0].quant.s
              for m in ("minmax", "percentile", "mse")}
    assert scales["percentile"] < scales["minmax"] / 5
    assert scales["mse"] < scales["minmax"]


def test_zero_is_exactly_representable() -> None:
    for lo, hi in [(-1.0, 3.0), (0.5, 2.0), (-4.0, -1.0), (0.0, 0.0), (-0.3, 1e-9)]:
        q = choose_quantization(lo, hi)
        assert -128 <= q.zp <= 127  # real 0 is the integer zp: zero padding is exact
        assert q.s * (-128 - q.zp) <= min(lo, 0.0) + q.s  # the range covers the data
        assert q.s * (127 - q.zp) >= max(hi, 0.0) - q.s
