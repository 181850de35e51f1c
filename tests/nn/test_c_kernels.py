"""kml_nn.c (the int8 kernels declared in kiloml/runtime/kml_nn.h) against the reference.

Every kernel is called through ctypes with the arguments kiloml/codegen/nn_calls.py gives
for an operator (the same calls the C generator prints), and must match
kiloml.nn.reference.Interpreter bit for bit, on every element:

- the random single-operator cases of kiloml.nn.conformance (40 seeds per operator; the
  same cases the reference is held to against the TFLM interpreter);
- shapes those cases do not reach: batches > 1, grouped convolutions, more channels than
  the kernels handle per pass, per-channel and asymmetric fully-connected weights,
  broadcasting on either operand, large reductions and softmax rows;
- the fixed-point building blocks on their edges: kml_mbqm on INT32_MIN inputs, every
  shift from -31 to +7 and multipliers across [2^30, 2^31); the gemmlowp activations
  (LOGISTIC, TANH, SOFTMAX) on all 256 int8 inputs over a range of input quantizations;
  QUANTIZE on rounding ties.

The argument list of each call is checked against the prototypes parsed from kml_nn.h
(count, scalar types, pointer element types, struct sizes), so a drift between the
mapping and the header fails here. Outputs are pre-filled with a pattern so an element
a kernel forgets to write is caught, and in-place calls (nn_calls' in_place) run again
with the output aliasing the input. Finally the same calls, printed as a C program, run
under AddressSanitizer and UndefinedBehaviorSanitizer.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from kiloml.codegen.library import STRICT_CFLAGS
from kiloml.codegen.nn_calls import KernelCall, kernel_call
from kiloml.nn import fixedpoint as fp
from kiloml.nn.conformance import GENERATORS, random_case
from kiloml.nn.graph import Graph, Quantization, Tensor
from kiloml.nn.op_params import out_size, prepare
from kiloml.nn.reference import Interpreter

RUNTIME = Path(__file__).resolve().parents[2] / "kiloml" / "runtime"
SOURCE = RUNTIME / "kml_nn.c"
HEADER = RUNTIME / "kml_nn.h"
SEEDS = range(40)
SANITIZER_SEEDS = range(8)
SANITIZE_FLAGS = ["-fsanitize=address,undefined,float-cast-overflow",
                  "-fno-sanitize-recover=all", "-g"]
# Kernels with a DSP fast path: the tests also call the portable version by name.
PORTABLE = {"kml_fc_s8", "kml_conv2d_s8", "kml_dwconv2d_s8"}

Case = tuple[Graph, list[np.ndarray]]


# ---- the contract, parsed from kml_nn.h ---------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    ctype: str  # element type: int8_t, int32_t, float, kml_conv_params...
    pointer: int  # levels of indirection; an array parameter counts as one
    length: int | None  # n of a `name[n]` array parameter


_SCALAR_CTYPES = {"int32_t": ctypes.c_int32, "uint32_t": ctypes.c_uint32,
                  "float": ctypes.c_float, "int8_t": ctypes.c_int8}
_ARG_SCALARS = {"i32": "int32_t", "u32": "uint32_t", "f32": "float", "i8": "int8_t"}
_DTYPES = {"int8_t": np.dtype(np.int8), "int16_t": np.dtype(np.int16),
           "int32_t": np.dtype(np.int32), "float": np.dtype(np.float32)}


def _parse_param(text: str) -> Param:
    text = " ".join(text.split())
    ctype = re.search(r"\b(u?int\d+_t|float|kml_\w+)\b", text)
    name = re.search(r"(\w+)\s*(\[\s*(\d+)\s*\])?$", text)
    assert ctype and name, text
    length = int(name.group(3)) if name.group(3) else None
    return Param(name.group(1), ctype.group(1), text.count("*") + text.count("["), length)


def parse_header() -> tuple[dict[str, tuple[str, list[Param]]], dict[str, int]]:
    """Prototypes (return type, parameters) and each struct's number of int32 fields."""
    text = re.sub(r"/\*.*?\*/", " ", HEADER.read_text(), flags=re.S)
    protos = {name: (ret, [_parse_param(p) for p in params.split(",")])
              for ret, name, params in re.findall(
                  r"\b(void|int32_t)\s+(kml_\w+)\s*\(([^)]*)\)\s*;", text)}
    structs: dict[str, int] = {}
    for body, name in re.findall(r"typedef\s+struct\s*\{(.*?)\}\s*(\w+)\s*;", text, flags=re.S):
        count = 0
        for decl in filter(None, (d.strip() for d in body.split(";"))):
            assert decl.startswith("int32_t "), f"{name}: only int32_t fields expected: {decl}"
            for field in decl[len("int32_t "):].split(","):
                size = re.search(r"\[(\d+)\]", field)
                count += int(size.group(1)) if size else 1
        structs[name] = count
    return protos, structs


PROTOS, STRUCTS = parse_header()


def _flatten(values: object) -> list[int]:
    out: list[int] = []
    for v in values:  # type: ignore[attr-defined]
        out.extend(_flatten(v) if isinstance(v, list | tuple | np.ndarray) else [int(v)])
    return out


# ---- building and calling the library ------------------------------------------------------

def compile_library(directory: Path) -> ctypes.CDLL:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is missing")
    lib = directory / "libkml_nn.so"
    subprocess.run([gcc, *STRICT_CFLAGS, "-O2", "-fPIC", "-shared", f"-I{RUNTIME}", str(SOURCE),
                    "-o", str(lib), "-lm"], check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib))


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    return compile_library(tmp_path_factory.mktemp("kml_nn"))


def _function(lib: ctypes.CDLL, name: str) -> Callable[..., object]:
    ret, params = PROTOS[name.removesuffix("_portable")]
    fn = getattr(lib, name)
    fn.restype = ctypes.c_int32 if ret == "int32_t" else None
    fn.argtypes = [_SCALAR_CTYPES[p.ctype] if p.pointer == 0 else ctypes.c_void_p
                   for p in params]
    return fn


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _check_array(call: KernelCall, p: Param, a: np.ndarray, what: str) -> None:
    where = f"{call.kernel} argument {p.name!r} ({what})"
    assert p.pointer == 1 and p.ctype in _DTYPES, f"{where}: header wants {p}"
    assert a.dtype == _DTYPES[p.ctype], f"{where}: {a.dtype}, header wants {p.ctype}"
    if p.length is not None:
        assert a.size == p.length, f"{where}: {a.size} values, header wants {p.length}"


def call_kernel(lib: ctypes.CDLL, graph: Graph, call: KernelCall, feeds: dict[int, np.ndarray],
                name: str | None = None, fill: int = 0x5A,
                alias: bool = False) -> dict[int, np.ndarray]:
    """Runs one KernelCall; returns the output tensors (index -> array in tensor shape).

    alias: the output is written over (a copy of) the first input, as the planner does
    for in_place calls."""
    _, params = PROTOS[call.kernel]
    assert len(call.args) == len(params), (
        f"{call.kernel}: nn_calls gives {len(call.args)} arguments, the header declares "
        f"{len(params)}")
    keep: list[object] = []
    outputs: dict[int, np.ndarray] = {}
    first_in: np.ndarray | None = None
    values: list[object] = []

    def out_array(index: int) -> np.ndarray:
        t = graph.tensors[index]
        a = np.empty(t.shape, t.dtype)
        a.view(np.uint8)[...] = fill
        outputs[index] = a
        return a

    for arg, p in zip(call.args, params, strict=True):
        k = arg.kind
        if k in _ARG_SCALARS:
            assert p.pointer == 0 and p.ctype == _ARG_SCALARS[k], (
                f"{call.kernel} argument {p.name!r}: nn_calls gives {k}, header wants {p}")
            values.append(float(arg.value) if k == "f32" else int(arg.value))
        elif k in ("in", "const"):
            if k == "in":
                a = np.array(feeds[int(arg.value)], copy=True, order="C")
                first_in = a if first_in is None else first_in
            else:
                a = np.ascontiguousarray(arg.value)
            _check_array(call, p, a, k)
            keep.append(a)
            values.append(_ptr(a))
        elif k == "out":
            index = int(arg.value)
            if alias:
                assert first_in is not None and first_in.nbytes == graph.tensors[index].nbytes
                a = first_in.view(graph.tensors[index].dtype).reshape(graph.tensors[index].shape)
                outputs[index] = a
            else:
                a = out_array(index)
            _check_array(call, p, a, k)
            values.append(_ptr(a))
        elif k == "null":
            assert p.pointer == 1, f"{call.kernel} argument {p.name!r}: NULL for {p}"
            values.append(None)
        elif k == "struct":
            flat = _flatten(arg.value)
            assert p.ctype == arg.ctype and len(flat) == STRUCTS[p.ctype], (
                f"{call.kernel}: {arg.ctype} with {len(flat)} fields, header wants {p.ctype} "
                f"with {STRUCTS.get(p.ctype)}")
            a = np.array(flat, np.int32)
            keep.append(a)
            values.append(_ptr(a))
        elif k in ("ins", "outs"):
            assert p.pointer == 2 and p.ctype == "int8_t", (call.kernel, p)
            arrays = ([np.ascontiguousarray(feeds[int(i)]) for i in arg.value] if k == "ins"
                      else [out_array(int(i)) for i in arg.value])
            table = (ctypes.c_void_p * len(arrays))(*[_ptr(a) for a in arrays])
            keep.extend([arrays, table])
            values.append(ctypes.addressof(table))
        elif k in ("scratch", "acc"):
            dtype = np.int16 if k == "scratch" else np.int32
            n = int(arg.value) // 2 if k == "scratch" else int(arg.value)
            a = np.full(max(n, 1), 0x55, dtype)
            _check_array(call, Param(p.name, p.ctype, p.pointer, None), a, k)
            keep.append(a)
            values.append(_ptr(a))
        else:
            raise AssertionError(f"{call.kernel}: unknown argument kind {k}")
    _function(lib, name or call.kernel)(*values)
    return outputs


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    want = np.asarray(want)
    assert got.size == want.size and got.dtype == want.dtype, (what, got.shape, want.shape)
    g, w = got.reshape(-1), want.reshape(-1)
    if g.tobytes() != w.tobytes():
        bad = np.flatnonzero(g.view(np.uint8 if g.itemsize == 1 else np.int32)
                             != w.view(np.uint8 if w.itemsize == 1 else np.int32))
        pairs = ", ".join(f"[{i}] {g[i]} != {w[i]}" for i in bad[:8])
        pytest.fail(f"{what}: {bad.size}/{g.size} elements differ: {pairs}")


def check_case(lib: ctypes.CDLL, graph: Graph, inputs: list[np.ndarray], what: str) -> None:
    """Every kernel call of the (one-op) graph against the reference, all variants."""
    assert len(graph.ops) == 1
    want = Interpreter(graph).run(inputs)
    op = graph.ops[0]
    call = kernel_call(graph, op, prepare(graph, op))
    feeds = dict(zip(graph.inputs, inputs, strict=True))
    names = [call.kernel] + ([call.kernel + "_portable"] if call.kernel in PORTABLE else [])
    runs = [(n, fill, False) for n in names for fill in (0x5A, 0xA5)]
    if call.in_place:
        runs.append((call.kernel, 0, True))
    for name, fill, alias in runs:
        got = call_kernel(lib, graph, call, feeds, name=name, fill=fill, alias=alias)
        for index, w in zip(graph.outputs, want, strict=True):
            assert_same(got[index], w, f"{what}: {name} (fill {fill:#x}, in place {alias}) "
                                       f"output {graph.tensors[index].name}")


# ---- the conformance cases -------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_operator_bit_exact_with_reference(lib: ctypes.CDLL, kind: str) -> None:
    for seed in SEEDS:
        graph, inputs = random_case(kind, seed)
        check_case(lib, graph, inputs, f"{kind} seed {seed}")


def test_every_header_function_is_exported(lib: ctypes.CDLL) -> None:
    for name in PROTOS:
        if not name.endswith("_dsp"):
            assert hasattr(lib, name), name
    for name in PORTABLE:
        assert hasattr(lib, name + "_portable"), name


# ---- shapes the conformance generator does not reach ---------------------------------------

def _graph(name: str) -> Graph:
    return Graph(tensors=[], ops=[], inputs=[], outputs=[], name=name)


def _quant(rng: np.random.Generator) -> Quantization:
    scale = float(np.exp(rng.uniform(np.log(0.004), np.log(0.2))))
    return Quantization.per_tensor(scale, int(rng.integers(-100, 101)))


def _int8(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-128, 128, size=shape).astype(np.int8)


def conv_case(seed: int, kind: str, batch: int, h: int, w: int, cin: int, cout: int, k: int,
              stride: int = 1, dilation: int = 1, padding: str = "SAME", groups: int = 1,
              activation: str = "NONE") -> Case:
    """CONV_2D (cout filters over cin // groups channels) or DEPTHWISE_CONV_2D (cout =
    cin * depth multiplier) on a batch, with per-channel weight scales and a bias."""
    rng = np.random.default_rng(seed)
    g = _graph(kind.lower())
    qx = _quant(rng)
    oh, ow = out_size(padding, h, k, stride, dilation), out_size(padding, w, k, stride, dilation)
    depthwise = kind == "DEPTHWISE_CONV_2D"
    w_shape = (1, k, k, cout) if depthwise else (cout, k, k, cin // groups)
    w_scale = np.exp(rng.uniform(np.log(0.002), np.log(0.05), size=cout)).astype(np.float32)
    depth = k * k * (1 if depthwise else cin // groups)
    typical = np.sqrt(depth) * 40.0 * qx.s * float(np.mean(w_scale))
    qy = Quantization.per_tensor(typical * float(np.exp(rng.uniform(-1, 1))),
                                 int(rng.integers(-60, 61)))
    x = g.add_tensor(Tensor("x", (batch, h, w, cin), "int8", qx))
    wq = Quantization(w_scale, np.zeros(cout, np.int64), 3 if depthwise else 0)
    wi = g.add_tensor(Tensor("w", w_shape, "int8", wq,
                             rng.integers(-127, 128, size=w_shape).astype(np.int8)))
    bq = Quantization((np.float32(qx.s) * w_scale).astype(np.float32), np.zeros(cout, np.int64))
    bi = g.add_tensor(Tensor("b", (cout,), "int32", bq,
                             rng.integers(-4000, 4001, size=cout).astype(np.int32)))
    y = g.add_tensor(Tensor("y", (batch, oh, ow, cout), "int8", qy))
    options: dict[str, object] = {"depth_multiplier": cout // cin} if depthwise else {}
    g.add_op(kind, [x, wi, bi], [y], padding=padding, stride_h=stride, stride_w=stride,
             dilation_h=dilation, dilation_w=dilation, fused_activation=activation, **options)
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, (batch, h, w, cin))]


def pool_case(seed: int, kind: str, batch: int, h: int, w: int, c: int, f: int, stride: int,
              padding: str) -> Case:
    rng = np.random.default_rng(seed)
    g = _graph(kind.lower())
    q = _quant(rng)
    x = g.add_tensor(Tensor("x", (batch, h, w, c), "int8", q))
    y = g.add_tensor(Tensor("y", (batch, out_size(padding, h, f, stride),
                                  out_size(padding, w, f, stride), c), "int8", q))
    g.add_op(kind, [x], [y], padding=padding, stride_h=stride, stride_w=stride, filter_h=f,
             filter_w=f, fused_activation="RELU6")
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, (batch, h, w, c))]


def fc_case(seed: int, rows: int, depth: int, n_out: int, per_channel: bool, w_zp: int) -> Case:
    rng = np.random.default_rng(seed)
    g = _graph("fc")
    qx = _quant(rng)
    scales = np.exp(rng.uniform(np.log(0.002), np.log(0.05),
                                size=n_out if per_channel else 1)).astype(np.float32)
    wq = Quantization(scales, np.full(scales.shape, w_zp, np.int64), 0)
    qy = Quantization.per_tensor(np.sqrt(depth) * 60.0 * qx.s * float(np.mean(scales)), 7)
    x = g.add_tensor(Tensor("x", (rows, depth), "int8", qx))
    wi = g.add_tensor(Tensor("w", (n_out, depth), "int8", wq,
                             rng.integers(-127, 128, size=(n_out, depth)).astype(np.int8)))
    bi = g.add_tensor(Tensor("b", (n_out,), "int32", None,
                             rng.integers(-4000, 4001, size=n_out).astype(np.int32)))
    y = g.add_tensor(Tensor("y", (rows, n_out), "int8", qy))
    g.add_op("FULLY_CONNECTED", [x, wi, bi], [y], fused_activation="RELU")
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, (rows, depth))]


def binary_case(seed: int, kind: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...],
                b_constant: bool = False) -> Case:
    rng = np.random.default_rng(seed)
    g = _graph(kind.lower())
    qa, qb = _quant(rng), _quant(rng)
    scale = (qa.s + qb.s) if kind == "ADD" else qa.s * qb.s * 80
    out_shape = tuple(np.broadcast_shapes(a_shape, b_shape))
    a = g.add_tensor(Tensor("a", a_shape, "int8", qa))
    b_data = _int8(rng, b_shape) if b_constant else None
    b = g.add_tensor(Tensor("b", b_shape, "int8", qb, b_data))
    y = g.add_tensor(Tensor("y", out_shape, "int8", Quantization.per_tensor(scale, -5)))
    g.add_op(kind, [a, b], [y], fused_activation="NONE")
    g.inputs, g.outputs = ([a] if b_constant else [a, b]), [y]
    return g, [_int8(rng, a_shape)] + ([] if b_constant else [_int8(rng, b_shape)])


def reduce_case(seed: int, kind: str, shape: tuple[int, ...], axes: list[int]) -> Case:
    rng = np.random.default_rng(seed)
    g = _graph(kind.lower())
    qx = _quant(rng)
    qy = qx if kind == "REDUCE_MAX" else _quant(rng)
    x = g.add_tensor(Tensor("x", shape, "int8", qx))
    a = g.add_tensor(Tensor("axes", (len(axes),), "int32", data=np.array(axes, np.int32)))
    y = g.add_tensor(Tensor("y", tuple(d for i, d in enumerate(shape) if i not in axes),
                            "int8", qy))
    g.add_op(kind, [x, a], [y], keep_dims=False)
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, shape)]


def unary_case(kind: str, x: np.ndarray, qx: Quantization, **options: object) -> Case:
    g = _graph(kind.lower())
    qy = {"SOFTMAX": (1 / 256, -128), "LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}[kind]
    xi = g.add_tensor(Tensor("x", x.shape, "int8", qx))
    y = g.add_tensor(Tensor("y", x.shape, "int8", Quantization.per_tensor(*qy)))
    g.add_op(kind, [xi], [y], **options)
    g.inputs, g.outputs = [xi], [y]
    return g, [x]


def quantize_case(x: np.ndarray, scale: float, zp: int) -> Case:
    g = _graph("quantize")
    xi = g.add_tensor(Tensor("x", x.shape, "float32"))
    y = g.add_tensor(Tensor("y", x.shape, "int8", Quantization.per_tensor(scale, zp)))
    g.add_op("QUANTIZE", [xi], [y])
    g.inputs, g.outputs = [xi], [y]
    return g, [x.astype(np.float32)]


def _softmax_all_values(seed: int, rows: int, scale: float, beta: float) -> Case:
    x = np.random.default_rng(seed).permutation(np.arange(-128, 128)).astype(np.int8)
    return unary_case("SOFTMAX", x.reshape(1, rows, 256 // rows),
                      Quantization.per_tensor(scale, 3), beta=beta)


STRUCTURAL: dict[str, Callable[[], Case]] = {
    "conv batch 3": lambda: conv_case(1, "CONV_2D", 3, 5, 7, 3, 4, 3, stride=2),
    "conv grouped 3 groups": lambda: conv_case(2, "CONV_2D", 1, 6, 5, 6, 9, 3),
    "conv grouped dilated": lambda: conv_case(3, "CONV_2D", 2, 7, 7, 8, 4, 2, dilation=2,
                                              groups=4),
    "conv wide channels": lambda: conv_case(4, "CONV_2D", 1, 4, 4, 40, 37, 3, activation="RELU6"),
    "conv 1x1 valid": lambda: conv_case(5, "CONV_2D", 2, 3, 9, 5, 6, 1, padding="VALID"),
    "dwconv batch 2": lambda: conv_case(6, "DEPTHWISE_CONV_2D", 2, 6, 5, 4, 8, 3),
    "dwconv 40 channels": lambda: conv_case(7, "DEPTHWISE_CONV_2D", 1, 5, 5, 40, 40, 3),
    "dwconv 20x3 channels": lambda: conv_case(8, "DEPTHWISE_CONV_2D", 1, 4, 6, 20, 60, 3,
                                              stride=2),
    "dwconv 3x13 channels": lambda: conv_case(9, "DEPTHWISE_CONV_2D", 1, 5, 4, 3, 39, 2,
                                              dilation=2),
    "dwconv 1x70 channels": lambda: conv_case(10, "DEPTHWISE_CONV_2D", 1, 3, 3, 1, 70, 3),
    "avgpool 70 channels batch 2": lambda: pool_case(11, "AVERAGE_POOL_2D", 2, 5, 6, 70, 3, 2,
                                                     "SAME"),
    "maxpool 70 channels batch 2": lambda: pool_case(12, "MAX_POOL_2D", 2, 5, 6, 70, 3, 2,
                                                     "SAME"),
    "avgpool global": lambda: pool_case(13, "AVERAGE_POOL_2D", 1, 7, 9, 33, 9, 1, "SAME"),
    "fc per-channel": lambda: fc_case(14, 3, 50, 13, True, 0),
    "fc weight zero point": lambda: fc_case(15, 2, 37, 6, False, 9),
    "fc per-channel weight zero point": lambda: fc_case(16, 4, 64, 9, True, -3),
    "fc depth 1000": lambda: fc_case(17, 1, 1000, 5, False, 0),
    "add broadcast a": lambda: binary_case(18, "ADD", (1, 1, 1, 5), (1, 3, 4, 5)),
    "add broadcast both": lambda: binary_case(19, "ADD", (1, 3, 1, 5), (1, 1, 4, 5)),
    "add constant": lambda: binary_case(20, "ADD", (1, 3, 4, 5), (1, 1, 1, 5), True),
    "mul broadcast a": lambda: binary_case(21, "MUL", (1, 4, 1), (1, 4, 6)),
    "mul broadcast both": lambda: binary_case(22, "MUL", (1, 1, 2, 3), (1, 5, 2, 1)),
    "mean 1600": lambda: reduce_case(23, "MEAN", (1, 40, 40, 3), [1, 2]),
    "mean inner": lambda: reduce_case(24, "MEAN", (1, 3, 5, 7), [1, 3]),
    "reduce max 1600": lambda: reduce_case(25, "REDUCE_MAX", (1, 40, 40, 3), [1, 2]),
    "softmax depth 600 equal": lambda: unary_case(
        "SOFTMAX", np.full((1, 2, 600), 17, np.int8), Quantization.per_tensor(0.001, 0)),
    "softmax depth 511 equal": lambda: unary_case(
        "SOFTMAX", np.full((1, 511), -3, np.int8), Quantization.per_tensor(0.01, 0)),
    "softmax depth 256 beta 2": lambda: _softmax_all_values(26, 1, 0.05, 2.0),
    "logistic 1000": lambda: unary_case("LOGISTIC", _int8(np.random.default_rng(27), (1, 1000)),
                                        Quantization.per_tensor(0.03, -7)),
    "tanh 1000": lambda: unary_case("TANH", _int8(np.random.default_rng(28), (1, 1000)),
                                    Quantization.per_tensor(0.02, 11)),
}


@pytest.mark.parametrize("name", sorted(STRUCTURAL))
def test_structural_case(lib: ctypes.CDLL, name: str) -> None:
    graph, inputs = STRUCTURAL[name]()
    check_case(lib, graph, inputs, name)


# ---- fixed-point edges ----------------------------------------------------------------------

def mbqm_edge_cases() -> np.ndarray:
    """(x, multiplier, shift) rows: INT32_MIN / MAX and small x, shifts -31..7,
    multipliers across [2^30, 2^31) plus 0 and INT32_MIN (SRDHM's saturating case)."""
    rng = np.random.default_rng(2024)
    xs = np.concatenate([[fp.INT32_MIN, fp.INT32_MIN + 1, -(1 << 30), -65536, -255, -1, 0, 1,
                          255, 65535, 1 << 30, fp.INT32_MAX - 1, fp.INT32_MAX],
                         rng.integers(fp.INT32_MIN, fp.INT32_MAX, size=12, endpoint=True),
                         rng.integers(-70000, 70000, size=8)])
    ms = np.concatenate([[1 << 30, (1 << 30) + 1, 1518500250, fp.INT32_MAX - 1, fp.INT32_MAX, 0,
                          fp.INT32_MIN],
                         rng.integers(1 << 30, fp.INT32_MAX, size=5, endpoint=True)])
    shifts = np.arange(-31, 8)
    grid = np.stack(np.meshgrid(xs, ms, shifts, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid.astype(np.int64)


def test_mbqm_edge_cases(lib: ctypes.CDLL) -> None:
    grid = mbqm_edge_cases()
    want = fp.multiply_by_quantized_multiplier(grid[:, 0], grid[:, 1], grid[:, 2])
    fn = _function(lib, "kml_mbqm")
    got = np.array([fn(int(x), int(m), int(s)) for x, m, s in grid], np.int64)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(tuple(grid[i]), int(got[i]), int(want[i])) for i in bad[:8]]


ACTIVATION_SCALES = np.geomspace(1e-4, 4.0, 15)
ACTIVATION_ZPS = (-128, -77, 0, 31, 127)


@pytest.mark.parametrize("kind", ["LOGISTIC", "TANH"])
def test_gemmlowp_activation_on_all_int8_inputs(lib: ctypes.CDLL, kind: str) -> None:
    everything = np.arange(-128, 128, dtype=np.int8)
    for scale in ACTIVATION_SCALES:
        for zp in ACTIVATION_ZPS:
            q = Quantization.per_tensor(float(scale), zp)
            # 256 values run element by element, 768 through the kernel's 256-entry table.
            for x in (everything.reshape(1, 256), np.tile(everything[::-1], 3).reshape(1, 768)):
                graph, inputs = unary_case(kind, x, q)
                check_case(lib, graph, inputs, f"{kind} scale {scale:.3g} zp {zp} n {x.size}")


def test_softmax_on_all_int8_inputs(lib: ctypes.CDLL) -> None:
    for k, scale in enumerate(np.geomspace(1e-3, 4.0, 12)):
        for beta in (1.0, 0.25, 3.0):
            for rows in (1, 16, 64, 128):
                graph, inputs = _softmax_all_values(k, rows, float(scale), beta)
                check_case(lib, graph, inputs, f"softmax scale {scale:.3g} beta {beta} "
                                               f"rows {rows}")


def test_quantize_rounding_edges(lib: ctypes.CDLL) -> None:
    ties = np.arange(-300, 301) / 8.0  # exact quotients, halves included, for scale 2^-k
    near = np.float32([0.49999997, -0.49999997, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5,
                       126.5, 127.5, -128.5, -129.5, 1e6, -1e6, 3e9, -3e9, 1e15, -1e15])
    for scale, zp in ((1.0, 0), (0.25, -128), (0.125, 127), (0.5, 3), (0.1, -7), (1e-3, 0)):
        for x in (ties * scale, near * np.float32(scale), near):
            graph, inputs = quantize_case(np.asarray(x, np.float32).reshape(1, -1), scale, zp)
            check_case(lib, graph, inputs, f"quantize scale {scale} zp {zp}")


def test_quantize_huge_and_non_finite_inputs(lib: ctypes.CDLL) -> None:
    """Past |x / scale| = 2^63 the reference's numpy cast to int64 is platform-defined (x86
    gives INT64_MIN, so +1e30 -> -128); the C kernel saturates: +1e30 and +inf -> 127,
    -1e30 and -inf -> -128, NaN -> -128."""
    x = np.array([1e30, -1e30, np.inf, -np.inf, np.nan], np.float32)
    out = np.zeros(x.size, np.int8)
    _function(lib, "kml_quantize_f32_s8")(_ptr(x), x.size, 0.1, 5, _ptr(out))
    assert out.tolist() == [127, -128, 127, -128, -128]


# ---- the same calls under AddressSanitizer / UndefinedBehaviorSanitizer -----------------------

def _c_number(v: object, ctype: str) -> str:
    if ctype == "float":
        return float(np.float32(v)).hex() + "f"
    value = int(v)  # type: ignore[call-overload]
    if ctype == "uint32_t":
        return f"{value}u"
    return "(-2147483647 - 1)" if value == fp.INT32_MIN else str(value)


def _c_array(name: str, a: np.ndarray, const: bool) -> str:
    ctype = {v: k for k, v in _DTYPES.items()}[a.dtype]
    body = ", ".join(_c_number(v, ctype) for v in a.reshape(-1).tolist())
    return f"static {'const ' if const else ''}{ctype} {name}[{max(a.size, 1)}] = {{{body}}};"


def c_driver(cases: list[Case]) -> tuple[str, list[list[tuple[int, Tensor]]]]:
    """A C program making every kernel call of the cases and writing the outputs to
    stdout in order, then kml_mbqm over mbqm_edge_cases(); and the outputs' layout."""
    lines = ['#include "kml_nn.h"', "#include <stdio.h>", ""]
    layout: list[list[tuple[int, Tensor]]] = []
    for n, (graph, inputs) in enumerate(cases):
        op = graph.ops[0]
        call = kernel_call(graph, op, prepare(graph, op))
        _, params = PROTOS[call.kernel]
        feeds = dict(zip(graph.inputs, inputs, strict=True))
        outs: list[tuple[int, Tensor]] = []
        exprs: list[str] = []

        def out_name(index: int, n: int = n, outs: list[tuple[int, Tensor]] = outs,
                     graph: Graph = graph) -> str:
            t = graph.tensors[index]
            if all(i != index for i, _ in outs):
                lines.append(f"static {'float' if t.dtype == 'float32' else 'int8_t'} "
                             f"c{n}_t{index}[{max(t.size, 1)}];")
                outs.append((index, t))
            return f"c{n}_t{index}"

        for j, (arg, p) in enumerate(zip(call.args, params, strict=True)):
            name = f"c{n}_a{j}"
            if arg.kind in _ARG_SCALARS:
                exprs.append(f"({p.ctype}){_c_number(arg.value, p.ctype)}")
            elif arg.kind in ("in", "const"):
                a = feeds[int(arg.value)] if arg.kind == "in" else np.asarray(arg.value)
                lines.append(_c_array(name, np.ascontiguousarray(a), True))
                exprs.append(name)
            elif arg.kind == "out":
                exprs.append(out_name(int(arg.value)))
            elif arg.kind == "null":
                exprs.append("NULL")
            elif arg.kind == "struct":
                fields = ", ".join("{" + ", ".join(map(str, _flatten(v))) + "}"
                                   if isinstance(v, list | tuple) else str(int(v))
                                   for v in arg.value)  # type: ignore[attr-defined]
                lines.append(f"static const {arg.ctype} {name} = {{{fields}}};")
                exprs.append(f"&{name}")
            elif arg.kind == "ins":
                names = []
                for i in arg.value:  # type: ignore[attr-defined]
                    names.append(f"c{n}_in{int(i)}")
                    lines.append(_c_array(names[-1], np.ascontiguousarray(feeds[int(i)]), True))
                lines.append(f"static const int8_t *const {name}[] = {{{', '.join(names)}}};")
                exprs.append(name)
            elif arg.kind == "outs":
                names = [out_name(int(i)) for i in arg.value]  # type: ignore[attr-defined]
                lines.append(f"static int8_t *const {name}[] = {{{', '.join(names)}}};")
                exprs.append(name)
            elif arg.kind in ("scratch", "acc"):
                ctype = "int16_t" if arg.kind == "scratch" else "int32_t"
                count = int(arg.value) // 2 if arg.kind == "scratch" else int(arg.value)
                lines.append(f"static {ctype} {name}[{max(count, 1)}];")
                exprs.append(name)
        lines.append(f"static void case{n}(void)\n{{\n    {call.kernel}({', '.join(exprs)});")
        for index, t in outs:
            itemsize = 4 if t.dtype == "float32" else 1
            lines.append(f"    fwrite(c{n}_t{index}, 1, {t.size * itemsize}, stdout);")
        lines.append("}\n")
        layout.append(outs)
    grid = mbqm_edge_cases()
    rows = ",\n".join("    {" + ", ".join(_c_number(v, "int32_t") for v in row) + "}"
                      for row in grid.tolist())
    lines.append(f"static const int32_t mbqm_cases[{len(grid)}][3] = {{\n{rows}\n}};\n")
    lines.append("int main(void)\n{\n    int32_t i;")
    lines.extend(f"    case{n}();" for n in range(len(cases)))
    lines.append(f"    for (i = 0; i < {len(grid)}; ++i) {{\n"
                 "        const int32_t r = kml_mbqm(mbqm_cases[i][0], mbqm_cases[i][1], "
                 "mbqm_cases[i][2]);\n        fwrite(&r, sizeof r, 1, stdout);\n    }\n"
                 "    return 0;\n}")
    return "\n".join(lines) + "\n", layout


def test_kernels_under_sanitizers(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is missing")
    cases = [random_case(kind, seed) for kind in sorted(GENERATORS) for seed in SANITIZER_SEEDS]
    cases += [build() for build in STRUCTURAL.values()]
    everything = np.arange(-128, 128, dtype=np.int8)
    for kind in ("LOGISTIC", "TANH"):
        for scale in ACTIVATION_SCALES[::3]:
            cases.append(unary_case(kind, np.tile(everything, 2).reshape(1, 512),
                                    Quantization.per_tensor(float(scale), -3)))
            cases.append(unary_case(kind, everything.reshape(1, 256),
                                    Quantization.per_tensor(float(scale), 100)))
    cases += [_softmax_all_values(k, rows, float(s), 1.0) for k, s in
              enumerate(np.geomspace(1e-3, 4.0, 4)) for rows in (1, 32)]
    source, layout = c_driver(cases)
    driver = tmp_path / "driver.c"
    driver.write_text(source)
    exe = tmp_path / "driver"
    subprocess.run([gcc, *STRICT_CFLAGS, "-O2", *SANITIZE_FLAGS, f"-I{RUNTIME}", str(SOURCE),
                    str(driver), "-o", str(exe), "-lm"], check=True, capture_output=True,
                   text=True)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    run = subprocess.run([str(exe)], capture_output=True, env=env, check=False)
    assert run.returncode == 0 and not run.stderr, run.stderr.decode(errors="replace")[-4000:]
    data, offset = run.stdout, 0
    for (graph, inputs), outs in zip(cases, layout, strict=True):
        want = dict(zip(graph.outputs, Interpreter(graph).run(inputs), strict=True))
        for index, t in outs:
            dtype = np.dtype(t.dtype)
            got = np.frombuffer(data, dtype, t.size, offset)
            offset += t.size * dtype.itemsize
            assert_same(got, want[index], f"sanitized {graph.name} output {t.name}")
    grid = mbqm_edge_cases()
    got = np.frombuffer(data, np.int32, len(grid), offset)
    assert offset + got.nbytes == len(data)
    want = fp.multiply_by_quantized_multiplier(grid[:, 0], grid[:, 1], grid[:, 2])
    assert np.array_equal(got.astype(np.int64), want)
