"""kiloml.nn.validate: a loaded graph that no valid network can be fails at load, with one
line naming the operator or tensor, for every class of out-of-range content."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from kiloml.errors import KilomlError
from kiloml.nn.graph import Graph, Quantization, Tensor
from kiloml.nn.load import load_model
from kiloml.nn.tflite_io import write_tflite
from kiloml.nn.validate import ModelError, validate_graph
from tests.nn.test_tflite_io import (
    Q,
    act,
    g_conv,
    g_elementwise,
    g_fc,
    g_float,
    g_pad,
    g_pool_softmax,
    g_reduce,
    g_split_concat,
    patched,
)

FIXTURES = Path(__file__).parent / "fixtures"


def refused(g: Graph, *fragments: str) -> str:
    with pytest.raises(ModelError) as info:
        validate_graph(g)
    text = f"{info.value.where}: {info.value.message}"
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    assert "\n" not in text
    return text


def tensor(g: Graph, name: str) -> Tensor:
    return next(t for t in g.tensors if t.name == name)


def test_the_hand_built_graphs_and_converter_fixtures_pass() -> None:
    for make in (g_fc, g_conv, g_float, g_pad, g_pool_softmax, g_reduce, g_split_concat):
        validate_graph(make())
    for path in ("mlp_int8.tflite", "dscnn_int8.tflite", "ops_mix_int8.tflite",
                 "cnn1d_torch.onnx"):
        load_model(FIXTURES / path)


# ---- quantization parameters ---------------------------------------------------------

@pytest.mark.parametrize("scale", [-0.1, 0.0, 1e-40, 1e-30, float("nan"), float("inf"), 1e30])
def test_scales_out_of_range(scale: float) -> None:
    g = g_fc()
    tensor(g, "y").quant = Q(scale, 5)
    refused(g, "operator 0 FULLY_CONNECTED", "tensor 'y'", "scales must be finite")


@pytest.mark.parametrize("name, zp, fragment", [
    ("x", 128, "int8 zero points must be in [-128, 127]"),
    ("y", -129, "int8 zero points must be in [-128, 127]"),
    ("b", 3, "int32 zero points must be 0"),
    ("w", 4, "int8 weights are symmetric"),
])
def test_zero_points_out_of_range(name: str, zp: int, fragment: str) -> None:
    g = g_fc()
    t = tensor(g, name)
    t.quant = Q(t.quant.s, zp)
    refused(g, f"'{name}'" if name != "w" else "weights 'w'", fragment)


def test_per_channel_scales_must_match_the_channels() -> None:
    g = g_conv()
    w = tensor(g, "w")
    n = w.shape[0]
    w.quant = Quantization(np.full(n - 1, 0.01), np.zeros(n - 1), 0)
    refused(g, f"weights 'w' have {n - 1} scales", f"need {n} along dimension 0")
    w.quant = Quantization(np.full(w.shape[3], 0.01), np.zeros(w.shape[3]), 3)
    refused(g, f"{w.shape[3]} scales along dimension 3", f"need {n} along dimension 0")


def test_per_channel_quantization_only_on_weights() -> None:
    g = g_fc()
    x = tensor(g, "x")
    x.quant = Quantization(np.full(8, 0.05), np.zeros(8), 1)
    refused(g, "tensor 'x' is quantized per channel")


def test_quantized_dimension_outside_the_rank() -> None:
    g = g_conv()
    w = tensor(g, "w")
    w.quant = Quantization(w.quant.scale, w.quant.zero_point, 7)
    refused(g, "quantized dimension 7", "outside its rank 4")


def test_int8_tensor_without_quantization() -> None:
    g = g_fc()
    tensor(g, "y").quant = None
    refused(g, "tensor 'y' has no quantization parameters")


def test_requantization_shift_beyond_tflm() -> None:
    g = g_fc()
    w = tensor(g, "w")
    w.quant = Q(1e12, 0)  # x scale x weight scale / y scale ~ 5e11: a left shift of 39
    refused(g, "needs a shift of", "at most 30")


def test_int8_softmax_and_logistic_scale_limits() -> None:
    g = g_pool_softmax()
    soft = next(op for op in g.ops if op.kind == "SOFTMAX")
    soft.options["beta"] = 1e-9  # beta x scale x 2^26 < 1: TFLM's Prepare aborts
    refused(g, "SOFTMAX", "TFLM's int8 softmax needs it in (1, 2^31)")
    g2 = Graph([], [], [], [])
    a = act(g2, "a", (1, 4), 2.0 ** -30, 0)
    y = act(g2, "y", (1, 4), 1 / 256, -128)
    g2.add_op("LOGISTIC", [a], [y])
    g2.inputs, g2.outputs = [a], [y]
    refused(g2, "operator 0 LOGISTIC", "input scale", "[2^-28, 8)")


def test_copying_kernels_need_equal_quantization() -> None:
    g = g_pool_softmax()
    pool = next(op for op in g.ops if op.kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"))
    y = g.tensors[pool.outputs[0]]
    y.quant = Q(y.quant.s * 2, y.quant.zp)
    refused(g, pool.kind, "needs the same scale and zero point")


# ---- operator options and parameters ---------------------------------------------------

@pytest.mark.parametrize("beta", [1e30, 0.0, -1.0, float("nan"), float("inf")])
def test_softmax_beta_out_of_range(beta: float) -> None:
    g = g_float()
    next(op for op in g.ops if op.kind == "SOFTMAX").options["beta"] = beta
    refused(g, "SOFTMAX", "softmax beta", "(0, 1e+06]")


@pytest.mark.parametrize("key", ["stride_h", "stride_w", "dilation_h", "dilation_w"])
@pytest.mark.parametrize("value", [0, -1])
def test_strides_and_dilations_at_least_one(key: str, value: int) -> None:
    g = g_conv()
    g.ops[0].options[key] = value
    refused(g, "operator 0 CONV_2D", f"{key} = {value}", "at least 1")


def test_dilated_filter_far_beyond_the_input() -> None:
    g = g_conv()
    g.ops[0].options.update(padding="SAME", dilation_w=1 << 20)
    refused(g, "the filter spans", "corrupt filter size or dilation")


def test_kernel_larger_than_the_padded_input() -> None:
    g = g_conv()
    x = tensor(g, "x")
    g.ops[0].options["padding"] = "VALID"
    w = tensor(g, "w")
    w.shape = (w.shape[0], x.shape[1] + 1, w.shape[2], w.shape[3])
    w.data = np.zeros(w.shape, np.int8)
    refused(g, "does not fit")


@pytest.mark.parametrize("make, op_kind, mutate, fragment", [
    (g_split_concat, "CONCATENATION", lambda op: op.options.update(axis=7),
     "axis 7 is outside the input's rank"),
    (g_reduce, "MEAN", None, "reduction axis 9 is outside"),
])
def test_axes_beyond_the_rank(make: Callable[[], Graph], op_kind: str, mutate, fragment: str
                              ) -> None:
    g = make()
    op = next(op for op in g.ops if op.kind == op_kind)
    if mutate is not None:
        mutate(op)
    else:
        g.tensors[op.inputs[1]].data = np.array([9], np.int32)
        g.tensors[op.inputs[1]].shape = (1,)
    refused(g, op_kind, fragment)


def test_split_axis_beyond_the_rank() -> None:
    g = g_split_concat()
    op = next(op for op in g.ops if op.kind == "SPLIT")
    g.tensors[op.inputs[0]].data = np.array(4, np.int32).reshape(g.tensors[op.inputs[0]].shape)
    refused(g, "SPLIT", "split axis 4 is outside")


def test_paddings_negative_or_misshaped() -> None:
    g = g_pad()
    op = next(op for op in g.ops if op.kind == "PAD")
    pads = g.tensors[op.inputs[1]]
    pads.data = -np.abs(pads.data) - 1
    refused(g, "PAD", "are negative")
    pads.data = np.zeros(3, np.int32)
    pads.shape = (3,)
    refused(g, "PAD", "do not fit an input of rank")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_float_constants(value: float) -> None:
    g = g_float()
    w = tensor(g, "w")
    w.data = w.data.copy()
    w.data[1, 2] = value
    refused(g, "tensor", "'w'", "index [1, 2]", "must be finite")


def test_dtype_signatures() -> None:
    g = g_fc()
    b = tensor(g, "b")
    b.dtype, b.data, b.quant = "float32", b.data.astype(np.float32), None
    refused(g, "FULLY_CONNECTED", "int32 bias")
    g = g_fc()
    tensor(g, "y").dtype = "int16"
    refused(g, "do not fit FULLY_CONNECTED")


def test_bias_length_must_match_the_channels() -> None:
    g = g_fc()
    b = tensor(g, "b")
    b.data, b.shape = b.data[:3].copy(), (3,)
    refused(g, "bias 'b' has shape [3]; [4] is needed")


def test_graph_output_must_be_computed() -> None:
    g = g_fc()
    g.outputs = [g.tensors.index(tensor(g, "w"))]
    refused(g, "graph output 0 ('w') is a constant")


def test_tensor_element_bounds() -> None:
    g = g_fc()
    tensor(g, "x").shape = (1, 1 << 25)
    refused(g, "tensor", "'x'", "33,554,432 elements")


# ---- through load_model: one line with the file and the place ----------------------------

def test_load_model_reports_the_file_and_the_operator(tmp_path: Path) -> None:
    def bad_scale(model: schema.ModelT) -> None:
        sub = model.subgraphs[0]
        t = next(t for t in sub.tensors if t.name == b"y")
        t.quantization.scale = np.array([-1.0], np.float32)

    path = tmp_path / "bad.tflite"
    path.write_bytes(patched(write_tflite(g_fc()), bad_scale))
    with pytest.raises(KilomlError) as info:
        load_model(path)
    text = str(info.value)
    assert text.startswith(f"{path}: operator 0 FULLY_CONNECTED (output 'y'): ")
    assert "scale -1" in text and "\n" not in text


def test_validation_does_not_change_the_graph() -> None:
    g = g_conv()
    before = copy.deepcopy(g)
    validate_graph(g)
    assert [t.shape for t in g.tensors] == [t.shape for t in before.tensors]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(g.tensors, before.tensors,
                                                               strict=True) if a.is_constant)


def test_parameters_tflm_ignores_are_not_checked() -> None:
    """Quantization on float tensors and int32 shape tensors is ignored by TFLM: a converter
    leaving one there does not make a model invalid."""
    g = g_float()
    tensor(g, "w").quant = Q(float("nan"), 0)
    validate_graph(g)
    g = g_pad()
    pad = next(op for op in g.ops if op.kind == "PAD")
    g.tensors[pad.inputs[1]].quant = Q(0.0, 7)
    validate_graph(g)


def test_counts_tflm_trusts() -> None:
    g = g_split_concat()
    unpack = next(op for op in g.ops if op.kind == "UNPACK")
    unpack.options["num"] = 5
    refused(g, "UNPACK", "num = 5 for 2 outputs")


def test_expand_dims_axis_must_give_the_output_shape() -> None:
    g = g_elementwise()
    op = next(op for op in g.ops if op.kind == "EXPAND_DIMS")
    g.tensors[op.inputs[1]].data = np.array(9, np.int32)
    refused(g, "EXPAND_DIMS", "axis 9 is outside")
    g.tensors[op.inputs[1]].data = np.array(0, np.int32)
    refused(g, "EXPAND_DIMS", "inserting an axis at 0")


def test_int8_concatenation_has_no_fused_activation() -> None:
    g = g_split_concat()
    next(op for op in g.ops if op.kind == "CONCATENATION").options["fused_activation"] = "RELU"
    refused(g, "CONCATENATION", "TFLM supports none")


def test_an_operator_on_constants_alone_runs_in_batches() -> None:
    """A FULLY_CONNECTED whose input is a constant (a folded zero state, or a hostile
    file) beside one on the input: a batch equals its samples run one at a time (the
    constant op has one sample whatever the batch; this was a RuntimeError)."""
    from kiloml.nn.reference import Interpreter
    from tests.nn.test_tflite_io import const, int8_weights

    g = g_fc()
    zero = const(g, "h0", np.zeros((1, 8), np.int8), "int8", Q(0.1, 5))
    w2 = const(g, "w2", int8_weights((4, 8)), "int8", Q(0.01, 0))
    h = g.tensors.index(tensor(g, "y"))
    hy = len(g.tensors)
    g.tensors.append(Tensor("hy", (1, 4), "int8", Q(0.1, 5)))
    g.add_op("FULLY_CONNECTED", [zero, w2, -1], [hy])
    out = len(g.tensors)
    g.tensors.append(Tensor("sum", (1, 4), "int8", Q(0.2, 0)))
    g.add_op("ADD", [h, hy], [out])
    g.outputs = [out]
    validate_graph(g)
    it = Interpreter(g)
    batch = np.random.default_rng(3).integers(-128, 128, size=(6, 8)).astype(np.int8)
    together = it.run([batch])[0]
    alone = np.concatenate([it.run([batch[i:i + 1]])[0] for i in range(6)])
    assert np.array_equal(together, alone) and together.shape == (6, 4)
