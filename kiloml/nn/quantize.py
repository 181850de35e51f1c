"""Post-training int8 quantization following the TFLite quantization spec.

- activations: asymmetric int8 per tensor, range from calibration windows
  (``minmax``, ``percentile`` or ``mse`` clipping);
- weights: symmetric int8 in [-127, 127], per output channel for CONV_2D
  (axis 0) and DEPTHWISE_CONV_2D (axis 3), per tensor for FULLY_CONNECTED;
- biases: int32 with scale = input scale x weight scale, zero point 0;
- fixed output quantization where TFLite's kernels require it (softmax and
  logistic 1/256 at -128, tanh 1/128 at 0);
- operators that only move data (pooling, reshape, pad, concatenation,
  split, unpack, relu6, reduce-max) share one quantization between inputs and
  outputs, as TFLM's kernels assume.

Before quantizing, ``prepare_float_graph`` fuses activations into the op that
produces their input (BatchNorm folding happens at import, where the
BatchNorm is still visible).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import numpy as np

from kiloml.errors import KilomlError
from kiloml.nn.fixedpoint import round_f32
from kiloml.nn.graph import Graph, Quantization, Tensor
from kiloml.nn.reference import Interpreter

CalibrationMethod = Literal["minmax", "percentile", "mse"]

_FUSABLE = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL",
            "AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"}
SHARED_QUANT = {"MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "SQUEEZE", "EXPAND_DIMS",
                 "PAD", "REDUCE_MAX", "CONCATENATION", "SPLIT", "UNPACK", "RELU6",
                 "STRIDED_SLICE", "SLICE", "TRANSPOSE"}
_FIXED_OUTPUT = {"SOFTMAX": (1.0 / 256, -128), "LOGISTIC": (1.0 / 256, -128),
                 "TANH": (1.0 / 128, 0)}


def prepare_float_graph(graph: Graph) -> Graph:
    """Fuse RELU/RELU6 into the producing op when it is the only consumer."""
    g = copy.deepcopy(graph)
    producers = g.producers()
    consumers = g.consumers()
    keep = []
    for op in g.ops:
        if op.kind in ("RELU", "RELU6"):
            src = op.inputs[0]
            prod = producers.get(src)
            if (prod is not None and g.ops[prod].kind in _FUSABLE
                    and g.ops[prod].options.get("fused_activation") == "NONE"
                    and len(consumers.get(src, [])) == 1 and src not in g.outputs):
                g.ops[prod].options["fused_activation"] = op.kind
                g.ops[prod].outputs = [op.outputs[0]]
                continue
        keep.append(op)
    g.ops = keep
    return g.prune()


def choose_quantization(rmin: float, rmax: float) -> Quantization:
    """Asymmetric int8 params whose range contains 0 (so zero padding is exact)."""
    rmin = min(float(rmin), 0.0)
    rmax = max(float(rmax), 0.0)
    if rmax - rmin < 1e-12:
        rmax = rmin + 1e-6
    scale = np.float32((rmax - rmin) / 255.0)
    zero_point = int(np.clip(np.round(-128 - rmin / float(scale)), -128, 127))
    return Quantization.per_tensor(float(scale), zero_point)


def value_range(values: np.ndarray, method: CalibrationMethod, percentile: float
                ) -> tuple[float, float]:
    v = values.astype(np.float64).ravel()
    if v.size == 0:
        return 0.0, 0.0
    lo, hi = float(v.min()), float(v.max())
    if method == "minmax":
        return lo, hi
    if method == "percentile":
        return float(np.percentile(v, 100.0 - percentile)), float(np.percentile(v, percentile))
    # mse: the clipping of the min/max range that minimizes the quantization error.
    sample = v if v.size <= 200_000 else np.random.default_rng(0).choice(v, 200_000)
    best, best_err = (lo, hi), np.inf
    for ratio in np.linspace(0.3, 1.0, 36):
        q = choose_quantization(lo * ratio, hi * ratio)
        s, zp = q.s, q.zp
        deq = (np.clip(np.round(sample / s) + zp, -128, 127) - zp) * s
        err = float(np.mean((deq - sample) ** 2))
        if err < best_err:
            best, best_err = (lo * ratio, hi * ratio), err
    return best


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def quantize_weights(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, Quantization]:
    """Symmetric int8 in [-127, 127], per channel along ``axis`` (None = per tensor)."""
    w = w.astype(np.float32)
    if axis is None:
        amax = np.array([np.abs(w).max()], np.float32)
    else:
        amax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, Quantization(scale, np.zeros_like(scale, dtype=np.int64), axis or 0)


def check_calibration(graph: Graph, calibration: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Calibration arrays for ``graph``'s inputs, as float32: one per input, floating
    point, shaped [N, *input.shape[1:]] with N >= 1, every value finite. A bad one is a
    KilomlError naming the input and both shapes (the caller adds the file)."""
    if isinstance(calibration, np.ndarray):
        calibration = [calibration]
    if len(calibration) != len(graph.inputs):
        raise KilomlError(f"{len(calibration)} calibration arrays for a model with "
                          f"{len(graph.inputs)} inputs; give one per input")
    out = []
    for array, t in zip(calibration, graph.input_tensors, strict=True):
        a = np.asarray(array)
        want = "[N, " + ", ".join(str(d) for d in t.shape[1:]) + "]"
        if a.dtype.kind != "f":
            raise KilomlError(f"calibration data has dtype {a.dtype}; the model input "
                              f"{t.name!r} needs floating-point values {want}")
        if a.ndim != len(t.shape) or tuple(a.shape[1:]) != tuple(t.shape[1:]) or not len(a):
            raise KilomlError(f"calibration data has shape {list(a.shape)}; the model input "
                              f"{t.name!r} needs {want} with N >= 1")
        with np.errstate(over="ignore"):
            a = a.astype(np.float32)
        if not np.isfinite(a).all():
            at = np.argwhere(~np.isfinite(a))[0].tolist()
            raise KilomlError(f"calibration value at index {at} is not finite in float32 "
                              f"(model input {t.name!r})")
        out.append(a)
    return out


def quantize_graph(
    float_graph: Graph,
    calibration: Sequence[np.ndarray],
    *,
    method: CalibrationMethod = "minmax",
    percentile: float = 99.99,
) -> Graph:
    """A float32 graph plus calibration inputs -> an int8 graph with int8 inputs and outputs.

    ``calibration``: per graph input, float [N, *input.shape[1:]] (N >= 1, finite) in the
    IR's layout (NHWC; an ONNX model's inputs after ``OnnxLayout.to_ir``), already
    standardized when the caller standardizes. Bad calibration data: KilomlError
    (``check_calibration``). Activation ranges by ``method``; weights per output channel
    for convolutions, per tensor for FULLY_CONNECTED; biases int32."""
    calibration = check_calibration(float_graph, calibration)
    g = prepare_float_graph(float_graph)
    trace: dict[int, np.ndarray] = {}
    Interpreter(g).run(calibration, trace=trace)

    # Tensors that must share one quantization.
    uf = _UnionFind()
    fixed: dict[int, Quantization] = {}
    for op in g.ops:
        if op.kind in SHARED_QUANT:
            data_inputs = [i for i in op.inputs if i >= 0 and not g.tensors[i].is_constant]
            for t in data_inputs + op.outputs:
                uf.union(t, op.outputs[0])
        if op.kind in _FIXED_OUTPUT:
            scale, zp = _FIXED_OUTPUT[op.kind]
            fixed[op.outputs[0]] = Quantization.per_tensor(scale, zp)

    activations = [i for i, t in enumerate(g.tensors) if not t.is_constant]
    groups: dict[int, list[int]] = {}
    for i in activations:
        groups.setdefault(uf.find(i), []).append(i)
    quant: dict[int, Quantization] = {}
    for members in groups.values():
        pinned = [fixed[m] for m in members if m in fixed]
        if pinned:
            q = pinned[0]
        else:
            ranges = [value_range(trace[m], method, percentile) for m in members if m in trace]
            q = choose_quantization(min(r[0] for r in ranges), max(r[1] for r in ranges))
        for m in members:
            quant[m] = q

    out = Graph(tensors=[], ops=[], inputs=list(g.inputs), outputs=list(g.outputs),
                name=g.name, description=g.description or "kiloml int8")
    for i, t in enumerate(g.tensors):
        if t.is_constant:
            out.tensors.append(copy.deepcopy(t))
        else:
            out.tensors.append(Tensor(t.name, t.shape, "int8", quant[i]))
    for op in g.ops:
        new = copy.deepcopy(op)
        if op.kind in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
            _quantize_layer(out, new, quant[op.inputs[0]])
        elif op.kind in ("ADD", "MUL"):
            for k, i in enumerate(op.inputs):
                if g.tensors[i].is_constant:
                    new.inputs[k] = _quantize_constant_operand(out, i)
        out.ops.append(new)
    return out.prune()


def _quantize_layer(graph: Graph, op, input_quant: Quantization) -> None:
    w = graph.tensors[op.inputs[1]]
    axis = {"FULLY_CONNECTED": None, "CONV_2D": 0, "DEPTHWISE_CONV_2D": 3}[op.kind]
    q, wq = quantize_weights(w.data, axis)
    graph.tensors[op.inputs[1]] = Tensor(w.name, w.shape, "int8", wq, q)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = graph.tensors[op.inputs[2]]
        bias_scale = (np.float32(input_quant.s) * wq.scale).astype(np.float32)
        qb = np.round(b.data.astype(np.float64) / bias_scale.astype(np.float64))
        qb = np.clip(qb, -(2 ** 31) + 1, 2 ** 31 - 1).astype(np.int32)
        graph.tensors[op.inputs[2]] = Tensor(
            b.name, b.shape, "int32",
            Quantization(bias_scale, np.zeros(bias_scale.shape, np.int64), 0), qb)


def _quantize_constant_operand(graph: Graph, index: int) -> int:
    t = graph.tensors[index]
    q = choose_quantization(float(t.data.min()), float(t.data.max()))
    data = np.clip(np.round(t.data / q.s) + q.zp, -128, 127).astype(np.int8)
    graph.tensors[index] = Tensor(t.name, t.shape, "int8", q, data)
    return index


def quantize_input(x: np.ndarray, tensor: Tensor) -> np.ndarray:
    """Float inputs -> the int8 a quantized model's input tensor expects (TFLite rounding);
    NaN -> -128, as the C (kiloml_model.c, kml_quantize_f32_s8)."""
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.asarray(x, np.float32) / np.float32(tensor.quant.s)
        r = round_f32(q) + tensor.quant.zp
    return np.clip(np.where(np.isnan(r), -128, r), -128, 127).astype(np.int8)


def dequantize_output(y: np.ndarray, tensor: Tensor) -> np.ndarray:
    return (tensor.quant.s * (y.astype(np.float64) - tensor.quant.zp)).astype(np.float32)
