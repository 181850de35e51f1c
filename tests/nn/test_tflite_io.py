"""TFLite import / export: round trips, the TFLM interpreter runs what we write,
constant folding of converter shape code, and one clear error per bad model."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from tflite_micro.python.tflite_micro import runtime
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from kiloml.errors import KilomlError
from kiloml.nn.graph import SUPPORTED_OPS, Graph, Op, Quantization, Tensor
from kiloml.nn.tflite_io import parse_tflite, read_tflite, write_tflite

FIXTURES = Path(__file__).parent / "fixtures"
RNG = np.random.default_rng(7)
Q = Quantization.per_tensor


def act(g: Graph, name: str, shape: tuple[int, ...], scale: float = 0.05, zp: int = -3,
        dtype: str = "int8") -> int:
    quant = Q(scale, zp) if dtype in ("int8", "int16", "uint8") else None
    return g.add_tensor(Tensor(name, shape, dtype, quant))


def const(g: Graph, name: str, data: object, dtype: str, quant: Quantization | None = None) -> int:
    arr = np.asarray(data, dtype=dtype)
    return g.add_tensor(Tensor(name, arr.shape, dtype, quant, arr))


def int8_weights(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(-127, 128, size=shape).astype(np.int8)


def per_channel(n: int, axis: int) -> Quantization:
    return Quantization(np.linspace(0.002, 0.01, n), np.zeros(n), axis)


# ---------------------------------------------------------------------------
# hand-built graphs (IR)
# ---------------------------------------------------------------------------

def g_fc() -> Graph:
    g = Graph([], [], [], [], name="fc", description="fully connected")
    x = act(g, "x", (1, 8))
    w = const(g, "w", int8_weights((4, 8)), "int8", Q(0.01, 0))
    b = const(g, "b", [100, -200, 300, 0], "int32", Q(0.05 * 0.01, 0))
    y = act(g, "y", (1, 4), 0.1, 5)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y], fused_activation="RELU")
    g.inputs, g.outputs = [x], [y]
    return g


def g_fc_no_bias() -> Graph:
    g = Graph([], [], [], [], name="fc_nobias", description="d")
    x = act(g, "x", (1, 8))
    w = const(g, "w", int8_weights((3, 8)), "int8", Q(0.01, 0))
    y = act(g, "y", (1, 3), 0.1, 0)
    g.add_op("FULLY_CONNECTED", [x, w, -1], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def g_conv() -> Graph:
    g = Graph([], [], [], [], name="conv", description="per-channel conv")
    x = act(g, "x", (1, 6, 5, 2))
    w = const(g, "w", int8_weights((3, 3, 3, 2)), "int8", per_channel(3, 0))
    bq = Quantization(0.05 * per_channel(3, 0).scale, np.zeros(3), 0)
    b = const(g, "b", [10, -20, 30], "int32", bq)
    y = act(g, "y", (1, 3, 5, 3), 0.08, -10)
    g.add_op("CONV_2D", [x, w, b], [y], padding="SAME", stride_h=2, stride_w=1,
             fused_activation="RELU6")
    g.inputs, g.outputs = [x], [y]
    return g


def g_depthwise() -> Graph:
    g = Graph([], [], [], [], name="dw", description="depthwise")
    x = act(g, "x", (1, 5, 5, 2))
    w = const(g, "w", int8_weights((1, 3, 3, 4)), "int8", per_channel(4, 3))
    bq = Quantization(0.05 * per_channel(4, 3).scale, np.zeros(4), 0)
    b = const(g, "b", [1, 2, 3, 4], "int32", bq)
    y = act(g, "y", (1, 3, 3, 4), 0.1, 2)
    g.add_op("DEPTHWISE_CONV_2D", [x, w, b], [y], depth_multiplier=2, dilation_h=1)
    g.inputs, g.outputs = [x], [y]
    return g


def g_pool_softmax() -> Graph:
    g = Graph([], [], [], [], name="pool", description="pools, reshape, softmax")
    x = act(g, "x", (1, 4, 4, 3))
    a = act(g, "avg", (1, 2, 2, 3))
    m = act(g, "max", (1, 1, 1, 3))
    g.add_op("AVERAGE_POOL_2D", [x], [a], filter_h=2, filter_w=2, stride_h=2, stride_w=2)
    g.add_op("MAX_POOL_2D", [a], [m], filter_h=2, filter_w=2, padding="SAME", stride_h=2,
             stride_w=2)
    shape = const(g, "shape", [1, 3], "int32")
    r = act(g, "flat", (1, 3))
    g.add_op("RESHAPE", [m, shape], [r])
    s = act(g, "probs", (1, 3), 1 / 256, -128)
    g.add_op("SOFTMAX", [r], [s], beta=1.0)
    g.inputs, g.outputs = [x], [s]
    return g


def g_reduce() -> Graph:
    g = Graph([], [], [], [], name="reduce", description="mean and max")
    x = act(g, "x", (1, 4, 4, 3))
    axes = const(g, "axes", [1, 2], "int32")
    mean = act(g, "mean", (1, 3), 0.05, -3)
    mx = act(g, "max", (1, 1, 1, 3), 0.05, -3)
    g.add_op("MEAN", [x, axes], [mean])
    g.add_op("REDUCE_MAX", [x, axes], [mx], keep_dims=True)
    g.inputs, g.outputs = [x], [mean, mx]
    return g


def g_split_concat() -> Graph:
    g = Graph([], [], [], [], name="split", description="split, concat, unpack")
    x = act(g, "x", (1, 6))
    axis = const(g, "axis", 1, "int32")
    parts = [act(g, f"part{i}", (1, 2)) for i in range(3)]
    g.add_op("SPLIT", [axis, x], parts, num_splits=3)
    cat = act(g, "cat", (1, 4))
    g.add_op("CONCATENATION", [parts[2], parts[0]], [cat], axis=1)
    y = act(g, "y", (2, 3))
    g.add_op("RESHAPE", [x], [y])  # one input: the writer adds the shape tensor
    rows = [act(g, f"row{i}", (3,)) for i in range(2)]
    g.add_op("UNPACK", [y], rows, num=2, axis=0)
    g.inputs, g.outputs = [x], [cat, rows[1]]
    return g


def g_pad() -> Graph:
    g = Graph([], [], [], [], name="pad", description="pad and padv2")
    x = act(g, "x", (1, 2, 3, 2))
    pads = const(g, "pads", [[0, 0], [1, 0], [0, 2], [0, 0]], "int32")
    p = act(g, "p", (1, 3, 5, 2))
    g.add_op("PAD", [x, pads], [p])
    fill = const(g, "fill", [7], "int8", Q(0.05, -3))
    p2 = act(g, "p2", (1, 4, 7, 2))
    g.add_op("PAD", [p, pads, fill], [p2])
    g.inputs, g.outputs = [x], [p2]
    return g


def g_elementwise() -> Graph:
    g = Graph([], [], [], [], name="elementwise", description="add, mul, activations")
    a = act(g, "a", (1, 4, 3), 0.05, -3)
    b = act(g, "b", (1, 4, 3), 0.02, 4)
    s = act(g, "sum", (1, 4, 3), 0.07, 0)
    g.add_op("ADD", [a, b], [s], fused_activation="RELU")
    m = act(g, "prod", (1, 4, 3), 0.004, -2)
    g.add_op("MUL", [s, b], [m])
    sig = act(g, "sig", (1, 4, 3), 1 / 256, -128)
    g.add_op("LOGISTIC", [m], [sig])
    th = act(g, "tanh", (1, 4, 3), 1 / 128, 0)
    g.add_op("TANH", [sig], [th])
    r = act(g, "relu", (1, 4, 3), 1 / 128, 0)
    g.add_op("RELU", [th], [r])
    r6 = act(g, "relu6", (1, 4, 3), 1 / 128, 0)
    g.add_op("RELU6", [r], [r6])
    e = act(g, "expanded", (1, 4, 1, 3), 1 / 128, 0)
    g.add_op("EXPAND_DIMS", [r6, const(g, "dim", 2, "int32")], [e])
    sq = act(g, "squeezed", (1, 4, 3), 1 / 128, 0)
    g.add_op("SQUEEZE", [e], [sq], squeeze_dims=(2,))
    g.inputs, g.outputs = [a, b], [sq]
    return g


def g_boundary() -> Graph:
    g = Graph([], [], [], [], name="boundary", description="float in, int8 body, float out")
    x = act(g, "x", (1, 8), dtype="float32")
    xq = act(g, "xq", (1, 8), 0.02, 1)
    g.add_op("QUANTIZE", [x], [xq])
    w = const(g, "w", int8_weights((4, 8)), "int8", Q(0.01, 0))
    yq = act(g, "yq", (1, 4), 0.1, 0)
    g.add_op("FULLY_CONNECTED", [xq, w, -1], [yq])
    y = act(g, "y", (1, 4), dtype="float32")
    g.add_op("DEQUANTIZE", [yq], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def g_float() -> Graph:
    g = Graph([], [], [], [], name="float", description="float32 model")
    x = act(g, "x", (1, 5), dtype="float32")
    w = const(g, "w", RNG.normal(size=(3, 5)), "float32")
    b = const(g, "b", [0.5, -0.5, 0.0], "float32")
    h = act(g, "h", (1, 3), dtype="float32")
    g.add_op("FULLY_CONNECTED", [x, w, b], [h], fused_activation="RELU")
    y = act(g, "y", (1, 3), dtype="float32")
    g.add_op("SOFTMAX", [h], [y], beta=0.5)
    g.inputs, g.outputs = [x], [y]
    return g


def g_slicing() -> Graph:
    g = Graph([], [], [], [], name="slicing", description="strided slice, slice, transpose")
    x = act(g, "x", (1, 4, 6))
    perm = const(g, "perm", [0, 2, 1], "int32")
    t = act(g, "t", (1, 6, 4))
    g.add_op("TRANSPOSE", [x, perm], [t])
    begin, end, strides = (const(g, n, v, "int32") for n, v in
                           (("begin", [0, 1, 0]), ("end", [1, 5, 3]), ("strides", [1, 2, 1])))
    s = act(g, "s", (1, 2, 3))
    g.add_op("STRIDED_SLICE", [t, begin, end, strides], [s], begin_mask=1)
    b2, size = const(g, "b2", [0, 1, 1], "int32"), const(g, "size", [1, -1, 2], "int32")
    y = act(g, "y", (1, 1, 2))
    g.add_op("SLICE", [s, b2, size], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def g_recurrent() -> Graph:
    """What unrolled RNNs add: SUB (a GRU's 1 - z, from a constant) and PACK of states."""
    g = Graph([], [], [], [], name="recurrent", description="sub, pack")
    z = act(g, "z", (1, 4), 1 / 256, -128)
    one = const(g, "one", np.array(127), "int8", Q(1 / 255, -128))
    keep = act(g, "keep", (1, 4), 1 / 255, -128)
    g.add_op("SUB", [one, z], [keep])
    h = act(g, "h", (1, 4), 1 / 255, -128)
    g.add_op("SUB", [keep, z], [h], fused_activation="RELU")
    seq = act(g, "seq", (2, 1, 4), 1 / 255, -128)
    g.add_op("PACK", [keep, h], [seq], values_count=2, axis=0)
    g.inputs, g.outputs = [z], [seq]
    return g


GRAPHS: dict[str, Callable[[], Graph]] = {
    f.__name__[2:]: f for f in (g_fc, g_fc_no_bias, g_conv, g_depthwise, g_pool_softmax,
                                g_reduce, g_split_concat, g_pad, g_elementwise, g_boundary,
                                g_float, g_slicing, g_recurrent)
}


def test_every_supported_op_is_covered() -> None:
    kinds = {op.kind for make in GRAPHS.values() for op in make().ops}
    assert kinds == set(SUPPORTED_OPS)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _norm(value: object) -> object:
    return tuple(value) if isinstance(value, list | tuple) else value


def assert_same_graph(a: Graph, b: Graph) -> None:
    assert (a.name, a.description, a.inputs, a.outputs) == (b.name, b.description, b.inputs,
                                                            b.outputs)
    assert len(a.tensors) == len(b.tensors)
    for ta, tb in zip(a.tensors, b.tensors, strict=True):
        assert (ta.name, ta.shape, ta.dtype) == (tb.name, tb.shape, tb.dtype)
        assert (ta.quant is None) == (tb.quant is None), ta.name
        if ta.quant is not None and tb.quant is not None:
            np.testing.assert_array_equal(ta.quant.scale, tb.quant.scale)
            np.testing.assert_array_equal(ta.quant.zero_point, tb.quant.zero_point)
            assert ta.quant.axis == tb.quant.axis
        assert ta.is_constant == tb.is_constant, ta.name
        if ta.data is not None and tb.data is not None:
            assert ta.data.dtype == tb.data.dtype
            np.testing.assert_array_equal(ta.data, tb.data)
    assert len(a.ops) == len(b.ops)
    for oa, ob in zip(a.ops, b.ops, strict=True):
        assert (oa.kind, oa.inputs, oa.outputs, oa.name) == (ob.kind, ob.inputs, ob.outputs,
                                                             ob.name)
        assert {k: _norm(v) for k, v in oa.options.items()} == {
            k: _norm(v) for k, v in ob.options.items()}, oa.name


def random_input(t: Tensor) -> np.ndarray:
    if t.dtype == "float32":
        return RNG.normal(size=t.shape).astype(np.float32)
    info = np.iinfo(t.dtype)
    return RNG.integers(info.min, info.max + 1, size=t.shape).astype(t.dtype)


def run_tflm(data: bytes, inputs: list[np.ndarray], n_outputs: int = 1) -> list[np.ndarray]:
    # The default arena (10x the model size) is too small for tiny models.
    interp = runtime.Interpreter.from_bytes(data, arena_size=256 * 1024)
    for i, x in enumerate(inputs):
        interp.set_input(x, i)
    interp.invoke()
    return [np.array(interp.get_output(i)) for i in range(n_outputs)]


def patched(data: bytes, change: Callable[[schema.ModelT], None]) -> bytes:
    """Rewrite a model through the flatbuffers object API (for models write_tflite refuses)."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    change(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def load_error(data: bytes, tmp_path: Path, name: str = "bad.tflite") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(KilomlError) as info:
        read_tflite(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    return message


# ---------------------------------------------------------------------------
# round trip and TFLM
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(GRAPHS))
def test_round_trip(case: str, tmp_path: Path) -> None:
    g = GRAPHS[case]()
    path = tmp_path / f"{case}.tflite"
    data = write_tflite(g, path)
    assert path.read_bytes() == data
    back = read_tflite(path)
    expected = copy.deepcopy(g)
    for op in expected.ops:  # TFLite always has RESHAPE's shape tensor
        if op.kind == "RESHAPE" and len(op.inputs) == 1:
            out = expected.tensors[op.outputs[0]]
            op.inputs.append(const(expected, f"{out.name}/shape", out.shape, "int32"))
    assert_same_graph(expected, back)
    assert write_tflite(back) == data  # stable: the second export is byte-identical


@pytest.mark.parametrize("case", sorted(GRAPHS))
def test_tflm_runs_written_model(case: str) -> None:
    g = GRAPHS[case]()
    outs = run_tflm(write_tflite(g), [random_input(t) for t in g.input_tensors], len(g.outputs))
    assert len(outs) == len(g.outputs)
    for out, t in zip(outs, g.output_tensors, strict=True):
        assert out.shape == t.shape and out.dtype == np.dtype(t.dtype), t.name


def test_tflm_data_movement_ops_match_numpy() -> None:
    """Ops without arithmetic must come out bit-exact: checks operand order and options."""
    x = np.arange(6, dtype=np.int8).reshape(1, 6)
    cat, row = run_tflm(write_tflite(g_split_concat()), [x], 2)
    np.testing.assert_array_equal(cat, [[4, 5, 0, 1]])
    np.testing.assert_array_equal(row, [3, 4, 5])

    x = RNG.integers(-128, 128, size=(1, 2, 3, 2)).astype(np.int8)
    (p2,) = run_tflm(write_tflite(g_pad()), [x])
    pads = [(0, 0), (1, 0), (0, 2), (0, 0)]
    expected = np.pad(np.pad(x, pads, constant_values=-3), pads, constant_values=7)
    np.testing.assert_array_equal(p2, expected)


def test_tflm_float_model_matches_numpy() -> None:
    g = g_float()
    x = RNG.normal(size=(1, 5)).astype(np.float32)
    (y,) = run_tflm(write_tflite(g), [x])
    w, b = g.tensors[1].data, g.tensors[2].data
    h = np.maximum(x @ w.T + b, 0) * 0.5
    expected = np.exp(h - h.max()) / np.exp(h - h.max()).sum()
    np.testing.assert_allclose(y, expected, rtol=1e-5)


def test_constant_buffers_are_16_byte_aligned() -> None:
    data = write_tflite(g_conv())
    model = schema.Model.GetRootAs(data, 0)
    assert data[4:8] == b"TFL3" and model.Version() == 3
    assert model.Buffers(0).DataLength() == 0
    starts = []
    for i in range(1, model.BuffersLength()):
        buf = model.Buffers(i)
        starts.append(buf._tab.Vector(buf._tab.Offset(4)))
    assert len(starts) == 2 and all(s % 16 == 0 for s in starts), starts


def test_written_operator_codes_and_options() -> None:
    model = schema.ModelT.InitFromPackedBuf(bytearray(write_tflite(g_split_concat())), 0)
    codes = [(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    assert len(codes) == len(set(codes)) == 4  # SPLIT, CONCATENATION, RESHAPE, UNPACK
    assert all(d == min(b, 127) for b, d in codes)
    assert model.description == b"split, concat, unpack"
    reshape = next(op for op in model.subgraphs[0].operators
                   if model.operatorCodes[op.opcodeIndex].builtinCode
                   == schema.BuiltinOperator.RESHAPE)
    assert list(reshape.builtinOptions.newShape) == [2, 3]
    assert len(reshape.inputs) == 2
    sub = model.subgraphs[0]
    conv = schema.ModelT.InitFromPackedBuf(bytearray(write_tflite(g_conv())), 0).subgraphs[0]
    assert conv.tensors[1].quantization.quantizedDimension == 0
    assert list(sub.tensors[0].shapeSignature) == [1, 6]


def test_padv2_is_written_and_read_as_pad() -> None:
    model = schema.ModelT.InitFromPackedBuf(bytearray(write_tflite(g_pad())), 0)
    assert {c.builtinCode for c in model.operatorCodes} == {schema.BuiltinOperator.PAD,
                                                           schema.BuiltinOperator.PADV2}
    assert [op.kind for op in parse_tflite(write_tflite(g_pad())).ops] == ["PAD", "PAD"]


def test_large_model_layout_buffers_past_the_flatbuffer(tmp_path: Path) -> None:
    g = g_fc()
    data = write_tflite(g)
    payloads: list[bytes] = []

    def externalize(model: schema.ModelT) -> None:
        for buf in model.buffers[1:]:
            payloads.append(bytes(buf.data))
            buf.data = None
            buf.offset, buf.size = 1, len(payloads[-1])  # fixed up below

    base = patched(data, externalize)
    # Offsets are from the file start; lay the payloads out after the flatbuffer.
    starts, end = [], (len(base) + 15) // 16 * 16 + 64  # room for the re-packed offsets
    for p in payloads:
        starts.append(end)
        end = (end + len(p) + 15) // 16 * 16

    def place(model: schema.ModelT) -> None:
        for buf, start in zip(model.buffers[1:], starts, strict=True):
            buf.offset = start

    head = patched(base, place)
    assert len(head) <= starts[0]
    blob = bytearray(head.ljust(starts[0], b"\0"))
    for p, start in zip(payloads, starts, strict=True):
        blob[len(blob):] = b"\0" * (start - len(blob)) + p
    back = parse_tflite(bytes(blob))
    np.testing.assert_array_equal(back.tensors[1].data, g.tensors[1].data)
    np.testing.assert_array_equal(back.tensors[2].data, g.tensors[2].data)

    def beyond(model: schema.ModelT) -> None:
        model.buffers[1].offset = len(blob) + 100

    message = load_error(patched(bytes(blob), beyond), tmp_path)
    assert "not a valid .tflite file" in message and "outside the file" in message


# ---------------------------------------------------------------------------
# constant folding (converter shape code around Flatten / Conv1D)
# ---------------------------------------------------------------------------

def g_tf_flatten() -> Graph:
    """Keras Flatten with a dynamic batch: SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE."""
    g = Graph([], [], [], [], name="flatten", description="tf flatten")
    x = act(g, "x", (1, 2, 2, 3))
    shape = g.add_tensor(Tensor("shape", (4,), "int32"))
    g.add_op("SHAPE", [x], [shape], out_type="int32")
    begin, end, step = (const(g, n, [v], "int32") for n, v in (("b", 0), ("e", 1), ("s", 1)))
    batch = g.add_tensor(Tensor("batch", (), "int32"))
    g.add_op("STRIDED_SLICE", [shape, begin, end, step], [batch], shrink_axis_mask=1)
    minus1 = const(g, "minus1", -1, "int32")
    packed = g.add_tensor(Tensor("packed", (2,), "int32"))
    g.add_op("PACK", [batch, minus1], [packed], values_count=2, axis=0)
    flat = act(g, "flat", (1, 12))
    g.add_op("RESHAPE", [x, packed], [flat])
    w = const(g, "w", int8_weights((2, 12)), "int8", Q(0.01, 0))
    y = act(g, "y", (1, 2), 0.1, 0)
    g.add_op("FULLY_CONNECTED", [flat, w, -1], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def g_torch_reshape() -> Graph:
    """litert-torch style: SHAPE (int64) -> GATHER -> CAST -> CONCATENATION -> RESHAPE."""
    g = Graph([], [], [], [], name="torch", description="torch reshape")
    x = act(g, "x", (1, 4, 3))
    shape = g.add_tensor(Tensor("shape", (3,), "int64"))
    g.add_op("SHAPE", [x], [shape], out_type="int64")
    idx = const(g, "idx", [0], "int32")
    gathered = g.add_tensor(Tensor("gathered", (1,), "int64"))
    g.add_op("GATHER", [shape, idx], [gathered], axis=0)
    cast = g.add_tensor(Tensor("cast", (1,), "int32"))
    g.add_op("CAST", [gathered], [cast], in_type="int64", out_type="int32")
    rest = const(g, "rest", [2, 6], "int32")
    target = g.add_tensor(Tensor("target", (3,), "int32"))
    g.add_op("CONCATENATION", [cast, rest], [target], axis=0)
    y = act(g, "y", (1, 2, 6))
    g.add_op("RESHAPE", [x, target], [y])
    g.inputs, g.outputs = [x], [y]
    return g


@pytest.mark.parametrize("make", [g_tf_flatten, g_torch_reshape])
def test_shape_code_is_folded(make: Callable[[], Graph]) -> None:
    g = make()
    data = write_tflite(g)
    folded = parse_tflite(data)
    kinds = [op.kind for op in folded.ops]
    assert kinds == [op.kind for op in g.ops if op.kind in ("RESHAPE", "FULLY_CONNECTED")]
    reshape = folded.ops[0]
    target = folded.tensors[reshape.inputs[1]]
    out = folded.tensors[reshape.outputs[0]]
    assert target.dtype == "int32" and tuple(target.data) == out.shape
    # nothing left over: only the input, the reshape's operands and the rest of the model
    assert {t.name for t in folded.tensors} <= {"x", "flat", "w", "y", "packed", "target"}
    # The folded export runs in TFLM and computes what the unfolded model computes
    # (TFLM cannot run the int64 GATHER of the torch pattern: compare with numpy there).
    x = random_input(g.input_tensors[0])
    expected = run_tflm(data, [x]) if make is g_tf_flatten else [x.reshape(1, 2, 6)]
    for a, b in zip(expected, run_tflm(write_tflite(folded), [x]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_dynamic_batch_in_the_signature_is_batch_one(tmp_path: Path) -> None:
    def dynamic(model: schema.ModelT) -> None:
        for t in model.subgraphs[0].tensors:
            if len(t.shape) and t.shape[0] == 1:
                t.shapeSignature = np.array([-1, *t.shape[1:]], np.int32)

    data = patched(write_tflite(g_tf_flatten()), dynamic)
    g = parse_tflite(data)
    assert g.tensors[g.inputs[0]].shape == (1, 2, 2, 3)
    assert [op.kind for op in g.ops] == ["RESHAPE", "FULLY_CONNECTED"]

    def in_shape(model: schema.ModelT) -> None:  # a dynamic tensor: TFLM refuses it
        model.subgraphs[0].tensors[0].shape[0] = -1

    message = load_error(patched(data, in_shape), tmp_path)
    assert "dynamic or invalid shape [-1, 2, 2, 3]" in message
    assert "written as 1 in shape and -1 in shape_signature" in message


def test_reshape_folding_mismatch_is_reported(tmp_path: Path) -> None:
    g = g_torch_reshape()
    g.tensors[5].data = np.array([5, 7], np.int32)  # "rest": 1 x 5 x 7 != 12 elements
    message = load_error(write_tflite(g), tmp_path)
    assert "operator 4 RESHAPE (output 'y')" in message and "[1, 5, 7]" in message


# ---------------------------------------------------------------------------
# corrupt files
# ---------------------------------------------------------------------------

def test_empty_file(tmp_path: Path) -> None:
    assert "not a valid .tflite file: the file is empty" in load_error(b"", tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KilomlError, match="cannot read the model"):
        read_tflite(tmp_path / "nope.tflite")


def test_wrong_identifier(tmp_path: Path) -> None:
    data = bytearray(write_tflite(g_fc()))
    data[4:8] = b"ONNX"
    message = load_error(bytes(data), tmp_path)
    assert "not a valid .tflite file: file identifier b'ONNX', expected b'TFL3'" in message
    assert "not a valid .tflite file" in load_error(b"PK\x03\x04 a zip file", tmp_path)
    assert "only 3 bytes" in load_error(b"abc", tmp_path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(keep: float, tmp_path: Path) -> None:
    data = write_tflite(g_conv())
    message = load_error(data[: max(8, int(len(data) * keep))], tmp_path)
    assert "not a valid .tflite file" in message


def test_corrupt_root_offset(tmp_path: Path) -> None:
    data = bytearray(write_tflite(g_fc()))
    data[0:4] = (len(data) + 4).to_bytes(4, "little")
    assert "root table offset" in load_error(bytes(data), tmp_path)


def test_mangled_bytes_never_escape_as_raw_errors() -> None:
    """Random corruption: either a graph or a KilomlError, and quickly."""
    data = write_tflite(g_split_concat())
    rng = np.random.default_rng(0)
    start = time.monotonic()
    outcomes = {"ok": 0, "error": 0}
    for trial in range(300):
        blob = bytearray(data)
        for pos in rng.integers(8, len(blob), size=1 + trial % 8):
            blob[pos] = int(rng.integers(0, 256))
        try:
            parse_tflite(bytes(blob))
            outcomes["ok"] += 1
        except KilomlError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 50, outcomes
    assert time.monotonic() - start < 10


def test_huge_vector_length_is_rejected_fast(tmp_path: Path) -> None:
    data = bytearray(write_tflite(g_fc()))
    model = schema.Model.GetRootAs(data, 0)
    tab = model._tab
    vec = tab.Vector(tab.Offset(12))  # Model.buffers
    data[vec - 4:vec] = (0x7FFFFFFF).to_bytes(4, "little")
    start = time.monotonic()
    message = load_error(bytes(data), tmp_path)
    assert "model: field 'buffers': a vector of 2147483647 entries" in message
    assert "runs past the end of the file" in message
    assert time.monotonic() - start < 1


def test_bad_tensor_index(tmp_path: Path) -> None:
    def bad(model: schema.ModelT) -> None:
        model.subgraphs[0].operators[0].inputs[1] = 99

    message = load_error(patched(write_tflite(g_fc()), bad), tmp_path)
    assert ("subgraph 0 operator 0 (FULLY_CONNECTED): input 1 is tensor 99, the subgraph has "
            in message), message


def test_wrong_constant_size(tmp_path: Path) -> None:
    def bad(model: schema.ModelT) -> None:
        model.buffers[1].data = np.zeros(5, np.uint8)

    message = load_error(patched(write_tflite(g_fc()), bad), tmp_path)
    assert "tensor 1 'w'" in message and "constant data has 5 bytes" in message


def test_wrong_schema_version(tmp_path: Path) -> None:
    def bad(model: schema.ModelT) -> None:
        model.version = 2

    assert "schema version 2" in load_error(patched(write_tflite(g_fc()), bad), tmp_path)


def test_operators_out_of_order(tmp_path: Path) -> None:
    def swap(model: schema.ModelT) -> None:
        ops = model.subgraphs[0].operators
        ops[0], ops[1] = ops[1], ops[0]

    message = load_error(patched(write_tflite(g_boundary()), swap), tmp_path)
    assert "operator 0 FULLY_CONNECTED" in message and "before any operator writes it" in message


def test_tensor_written_twice(tmp_path: Path) -> None:
    def twice(model: schema.ModelT) -> None:
        ops = model.subgraphs[0].operators
        ops[2].outputs = ops[1].outputs.copy()

    message = load_error(patched(write_tflite(g_boundary()), twice), tmp_path)
    assert "operator 2 DEQUANTIZE (output 'yq')" in message and "written before" in message


def test_wrong_operand_count(tmp_path: Path) -> None:
    def one_input(model: schema.ModelT) -> None:
        model.subgraphs[0].operators[0].inputs = model.subgraphs[0].operators[0].inputs[:1]

    message = load_error(patched(write_tflite(g_conv()), one_input), tmp_path)
    assert "operator 0 CONV_2D (output 'y')" in message and "not a valid CONV_2D" in message


def test_per_channel_scale_count_must_match(tmp_path: Path) -> None:
    def drop_scale(model: schema.ModelT) -> None:
        q = model.subgraphs[0].tensors[1].quantization
        q.scale, q.zeroPoint = q.scale[:2], q.zeroPoint[:2]

    message = load_error(patched(write_tflite(g_conv()), drop_scale), tmp_path)
    assert "tensor 1 'w'" in message and "2 scales" in message


def test_writer_rejects_bad_options() -> None:
    g = g_fc()
    g.ops[0].options["fused_activation"] = "TANH"
    with pytest.raises(ValueError, match="fused_activation='TANH'"):
        write_tflite(g)


# ---------------------------------------------------------------------------
# unsupported models
# ---------------------------------------------------------------------------

def test_multiple_subgraphs(tmp_path: Path) -> None:
    def two(model: schema.ModelT) -> None:
        model.subgraphs.append(model.subgraphs[0])

    message = load_error(patched(write_tflite(g_fc()), two), tmp_path)
    assert ("model has 2 subgraphs (control flow such as IF/WHILE); kiloml supports "
            "single-subgraph models") in message


def test_unsupported_operator(tmp_path: Path) -> None:
    g = g_fc()
    y = g.outputs[0]
    t = g.add_tensor(Tensor("transposed", (4, 1), "int8", Q(0.1, 5)))
    perm = const(g, "perm", [1, 0], "int32")
    g.add_op("TRANSPOSE", [y, perm], [t])
    g.outputs = [t]

    def to_batch_to_space(model: schema.ModelT) -> None:
        for code in model.operatorCodes:
            if code.builtinCode == schema.BuiltinOperator.TRANSPOSE:
                code.builtinCode = code.deprecatedBuiltinCode = \
                    schema.BuiltinOperator.BATCH_TO_SPACE_ND
        model.subgraphs[0].operators[1].builtinOptionsType = 0
        model.subgraphs[0].operators[1].builtinOptions = None

    message = load_error(patched(write_tflite(g), to_batch_to_space), tmp_path)
    assert "operator 1 BATCH_TO_SPACE_ND (output 'transposed')" in message
    assert "unsupported operator BATCH_TO_SPACE_ND" in message
    assert ", ".join(SUPPORTED_OPS) in message


def test_custom_operator(tmp_path: Path) -> None:
    def custom(model: schema.ModelT) -> None:
        code = model.operatorCodes[0]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = "TFLite_Detection_PostProcess"
        model.subgraphs[0].operators[0].builtinOptionsType = 0
        model.subgraphs[0].operators[0].builtinOptions = None

    message = load_error(patched(write_tflite(g_fc()), custom), tmp_path)
    assert "operator 0 CUSTOM 'TFLite_Detection_PostProcess' (output 'y')" in message
    assert "unsupported operator: custom operator 'TFLite_Detection_PostProcess'" in message


def test_float16_model(tmp_path: Path) -> None:
    """Float16 post-training quantization: float16 weights -> DEQUANTIZE -> float FC."""
    g = Graph([], [], [], [], name="f16", description="d")
    x = act(g, "x", (1, 4), dtype="float32")
    w16 = const(g, "w16", np.zeros((2, 4)), "float32")  # made float16 below
    w = act(g, "w", (2, 4), dtype="float32")
    g.add_op("DEQUANTIZE", [w16], [w])
    y = act(g, "y", (1, 2), dtype="float32")
    g.add_op("FULLY_CONNECTED", [x, w, -1], [y])
    g.inputs, g.outputs = [x], [y]

    def to_half(model: schema.ModelT) -> None:
        t = model.subgraphs[0].tensors[1]
        t.type = schema.TensorType.FLOAT16
        model.buffers[t.buffer].data = np.ones((2, 4), np.float16).view(np.uint8).ravel()

    message = load_error(patched(write_tflite(g), to_half), tmp_path)
    assert "tensor 1 'w16'" in message and "float16-quantized model" in message


def test_hybrid_model(tmp_path: Path) -> None:
    g = Graph([], [], [], [], name="hybrid", description="d")
    x = act(g, "x", (1, 8), dtype="float32")
    w = const(g, "w", int8_weights((4, 8)), "int8", Q(0.01, 0))
    b = const(g, "b", np.zeros(4), "float32")
    y = act(g, "y", (1, 4), dtype="float32")
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    g.inputs, g.outputs = [x], [y]
    message = load_error(write_tflite(g), tmp_path)
    assert "operator 0 FULLY_CONNECTED (output 'y')" in message
    assert "dynamic-range (hybrid) quantization" in message


def test_16x8_model(tmp_path: Path) -> None:
    g = Graph([], [], [], [], name="16x8", description="d")
    x = act(g, "x", (1, 8), dtype="float32")
    xq = act(g, "xq", (1, 8), 0.001, 0, dtype="int16")
    g.add_op("QUANTIZE", [x], [xq])  # the boundary itself is fine...
    w = const(g, "w", int8_weights((4, 8)), "int8", Q(0.01, 0))
    b = const(g, "b", np.zeros(4), "int64", Q(0.00001, 0))
    y = act(g, "y", (1, 4), 0.002, 0, dtype="int16")
    g.add_op("FULLY_CONNECTED", [xq, w, b], [y])  # ...computing on int16 is not
    g.inputs, g.outputs = [x], [y]
    message = load_error(write_tflite(g), tmp_path)
    assert "operator 1 FULLY_CONNECTED (output 'y')" in message
    assert "16x8 quantization (int16 activations)" in message


def test_uint8_model(tmp_path: Path) -> None:
    g = Graph([], [], [], [], name="u8", description="d")
    x = act(g, "x", (1, 8), 0.05, 128, dtype="uint8")
    w = const(g, "w", np.full((4, 8), 130), "uint8", Q(0.01, 128))
    y = act(g, "y", (1, 4), 0.1, 128, dtype="uint8")
    g.add_op("FULLY_CONNECTED", [x, w, -1], [y])
    g.inputs, g.outputs = [x], [y]
    assert "uint8 (legacy) quantized activations" in load_error(write_tflite(g), tmp_path)


def test_uint8_input_boundary_is_fine() -> None:
    g = g_fc()
    x8 = g.add_tensor(Tensor("x_u8", (1, 8), "uint8", Q(0.05, 125)))
    g.ops.insert(0, Op("QUANTIZE", [x8], [g.inputs[0]]))
    g.inputs = [x8]
    back = parse_tflite(write_tflite(g))
    assert [op.kind for op in back.ops] == ["QUANTIZE", "FULLY_CONNECTED"]


def test_unsupported_fused_activation(tmp_path: Path) -> None:
    def tanh(model: schema.ModelT) -> None:
        model.subgraphs[0].operators[0].builtinOptions.fusedActivationFunction = 4

    message = load_error(patched(write_tflite(g_fc()), tanh), tmp_path)
    assert "operator 0 FULLY_CONNECTED" in message and "fused activation TANH" in message


def test_float_and_int8_models_import() -> None:
    assert not parse_tflite(write_tflite(g_float())).is_quantized
    assert parse_tflite(write_tflite(g_conv())).is_quantized
    boundary = parse_tflite(write_tflite(g_boundary()))
    assert [op.kind for op in boundary.ops] == ["QUANTIZE", "FULLY_CONNECTED", "DEQUANTIZE"]


def test_name_falls_back_to_file_stem(tmp_path: Path) -> None:
    def unnamed(model: schema.ModelT) -> None:
        model.subgraphs[0].name = None

    path = tmp_path / "my_model.tflite"
    path.write_bytes(patched(write_tflite(g_fc()), unnamed))
    assert read_tflite(path).name == "my_model"


# ---------------------------------------------------------------------------
# converter-made fixtures (tests/nn/fixtures, made by another script)
# ---------------------------------------------------------------------------

FIXTURE_FILES = sorted(FIXTURES.glob("*.tflite"))
# Fixtures the importer must refuse: file-name fragment -> message fragment.
BAD_FIXTURES = {
    "float16": "float16-quantized model",
    "dynamic_range": "dynamic-range (hybrid) quantization",
    "hybrid": "dynamic-range (hybrid) quantization",
    "16x8": "16x8 quantization (int16 activations)",
    "uint8": "uint8 (legacy)",
    "multi_subgraph": "subgraphs (control flow such as IF/WHILE)",
    "control_flow": "subgraphs (control flow such as IF/WHILE)",
    "custom": "custom operator",
    "unsupported": "unsupported operator",
}


# Good models that use an operator the IR does not have yet (a real gap, not a
# model to refuse): they must either import or fail with exactly this message.
KNOWN_GAPS = {
    "ops_mix_int8": "unsupported operator STRIDED_SLICE",  # Keras x[..., :4] on activations
}


# Fixtures kiloml imports but the TFLM interpreter refuses (so there is no TFLM output to
# compare the re-exported graph with): a dynamic-batch LSTM's FILL of non-constant dims.
TFLM_REFUSES = {"lstm_dynamic_batch"}


def _expected_error(path: Path) -> str | None:
    return next((msg for key, msg in BAD_FIXTURES.items() if key in path.stem), None)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.name for p in FIXTURE_FILES])
def test_converter_fixture(path: Path) -> None:
    expected = _expected_error(path)
    if expected is not None:
        with pytest.raises(KilomlError, match=re.escape(expected)):
            read_tflite(path)
        return
    try:
        g = read_tflite(path)
    except KilomlError as exc:
        if path.stem not in KNOWN_GAPS:
            raise
        assert KNOWN_GAPS[path.stem] in str(exc)
        return
    assert set(op.kind for op in g.ops) <= set(SUPPORTED_OPS)
    if path.stem in TFLM_REFUSES:
        assert_same_graph(g, parse_tflite(write_tflite(g), name=g.name))
        return
    # Re-exported, the graph computes exactly what the converter's file computes.
    original = path.read_bytes()
    inputs = [random_input(t) for t in g.input_tensors]
    n = len(g.outputs)
    for a, b in zip(run_tflm(original, inputs, n), run_tflm(write_tflite(g), inputs, n),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert_same_graph(g, parse_tflite(write_tflite(g), name=g.name))


# ---------------------------------------------------------------------------
# hostile files: every structural field checked before it is read
# ---------------------------------------------------------------------------

def _root(data: bytearray) -> tuple[int, int]:
    """(root table position, its vtable position)."""
    pos = int.from_bytes(data[:4], "little")
    return pos, pos - int.from_bytes(data[pos:pos + 4], "little", signed=True)


def test_vtable_outside_the_file(tmp_path: Path) -> None:
    data = bytearray(write_tflite(g_fc()))
    pos, _ = _root(data)
    data[pos:pos + 4] = (-len(data)).to_bytes(4, "little", signed=True)
    message = load_error(bytes(data), tmp_path)
    assert "model: the table at byte" in message and "has its vtable at byte" in message


def test_field_outside_its_table(tmp_path: Path) -> None:
    data = bytearray(write_tflite(g_fc()))
    _, vt = _root(data)
    data[vt + 2:vt + 4] = (6).to_bytes(2, "little")  # the table claims 6 bytes
    message = load_error(bytes(data), tmp_path)
    assert "model: field " in message and "outside its table of 6 bytes" in message


def test_offset_outside_the_file(tmp_path: Path) -> None:
    data = bytearray(write_tflite(g_fc()))
    pos, vt = _root(data)
    field = pos + int.from_bytes(data[vt + 8:vt + 10], "little")  # Model.subgraphs
    data[field:field + 4] = (0x7FFFFFF0).to_bytes(4, "little")
    message = load_error(bytes(data), tmp_path)
    assert "model: field 'subgraphs': offset at byte" in message
    assert "outside the file" in message


def test_overlapping_tables_are_bounded() -> None:
    """A vector of many offsets to one table holding a long vector: reading it all would
    cost n^2; the budget stops it."""
    from kiloml.nn.flatbuffer import Flatbuffer, FlatbufferError

    n = 2000
    builder = flatbuffers.Builder(0)
    builder.StartVector(4, n, 4)
    for v in range(n):
        builder.PrependInt32(v)
    numbers = builder.EndVector()
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, numbers, 0)
    shared = builder.EndObject()
    builder.StartVector(4, n, 4)
    for _ in range(n):
        builder.PrependUOffsetTRelative(shared)
    tables = builder.EndVector()
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, tables, 0)
    builder.Finish(builder.EndObject())
    data = bytes(builder.Output())
    start = time.monotonic()
    vec = Flatbuffer(data).root("root").tables(4, "tables", "table {i}")
    with pytest.raises(FlatbufferError, match="tables overlap"):
        for i in range(len(vec)):
            vec[i].numbers(4, "int32", "numbers")
    assert time.monotonic() - start < 2


def _set_shape(model: schema.ModelT, shape: list[int]) -> None:
    t = model.subgraphs[0].tensors[0]
    t.shape = t.shapeSignature = np.array(shape, np.int32)


@pytest.mark.parametrize("change, fragment", [
    (lambda m: setattr(m.subgraphs[0].operators[0], "opcodeIndex", 7),
     "subgraph 0 operator 0: operator code 7, the model has 1"),
    (lambda m: setattr(m.subgraphs[0], "outputs", np.array([99], np.int32)),
     "subgraph 0: output 0 is tensor 99, the subgraph has"),
    (lambda m: setattr(m.subgraphs[0].tensors[1], "buffer", 99),
     "tensor 1 'w': refers to buffer 99, the model has"),
    (lambda m: _set_shape(m, [1] * 9), "has rank 9; kiloml supports at most 8"),
    (lambda m: _set_shape(m, [1, 1 << 30]),
     "1,073,741,824 elements; kiloml supports at most 16,777,216"),
    (lambda m: _set_shape(m, [1, -2]), "dynamic or invalid shape [1, -2]"),
    (lambda m: setattr(m.subgraphs[0].tensors[0], "shapeSignature", np.array([-1, -1],
                                                                             np.int32)),
     "dimension 1 is dynamic (shape_signature [-1, -1])"),
    (lambda m: setattr(m.subgraphs[0].tensors[0], "shapeSignature", np.array([1], np.int32)),
     "shape_signature [1] and shape [1, 8] differ in rank"),
    (lambda m: setattr(m.subgraphs[0].tensors[0], "shapeSignature", np.array([1, 9],
                                                                            np.int32)),
     "shape_signature [1, 9] disagrees with shape [1, 8]"),
    (lambda m: setattr(m.subgraphs[0].tensors[0].quantization, "quantizedDimension", 5),
     "quantized_dimension 5 is outside the rank 2"),
    (lambda m: setattr(m.subgraphs[0].tensors[0].quantization, "zeroPoint",
                       np.array([1, 2], np.int64)),
     "1 scales and 2 zero points"),
    (lambda m: setattr(m.subgraphs[0].operators[0], "builtinOptionsType",
                       schema.BuiltinOptions.Conv2DOptions),
     "carries builtin options of type Conv2DOptions, expected FullyConnectedOptions"),
])
def test_structural_fields_are_checked(change: Callable[[schema.ModelT], None], fragment: str,
                                       tmp_path: Path) -> None:
    message = load_error(patched(write_tflite(g_fc()), change), tmp_path)
    assert fragment in message, message


def test_strings_with_invalid_utf8_are_replaced(tmp_path: Path) -> None:
    def rename(model: schema.ModelT) -> None:
        model.subgraphs[0].tensors[0].name = b"x\xff\xfe"

    g = parse_tflite(patched(write_tflite(g_fc()), rename))
    assert g.tensors[g.inputs[0]].name == "x\ufffd\ufffd"


def test_control_characters_from_the_file_are_escaped_in_errors(tmp_path: Path) -> None:
    def hostile(model: schema.ModelT) -> None:
        t = model.subgraphs[0].tensors[1]
        t.name = b"w\x1b[2J\r\x00"
        t.buffer = 99

    message = load_error(patched(write_tflite(g_fc()), hostile), tmp_path)
    assert message.isprintable(), repr(message)
    assert "tensor 1 'w\\x1b[2J\\r\\x00'" in message


def test_every_field_lies_inside_its_table(tmp_path: Path) -> None:
    """A field kiloml does not read (Model.metadata) pointing into the vtable offset is
    refused too: TFLM would read it."""
    data = bytearray(write_tflite(g_fc()))
    _, vt = _root(data)
    data[vt + 4:vt + 6] = (1).to_bytes(2, "little")  # Model.version at table offset 1
    message = load_error(bytes(data), tmp_path)
    assert "model: field 0 is at offset 1, outside its table" in message


def _with_signature(model: schema.ModelT, tensor: int, subgraph: int = 0) -> None:
    sig = schema.SignatureDefT()
    tm = schema.TensorMapT()
    tm.name, tm.tensorIndex = "x", tensor
    sig.inputs, sig.outputs, sig.signatureKey, sig.subgraphIndex = [tm], [], "serve", subgraph
    model.signatureDefs = [sig]


def _with_metadata(model: schema.ModelT, buffer: int) -> None:
    m = schema.MetadataT()
    m.name, m.buffer = "OfflineMemoryAllocation", buffer
    model.metadata = [m]


@pytest.mark.parametrize("change, fragment", [
    (lambda m: _with_signature(m, 77), "signature 0 input 0: tensor 77, the subgraph has"),
    (lambda m: _with_signature(m, 0, 3), "signature 0: subgraph_index is not 0"),
    (lambda m: _with_metadata(m, 50), "metadata 0: buffer 50, the model has"),
    (lambda m: setattr(m, "metadataBuffer", np.array([9], np.int32)),
     "metadata_buffer 0 is buffer 9"),
    (lambda m: setattr(m.subgraphs[0].operators[0], "intermediates", np.array([42], np.int32)),
     "intermediate 0 is tensor 42"),
    (lambda m: setattr(m.subgraphs[0].operators[0].builtinOptions, "quantizedBiasType",
                       schema.TensorType.INT64),
     "quantized_bias_type INT64 does not match the bias (int32)"),
])
def test_parts_tflm_reads_are_checked(change: Callable[[schema.ModelT], None], fragment: str,
                                      tmp_path: Path) -> None:
    message = load_error(patched(write_tflite(g_fc()), change), tmp_path)
    assert fragment in message, message


def test_folded_shape_code_must_match_the_declared_shapes(tmp_path: Path) -> None:
    def wrong_shape(model: schema.ModelT) -> None:
        t = next(t for t in model.subgraphs[0].tensors if t.name == b"batch")
        t.shape = t.shapeSignature = np.array([2], np.int32)

    message = load_error(patched(write_tflite(g_tf_flatten()), wrong_shape), tmp_path)
    assert "STRIDED_SLICE" in message and "the result has shape [], the file declares [2]" \
        in message

    def wrong_count(model: schema.ModelT) -> None:
        op = next(o for o in model.subgraphs[0].operators
                  if o.builtinOptionsType == schema.BuiltinOptions.PackOptions)
        op.builtinOptions.valuesCount = 7

    assert "values_count 7 for 2 inputs" in load_error(
        patched(write_tflite(g_tf_flatten()), wrong_count), tmp_path)

    def wrong_type(model: schema.ModelT) -> None:
        op = next(o for o in model.subgraphs[0].operators
                  if o.builtinOptionsType == schema.BuiltinOptions.ShapeOptions)
        op.builtinOptions.outType = 99

    assert "out_type is type code 99" in load_error(
        patched(write_tflite(g_tf_flatten()), wrong_type), tmp_path)


def _drop_options(kind_code: int) -> Callable[[schema.ModelT], None]:
    def change(model: schema.ModelT) -> None:
        op = next(o for o in model.subgraphs[0].operators if o.builtinOptionsType == kind_code)
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.NONE, None

    return change


def _unused_buffer(model: schema.ModelT) -> None:
    b = schema.BufferT()
    b.offset, b.size = 1 << 40, 16  # no tensor uses it: TFLM still walks it
    model.buffers.append(b)


def _min_vector(model: schema.ModelT) -> None:
    model.subgraphs[0].tensors[0].quantization.min = np.zeros(3, np.float32)


@pytest.mark.parametrize("make, change, fragment", [
    (g_conv, _drop_options(schema.BuiltinOptions.Conv2DOptions),
     "(no Conv2DOptions): stride_w = 0, must be at least 1"),
    (g_conv, lambda m: setattr(m.subgraphs[0].tensors[1].quantization, "zeroPoint",
                               np.zeros(0, np.int64)),
     "scales and 0 zero points"),
    (g_fc, _unused_buffer, "lie outside the file"),
    (g_depthwise, lambda m: setattr(m.subgraphs[0].operators[0].builtinOptions,
                                    "depthMultiplier", 3),
     "depth_multiplier = 3"),
    (g_tf_flatten, lambda m: setattr(m.subgraphs[0].operators[0], "inputs",
                                     np.array([0, 0], np.int32)),
     "2 inputs and 1 outputs: not a valid SHAPE"),
    (g_tf_flatten, lambda m: setattr(next(t for t in m.subgraphs[0].tensors
                                          if t.name == b"shape"), "type",
                                     schema.TensorType.INT8),
     "SHAPE writes int32"),
    (g_fc_no_bias, lambda m: setattr(m.subgraphs[0].operators[0].builtinOptions,
                                     "quantizedBiasType", -1),
     "quantized_bias_type -1 does not match the bias (none)"),
])
def test_tflm_semantics_of_absent_and_unused_fields(make: Callable[[], Graph], change,
                                                    fragment: str, tmp_path: Path) -> None:
    from kiloml.nn.load import load_model

    path = tmp_path / "bad.tflite"
    path.write_bytes(patched(write_tflite(make()), change))
    with pytest.raises(KilomlError) as info:
        load_model(path)
    assert fragment in str(info.value), str(info.value)


def test_softmax_without_options_has_beta_zero(tmp_path: Path) -> None:
    """TFLM reads an absent SoftmaxOptions as beta = 0 (and aborts on it)."""
    from kiloml.nn.load import load_model

    path = tmp_path / "softmax.tflite"
    path.write_bytes(patched(write_tflite(g_pool_softmax()),
                             _drop_options(schema.BuiltinOptions.SoftmaxOptions)))
    with pytest.raises(KilomlError, match=r"softmax beta = 0\.0"):
        load_model(path)


def _vector_length_at(data: bytearray, tab: object, slot: int) -> int:
    """The byte position of the length of the vector in field ``slot`` of a generated table."""
    return tab.Vector(tab.Offset(slot)) - 4  # type: ignore[attr-defined]


def test_vectors_kiloml_ignores_are_still_bounded(tmp_path: Path) -> None:
    """Quantization min/max, zero points of a table without scales, an operator code's
    custom_code: unused by kiloml, read by TFLM's Python runtime or TFLM itself."""
    data = bytearray(patched(write_tflite(g_fc()), _min_vector))
    model = schema.Model.GetRootAs(data, 0)
    q = model.Subgraphs(0).Tensors(0).Quantization()
    pos = _vector_length_at(data, q._tab, 4)  # QuantizationParameters.min
    data[pos:pos + 4] = (0x3FFFFFFF).to_bytes(4, "little")
    assert "field 'min': a vector of 1073741823 entries" in load_error(bytes(data), tmp_path)

    def custom_code(m: schema.ModelT) -> None:
        m.operatorCodes[0].customCode = "x" * 8

    data = bytearray(patched(write_tflite(g_fc()), custom_code))
    code = schema.Model.GetRootAs(data, 0).OperatorCodes(0)
    pos = _vector_length_at(data, code._tab, 6)  # OperatorCode.custom_code
    data[pos:pos + 4] = (len(data)).to_bytes(4, "little")
    assert "operator code 0: field 'custom_code'" in load_error(bytes(data), tmp_path)

    def zero_points_only(m: schema.ModelT) -> None:
        t = m.subgraphs[0].tensors[2]  # the int32 bias: give it zero points, no scales
        t.quantization.scale = np.zeros(0, np.float32)
        t.quantization.zeroPoint = np.zeros(4, np.int64)

    data = bytearray(patched(write_tflite(g_fc()), zero_points_only))
    q = schema.Model.GetRootAs(data, 0).Subgraphs(0).Tensors(2).Quantization()
    pos = _vector_length_at(data, q._tab, 10)  # QuantizationParameters.zero_point
    data[pos:pos + 4] = (0x0FFFFFFF).to_bytes(4, "little")
    assert "field 'zero_point'" in load_error(bytes(data), tmp_path)


def test_folded_squeeze_must_give_its_declared_shape(tmp_path: Path) -> None:
    g = g_fc()
    c = const(g, "c", [[1, 2, 3]], "int32")
    out = g.add_tensor(Tensor("squeezed", (3,), "int32"))
    g.ops.insert(0, Op("SQUEEZE", [c], [out], {"squeeze_dims": (1,)}, name="squeeze"))
    message = load_error(write_tflite(g), tmp_path)
    assert "operator 0 SQUEEZE" in message and "squeezing [1] of [1, 3]" in message
