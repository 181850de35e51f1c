"""Random int8 operator cases for conformance against TFLM.

Each case is a one-operator int8 graph with random shapes, options and
quantization, plus random int8 inputs. The test suite exports every case with
``write_tflite``, runs it in the TFLM interpreter and in kiloml's reference
interpreter, and requires bit-exact outputs; the C code generator is held to
the same cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from kiloml.nn.graph import FUSED_ACTIVATIONS, Graph, Quantization, Tensor
from kiloml.nn.op_params import out_size

Case = tuple[Graph, list[np.ndarray]]


def act_quant(rng: np.random.Generator) -> Quantization:
    scale = float(np.exp(rng.uniform(np.log(0.004), np.log(0.2))))
    return Quantization.per_tensor(scale, int(rng.integers(-100, 101)))


def _int8(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-128, 128, size=shape).astype(np.int8)


def new_graph(name: str) -> Graph:
    return Graph(tensors=[], ops=[], inputs=[], outputs=[], name=name, description="kiloml conf")


def act_tensor(g: Graph, name: str, shape: tuple[int, ...], q: Quantization) -> int:
    return g.add_tensor(Tensor(name, shape, "int8", q))


def _weighted(kind: str, rng: np.random.Generator) -> Case:
    g = new_graph(kind.lower())
    qx = act_quant(rng)
    activation = str(rng.choice(FUSED_ACTIVATIONS))
    if kind == "FULLY_CONNECTED":
        rows, n_in = int(rng.integers(1, 4)), int(rng.integers(1, 65))
        n_out = int(rng.integers(1, 33))
        x_shape: tuple[int, ...] = (rows, n_in)
        w_shape: tuple[int, ...] = (n_out, n_in)
        y_shape: tuple[int, ...] = (rows, n_out)
        w_scale = np.array([np.exp(rng.uniform(np.log(0.002), np.log(0.05)))], np.float32)
        depth = n_in
        options: dict[str, object] = {"fused_activation": activation}
    else:
        h, w = int(rng.integers(1, 10)), int(rng.integers(1, 14))
        cin = int(rng.integers(1, 9))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 6))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        padding = str(rng.choice(["SAME", "VALID"]))
        if padding == "VALID":
            kh, kw = min(kh, 1 + (h - 1) // dh), min(kw, 1 + (w - 1) // dw)
        oh, ow = out_size(padding, h, kh, sh, dh), out_size(padding, w, kw, sw, dw)
        if kind == "CONV_2D":
            cout = int(rng.integers(1, 9))
            w_shape = (cout, kh, kw, cin)
            depth = kh * kw * cin
            options = {}
        else:
            multiplier = int(rng.integers(1, 3))
            cout = cin * multiplier
            w_shape = (1, kh, kw, cout)
            depth = kh * kw
            options = {"depth_multiplier": multiplier}
        options.update(padding=padding, stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw,
                       fused_activation=activation)
        x_shape, y_shape = (1, h, w, cin), (1, oh, ow, cout)
        w_scale = np.exp(rng.uniform(np.log(0.002), np.log(0.05), size=cout)).astype(np.float32)
    axis = {"FULLY_CONNECTED": 0, "CONV_2D": 0, "DEPTHWISE_CONV_2D": 3}[kind]
    wq = Quantization(w_scale, np.zeros(w_scale.shape, np.int64), axis)
    weights = rng.integers(-127, 128, size=w_shape).astype(np.int8)
    typical = math.sqrt(depth) * 40.0 * 60.0 * qx.s * float(np.mean(w_scale))
    qy = Quantization.per_tensor(typical / 60.0 * float(np.exp(rng.uniform(-1.0, 1.0))),
                                 int(rng.integers(-60, 61)))
    x = act_tensor(g, "x", x_shape, qx)
    wi = g.add_tensor(Tensor("w", w_shape, "int8", wq, weights))
    inputs = [x, wi]
    # TFLM (tflite-micro 0.dev20261023) segfaults at load on a DEPTHWISE_CONV_2D without
    # bias; converters always emit one, so depthwise cases always have a bias.
    if rng.random() < 0.85 or kind == "DEPTHWISE_CONV_2D":
        bias_scale = (np.float32(qx.s) * w_scale).astype(np.float32)
        n = w_shape[0] if kind != "DEPTHWISE_CONV_2D" else w_shape[3]
        bias = rng.integers(-4000, 4001, size=n).astype(np.int32)
        inputs.append(g.add_tensor(Tensor(
            "b", (n,), "int32",
            Quantization(bias_scale, np.zeros(bias_scale.shape, np.int64), 0), bias)))
    else:
        inputs.append(-1)
    y = act_tensor(g, "y", y_shape, qy)
    g.add_op(kind, inputs, [y], **options)
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, x_shape)]


def _pool(kind: str, rng: np.random.Generator) -> Case:
    g = new_graph(kind.lower())
    h, w, c = int(rng.integers(1, 10)), int(rng.integers(1, 14)), int(rng.integers(1, 9))
    fh, fw = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    padding = str(rng.choice(["SAME", "VALID"]))
    if padding == "VALID":
        fh, fw = min(fh, h), min(fw, w)
    q = act_quant(rng)
    x = act_tensor(g, "x", (1, h, w, c), q)
    y = act_tensor(g, "y", (1, out_size(padding, h, fh, sh), out_size(padding, w, fw, sw), c), q)
    g.add_op(kind, [x], [y], padding=padding, stride_h=sh, stride_w=sw, filter_h=fh,
             filter_w=fw, fused_activation=str(rng.choice(FUSED_ACTIVATIONS)))
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, (1, h, w, c))]


def _reduce(kind: str, rng: np.random.Generator) -> Case:
    g = new_graph(kind.lower())
    rank = int(rng.integers(2, 5))
    shape = tuple(int(d) for d in rng.integers(1, 7, size=rank))
    shape = (1, *shape[1:])
    candidates = list(range(1, rank))
    n_axes = int(rng.integers(1, len(candidates) + 1))
    axes = sorted(int(a) for a in rng.choice(candidates, size=n_axes, replace=False))
    keep = bool(rng.random() < 0.5)
    qx = act_quant(rng)
    qy = qx if kind == "REDUCE_MAX" or rng.random() < 0.3 else act_quant(rng)
    out_shape = tuple((1 if i in axes else d) for i, d in enumerate(shape)) if keep else tuple(
        d for i, d in enumerate(shape) if i not in axes)
    x = act_tensor(g, "x", shape, qx)
    a = g.add_tensor(Tensor("axes", (len(axes),), "int32", data=np.array(axes, np.int32)))
    y = act_tensor(g, "y", out_shape, qy)
    g.add_op(kind, [x, a], [y], keep_dims=keep)
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, shape)]


def _random_shape(rng: np.random.Generator, rank: int | None = None) -> tuple[int, ...]:
    rank = rank or int(rng.integers(2, 5))
    return (1, *(int(d) for d in rng.integers(1, 7, size=rank - 1)))


def _binary(kind: str, rng: np.random.Generator) -> Case:
    g = new_graph(kind.lower())
    shape = _random_shape(rng)
    other = shape
    if rng.random() < 0.4:  # broadcast a per-channel operand
        other = tuple(1 if i < len(shape) - 1 else d for i, d in enumerate(shape))
    qa, qb = act_quant(rng), act_quant(rng)
    if kind in ("ADD", "SUB"):
        qy = Quantization.per_tensor((qa.s + qb.s) * float(np.exp(rng.uniform(-0.5, 0.8))),
                                     int(rng.integers(-60, 61)))
    else:
        qy = Quantization.per_tensor(qa.s * qb.s * 128 * 40 * float(np.exp(rng.uniform(-1, 1)))
                                     / 60, int(rng.integers(-60, 61)))
    a = act_tensor(g, "a", shape, qa)
    b = act_tensor(g, "b", other, qb)
    y = act_tensor(g, "y", shape, qy)
    g.add_op(kind, [a, b], [y], fused_activation=str(rng.choice(FUSED_ACTIVATIONS)))
    g.inputs, g.outputs = [a, b], [y]
    return g, [_int8(rng, shape), _int8(rng, other)]


def _sub(rng: np.random.Generator) -> Case:
    """SUB on two activations (broadcast as ADD's cases), or a constant minus an activation
    as an unrolled GRU computes 1 - z (a rank-0 int8 constant)."""
    if rng.random() < 0.6:
        return _binary("SUB", rng)
    g = new_graph("sub")
    shape = _random_shape(rng)
    qc, qx = act_quant(rng), act_quant(rng)
    qy = Quantization.per_tensor((qc.s + qx.s) * float(np.exp(rng.uniform(-0.5, 0.8))),
                                 int(rng.integers(-60, 61)))
    c = g.add_tensor(Tensor("c", (), "int8", qc, np.array(rng.integers(-128, 128), np.int8)))
    x = act_tensor(g, "x", shape, qx)
    y = act_tensor(g, "y", shape, qy)
    inputs = [c, x] if rng.random() < 0.7 else [x, c]
    g.add_op("SUB", inputs, [y], fused_activation=str(rng.choice(FUSED_ACTIVATIONS)))
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, shape)]


def _pack(rng: np.random.Generator) -> Case:
    """PACK of 1-5 equal-shaped activations (one quantization) on a new axis; axis 0 is
    how an unrolled RNN stacks its time steps."""
    g = new_graph("pack")
    shape = _random_shape(rng, int(rng.integers(1, 4)))
    n = int(rng.integers(1, 6))
    axis = int(rng.integers(0, len(shape) + 1))
    q = act_quant(rng)
    xs = [act_tensor(g, f"x{i}", shape, q) for i in range(n)]
    y = act_tensor(g, "y", (*shape[:axis], n, *shape[axis:]), q)
    stored = axis - len(shape) - 1 if rng.random() < 0.3 else axis  # negative axes too
    g.add_op("PACK", xs, [y], values_count=n, axis=stored)
    g.inputs, g.outputs = xs, [y]
    return g, [_int8(rng, shape) for _ in range(n)]


def _concatenation(rng: np.random.Generator) -> Case:
    g = new_graph("concatenation")
    shape = _random_shape(rng)
    axis = int(rng.integers(1, len(shape)))
    n = int(rng.integers(2, 4))
    q = act_quant(rng)
    shapes = [tuple(int(rng.integers(1, 5)) if i == axis else d for i, d in enumerate(shape))
              for _ in range(n)]
    xs = [act_tensor(g, f"x{i}", s, q) for i, s in enumerate(shapes)]
    out = tuple(sum(s[axis] for s in shapes) if i == axis else d for i, d in enumerate(shape))
    y = act_tensor(g, "y", out, q)
    g.add_op("CONCATENATION", xs, [y], axis=axis if rng.random() < 0.7 else axis - len(shape))
    g.inputs, g.outputs = xs, [y]
    return g, [_int8(rng, s) for s in shapes]


def _pad(rng: np.random.Generator) -> Case:
    g = new_graph("pad")
    shape = _random_shape(rng)
    pads = np.array([[0, 0]] + [[int(rng.integers(0, 3)), int(rng.integers(0, 3))]
                                for _ in shape[1:]], np.int32)
    q = act_quant(rng)
    x = act_tensor(g, "x", shape, q)
    p = g.add_tensor(Tensor("paddings", pads.shape, "int32", data=pads))
    y = act_tensor(g, "y", tuple(int(d + a + b) for d, (a, b) in zip(shape, pads, strict=True)), q)
    g.add_op("PAD", [x, p], [y])
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, shape)]


def _reshape_like(kind: str, rng: np.random.Generator) -> Case:
    g = new_graph(kind.lower())
    q = act_quant(rng)
    shape = _random_shape(rng, int(rng.integers(2, 4)))
    if kind == "RESHAPE":
        size = int(np.prod(shape))
        out: tuple[int, ...] = (1, size)
        x = act_tensor(g, "x", shape, q)
        s = g.add_tensor(Tensor("shape", (2,), "int32", data=np.array(out, np.int32)))
        y = act_tensor(g, "y", out, q)
        g.add_op("RESHAPE", [x, s], [y])
    elif kind == "SQUEEZE":
        shape = (1, *shape[1:], 1)
        out = shape[:-1]
        x = act_tensor(g, "x", shape, q)
        y = act_tensor(g, "y", out, q)
        g.add_op("SQUEEZE", [x], [y], squeeze_dims=(len(shape) - 1,))
    else:
        axis = int(rng.integers(1, len(shape) + 1))
        out = (*shape[:axis], 1, *shape[axis:])
        x = act_tensor(g, "x", shape, q)
        a = g.add_tensor(Tensor("axis", (1,), "int32", data=np.array([axis], np.int32)))
        y = act_tensor(g, "y", out, q)
        g.add_op("EXPAND_DIMS", [x, a], [y])
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, shape)]


def _unary(kind: str, rng: np.random.Generator) -> Case:
    g = new_graph(kind.lower())
    shape = _random_shape(rng, int(rng.integers(2, 4)))
    qx = act_quant(rng)
    if kind in ("SOFTMAX", "LOGISTIC"):
        qy = Quantization.per_tensor(1.0 / 256, -128)
        qx = Quantization.per_tensor(float(np.exp(rng.uniform(np.log(0.01), np.log(0.3)))),
                                     int(rng.integers(-100, 101)))
    elif kind == "TANH":
        qy = Quantization.per_tensor(1.0 / 128, 0)
        qx = Quantization.per_tensor(float(np.exp(rng.uniform(np.log(0.005), np.log(0.1)))),
                                     int(rng.integers(-100, 101)))
    elif kind == "RELU6":
        qy = qx
    else:
        qy = act_quant(rng)
    x = act_tensor(g, "x", shape, qx)
    y = act_tensor(g, "y", shape, qy)
    options = {"beta": 1.0} if kind == "SOFTMAX" else {}
    g.add_op(kind, [x], [y], **options)
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, shape)]


def _quantize(rng: np.random.Generator) -> Case:
    g = new_graph("quantize")
    shape = _random_shape(rng, 2)
    qy = act_quant(rng)
    if rng.random() < 0.5:
        x = g.add_tensor(Tensor("x", shape, "float32"))
        value = rng.normal(scale=qy.s * 80, size=shape).astype(np.float32)
    else:
        x = act_tensor(g, "x", shape, act_quant(rng))
        value = _int8(rng, shape)
    y = act_tensor(g, "y", shape, qy)
    g.add_op("QUANTIZE", [x], [y])
    g.inputs, g.outputs = [x], [y]
    return g, [value]


def _dequantize(rng: np.random.Generator) -> Case:
    g = new_graph("dequantize")
    shape = _random_shape(rng, 2)
    x = act_tensor(g, "x", shape, act_quant(rng))
    y = g.add_tensor(Tensor("y", shape, "float32"))
    g.add_op("DEQUANTIZE", [x], [y])
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, shape)]


def _split(rng: np.random.Generator) -> Case:
    g = new_graph("split")
    n = int(rng.integers(1, 4))
    shape = list(_random_shape(rng))
    axis = int(rng.integers(1, len(shape)))
    shape[axis] *= n
    q = act_quant(rng)
    a = g.add_tensor(Tensor("axis", (), "int32", data=np.array(axis, np.int32)))
    x = act_tensor(g, "x", tuple(shape), q)
    part = tuple(d // n if i == axis else d for i, d in enumerate(shape))
    ys = [act_tensor(g, f"y{i}", part, q) for i in range(n)]
    g.add_op("SPLIT", [a, x], ys, num_splits=n)
    g.inputs, g.outputs = [x], ys
    return g, [_int8(rng, tuple(shape))]


def _unpack(rng: np.random.Generator) -> Case:
    g = new_graph("unpack")
    shape = _random_shape(rng)
    axis = int(rng.integers(1, len(shape)))
    q = act_quant(rng)
    x = act_tensor(g, "x", shape, q)
    part = tuple(d for i, d in enumerate(shape) if i != axis)
    ys = [act_tensor(g, f"y{i}", part, q) for i in range(shape[axis])]
    g.add_op("UNPACK", [x], ys, num=shape[axis], axis=axis)
    g.inputs, g.outputs = [x], ys
    return g, [_int8(rng, shape)]


def _slicing(kind: str, rng: np.random.Generator) -> Case:
    g = new_graph(kind.lower())
    shape = _random_shape(rng, int(rng.integers(2, 5)))
    q = act_quant(rng)
    x = act_tensor(g, "x", shape, q)
    probe = np.zeros(shape)
    options: dict[str, object] = {}
    if kind == "TRANSPOSE":
        perm = [0, *(int(v) for v in 1 + rng.permutation(len(shape) - 1))]
        params = [np.array(perm, np.int32)]
        out = np.transpose(probe, perm).shape
    elif kind == "SLICE":
        begin = [0] + [int(rng.integers(0, d)) for d in shape[1:]]
        size = [1] + [int(rng.integers(1, d - b + 1)) if rng.random() < 0.7 else -1
                      for d, b in zip(shape[1:], begin[1:], strict=True)]
        params = [np.array(begin, np.int32), np.array(size, np.int32)]
        out = probe[tuple(slice(b, None if s < 0 else b + s)
                          for b, s in zip(begin, size, strict=True))].shape
    else:
        rank = len(shape)
        begin, end, strides = [0], [1], [1]
        begin_mask = end_mask = shrink = 0
        for d in range(1, rank):
            n = shape[d]
            stride = int(rng.choice([1, 1, 2, -1]))
            b, e = sorted(int(v) for v in rng.integers(0, n + 1, size=2))
            if stride < 0:
                b, e = max(e - 1, 0), (b - 1 if b > 0 else -n - 1)
            if rng.random() < 0.15:
                shrink |= 1 << d
                b, e, stride = int(rng.integers(-n, n)), 0, 1
            elif rng.random() < 0.2:
                begin_mask |= 1 << d
            if not shrink >> d & 1 and rng.random() < 0.2:
                end_mask |= 1 << d
            begin.append(b)
            end.append(e)
            strides.append(stride)
        params = [np.array(v, np.int32) for v in (begin, end, strides)]
        options = {"begin_mask": begin_mask, "end_mask": end_mask, "shrink_axis_mask": shrink}
        index: list[int | slice] = []
        for d in range(rank):
            if shrink >> d & 1:
                index.append(begin[d])
            else:
                index.append(slice(None if begin_mask >> d & 1 else begin[d],
                                   None if end_mask >> d & 1 else end[d], strides[d]))
        out = probe[tuple(index)].shape
        if 0 in out:  # an empty slice is no useful case: take everything instead
            params = [np.zeros(rank, np.int32), np.array(shape, np.int32),
                      np.ones(rank, np.int32)]
            options = {}
            out = shape
    names = {"TRANSPOSE": ["perm"], "SLICE": ["begin", "size"],
             "STRIDED_SLICE": ["begin", "end", "strides"]}[kind]
    consts = [g.add_tensor(Tensor(n, v.shape, "int32", data=v))
              for n, v in zip(names, params, strict=True)]
    y = act_tensor(g, "y", tuple(out), q)
    g.add_op(kind, [x, *consts], [y], **options)
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, shape)]


GENERATORS: dict[str, Callable[[np.random.Generator], Case]] = {
    "FULLY_CONNECTED": lambda r: _weighted("FULLY_CONNECTED", r),
    "CONV_2D": lambda r: _weighted("CONV_2D", r),
    "DEPTHWISE_CONV_2D": lambda r: _weighted("DEPTHWISE_CONV_2D", r),
    "AVERAGE_POOL_2D": lambda r: _pool("AVERAGE_POOL_2D", r),
    "MAX_POOL_2D": lambda r: _pool("MAX_POOL_2D", r),
    "MEAN": lambda r: _reduce("MEAN", r),
    "REDUCE_MAX": lambda r: _reduce("REDUCE_MAX", r),
    "ADD": lambda r: _binary("ADD", r),
    "SUB": _sub,
    "MUL": lambda r: _binary("MUL", r),
    "CONCATENATION": _concatenation,
    "PAD": _pad,
    "RESHAPE": lambda r: _reshape_like("RESHAPE", r),
    "SQUEEZE": lambda r: _reshape_like("SQUEEZE", r),
    "EXPAND_DIMS": lambda r: _reshape_like("EXPAND_DIMS", r),
    "SOFTMAX": lambda r: _unary("SOFTMAX", r),
    "LOGISTIC": lambda r: _unary("LOGISTIC", r),
    "TANH": lambda r: _unary("TANH", r),
    "RELU": lambda r: _unary("RELU", r),
    "RELU6": lambda r: _unary("RELU6", r),
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "SPLIT": _split,
    "UNPACK": _unpack,
    "PACK": _pack,
    "STRIDED_SLICE": lambda r: _slicing("STRIDED_SLICE", r),
    "SLICE": lambda r: _slicing("SLICE", r),
    "TRANSPOSE": lambda r: _slicing("TRANSPOSE", r),
}


def random_case(kind: str, seed: int) -> Case:
    return GENERATORS[kind](np.random.default_rng([seed, sum(map(ord, kind))]))


CHAIN_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D")


def random_chain(seed: int) -> Case:
    """A chain of 3-5 windowed int8 ops (conv, depthwise, pooling) with random shapes,
    strides, dilations and padding: the cases where the C memory planner lays outputs
    over dying inputs, so parity of the generated C covers the overlap."""
    rng = np.random.default_rng([seed, 7919])
    g = new_graph(f"chain{seed}")
    h, w, c = int(rng.integers(2, 12)), int(rng.integers(2, 24)), int(rng.integers(1, 12))
    q = act_quant(rng)
    x = act_tensor(g, "x", (1, h, w, c), q)
    g.inputs = [x]
    x0 = x
    kinds = ["CONV_2D"] + [str(k) for k in rng.choice(CHAIN_OPS, int(rng.integers(2, 5)))]
    for n, kind in enumerate(kinds):
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 6))
        sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        dh, dw = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if "CONV" in kind else (1, 1)
        padding = str(rng.choice(["SAME", "VALID"]))
        if padding == "VALID":
            kh, kw = min(kh, 1 + (h - 1) // dh), min(kw, 1 + (w - 1) // dw)
        oh, ow = out_size(padding, h, kh, sh, dh), out_size(padding, w, kw, sw, dw)
        activation = str(rng.choice(FUSED_ACTIVATIONS))
        common = {"padding": padding, "stride_h": sh, "stride_w": sw,
                  "fused_activation": activation}
        if kind.endswith("POOL_2D"):
            y = act_tensor(g, f"y{n}", (1, oh, ow, c), q)
            g.add_op(kind, [x], [y], filter_h=kh, filter_w=kw, **common)
        else:
            depthwise = kind == "DEPTHWISE_CONV_2D"
            cout = c * int(rng.choice([1, 1, 2])) if depthwise else int(rng.integers(1, 17))
            w_shape = (1, kh, kw, cout) if depthwise else (cout, kh, kw, c)
            scale = np.exp(rng.uniform(np.log(0.002), np.log(0.05), cout)).astype(np.float32)
            wi = g.add_tensor(Tensor(f"w{n}", w_shape, "int8",
                                     Quantization(scale, np.zeros(cout, np.int64),
                                                  3 if depthwise else 0),
                                     rng.integers(-127, 128, w_shape).astype(np.int8)))
            bias_scale = (np.float32(q.s) * scale).astype(np.float32)
            bi = g.add_tensor(Tensor(f"b{n}", (cout,), "int32",
                                     Quantization(bias_scale, np.zeros(cout, np.int64), 0),
                                     rng.integers(-3000, 3001, cout).astype(np.int32)))
            depth = kh * kw * (1 if depthwise else c)
            typical = math.sqrt(depth) * 40.0 * 60.0 * q.s * float(np.mean(scale))
            q = Quantization.per_tensor(typical / 60.0, int(rng.integers(-60, 61)))
            y = act_tensor(g, f"y{n}", (1, oh, ow, cout), q)
            extra = {"depth_multiplier": cout // c} if depthwise else {}
            g.add_op(kind, [x, wi, bi], [y], dilation_h=dh, dilation_w=dw, **common, **extra)
            c = cout
        x, h, w = y, oh, ow
    g.outputs = [x]
    return g, [_int8(rng, g.tensors[x0].shape)]


def random_strided_slice(seed: int) -> Case:
    """A STRIDED_SLICE drawn over everything TFLM computes: ranks 1-4 (the leading axis
    not necessarily 1), strides -3..3, begin / end anywhere in [-n - 3, n + 3] (negative
    and out-of-range indices are clamped), any begin / end / shrink masks (a shrunk axis
    with stride > 0 and an index in range: TFLM writes nothing otherwise; at least one
    axis kept). The output
    shape is kiloml's plan; TFLM's Prepare checks it, so a wrong plan fails there."""
    from kiloml.nn.op_params import slice_out_shape, strided_slice_axes

    rng = np.random.default_rng([seed, 4111])
    rank = int(rng.integers(1, 5))
    shape = tuple(int(d) for d in rng.integers(1, 7, size=rank))
    while True:
        begin, end, strides = [], [], []
        masks = {"begin_mask": 0, "end_mask": 0, "shrink_axis_mask": 0}
        for d, n in enumerate(shape):
            stride = int(rng.choice([-3, -2, -1, -1, 1, 1, 1, 2, 3]))
            b, e = (int(v) for v in rng.integers(-n - 3, n + 4, size=2))
            if rng.random() < 0.2:
                masks["shrink_axis_mask"] |= 1 << d
                stride, b = int(rng.integers(1, 4)), int(rng.integers(-n, n))
            for key in ("begin_mask", "end_mask"):
                if rng.random() < 0.3:
                    masks[key] |= 1 << d
            begin.append(b)
            end.append(e)
            strides.append(stride)
        axes = strided_slice_axes(shape, begin, end, strides, masks)
        # non-empty, and not every axis shrunk (kiloml's activations have a rank >= 1)
        if all(a.count for a in axes) and slice_out_shape(axes):
            break
    g = new_graph("strided_slice_masks")
    q = act_quant(rng)
    x = act_tensor(g, "x", shape, q)
    consts = [g.add_tensor(Tensor(name, (rank,), "int32", data=np.array(v, np.int32)))
              for name, v in (("begin", begin), ("end", end), ("strides", strides))]
    y = act_tensor(g, "y", slice_out_shape(axes), q)
    g.add_op("STRIDED_SLICE", [x, *consts], [y], **masks)
    g.inputs, g.outputs = [x], [y]
    return g, [_int8(rng, shape)]


def _gate(g: Graph, rng: np.random.Generator, x: int, n_out: int, kind: str) -> int:
    """FULLY_CONNECTED [1, n_in] -> [1, n_out] followed by LOGISTIC or TANH (their fixed
    output quantizations), or nothing (kind "NONE")."""
    xt = g.tensors[x]
    n_in = xt.shape[-1]
    w_scale = float(np.exp(rng.uniform(np.log(0.005), np.log(0.05))))
    w = g.add_tensor(Tensor(f"w{len(g.ops)}", (n_out, n_in), "int8",
                            Quantization.per_tensor(w_scale, 0),
                            rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)))
    bias_q = Quantization.per_tensor(float(np.float32(xt.quant.s) * np.float32(w_scale)), 0)
    b = g.add_tensor(Tensor(f"b{len(g.ops)}", (n_out,), "int32", bias_q,
                            rng.integers(-2000, 2001, n_out).astype(np.int32)))
    typical = math.sqrt(n_in) * 40.0 * 60.0 * xt.quant.s * w_scale
    acc = act_tensor(g, f"fc{len(g.ops)}", (1, n_out),
               Quantization.per_tensor(typical / 60.0, int(rng.integers(-30, 31))))
    g.add_op("FULLY_CONNECTED", [x, w, b], [acc])
    if kind == "NONE":
        return acc
    q = (Quantization.per_tensor(1.0 / 256, -128) if kind == "LOGISTIC"
         else Quantization.per_tensor(1.0 / 128, 0))
    y = act_tensor(g, f"{kind.lower()}{len(g.ops)}", (1, n_out), q)
    g.add_op(kind, [acc], [y])
    return y


def _split_gates(g: Graph, rng: np.random.Generator, both: int,
                 in_float: bool) -> tuple[int, int]:
    """SPLIT [1, 2h] into two [1, h] gates: in int8, or as TensorFlow's converter sometimes
    leaves it, in float32 between a DEQUANTIZE and one QUANTIZE per part (each part then
    gets its own scale)."""
    q = g.tensors[both].quant
    hidden = g.tensors[both].shape[1] // 2
    axis = g.add_tensor(Tensor(f"gate_axis{len(g.ops)}", (), "int32",
                               data=np.array(1, np.int32)))
    if not in_float:
        parts = [act_tensor(g, f"gate{len(g.ops)}_{k}", (1, hidden), q) for k in range(2)]
        g.add_op("SPLIT", [axis, both], parts, num_splits=2)
        return parts[0], parts[1]
    real = g.add_tensor(Tensor(f"gates_f{len(g.ops)}", (1, 2 * hidden), "float32"))
    g.add_op("DEQUANTIZE", [both], [real])
    halves = [g.add_tensor(Tensor(f"gate_f{len(g.ops)}_{k}", (1, hidden), "float32"))
              for k in range(2)]
    g.add_op("SPLIT", [axis, real], halves, num_splits=2)
    parts = []
    for k, half in enumerate(halves):
        scale = q.s * float(np.exp(rng.uniform(-0.5, 0.5)))
        parts.append(act_tensor(g, f"gate{len(g.ops)}_{k}", (1, hidden),
                          Quantization.per_tensor(scale, int(rng.integers(-20, 21)))))
        g.add_op("QUANTIZE", [half], [parts[-1]])
    return parts[0], parts[1]


def random_sequence(seed: int) -> Case:
    """A small unrolled recurrent network as TensorFlow's converter lays one out, with
    tensors whose leading axis is time, not the batch: the input made time-major by a
    RESHAPE [1, T, C] -> [T, 1, C] or a TRANSPOSE, maybe reversed in time (STRIDED_SLICE
    with stride -1 on axis 0), cut into steps (UNPACK axis 0, or SPLIT on axis 0 and
    RESHAPE), a recurrent cell per step (FULLY_CONNECTED gates, apart or SPLIT from one
    FULLY_CONNECTED, in int8 or in float32 between DEQUANTIZE and QUANTIZE, LOGISTIC /
    TANH, MUL, ADD, SUB from a constant as a GRU's 1 - z), the steps stacked again (PACK axis 0 or
    CONCATENATION on axis 0) and reduced over time (MEAN / REDUCE_MAX on axis 0) or
    flattened."""
    rng = np.random.default_rng([seed, 7349])
    g = new_graph(f"sequence{seed}")
    steps, channels, hidden = int(rng.integers(2, 7)), int(rng.integers(1, 6)), \
        int(rng.integers(1, 7))
    qx = act_quant(rng)
    x = act_tensor(g, "x", (1, steps, channels), qx)
    g.inputs = [x]
    tm = act_tensor(g, "time_major", (steps, 1, channels), qx)
    if rng.random() < 0.5:
        shape = g.add_tensor(Tensor("tm_shape", (3,), "int32",
                                    data=np.array([steps, 1, channels], np.int32)))
        g.add_op("RESHAPE", [x, shape], [tm])
    else:
        perm = g.add_tensor(Tensor("perm", (3,), "int32", data=np.array([1, 0, 2], np.int32)))
        g.add_op("TRANSPOSE", [x, perm], [tm])
    if rng.random() < 0.4:  # go_backwards
        rev = act_tensor(g, "reversed", (steps, 1, channels), qx)
        consts = [g.add_tensor(Tensor(n, (3,), "int32", data=np.array(v, np.int32)))
                  for n, v in (("rb", [-1, 0, 0]), ("re", [-steps - 1, 1, channels]),
                               ("rs", [-1, 1, 1]))]
        g.add_op("STRIDED_SLICE", [tm, *consts], [rev], begin_mask=6, end_mask=6)
        tm = rev
    if rng.random() < 0.6:
        xs = [act_tensor(g, f"x_t{i}", (1, channels), qx) for i in range(steps)]
        g.add_op("UNPACK", [tm], xs, num=steps, axis=0)
    else:
        parts = [act_tensor(g, f"part{i}", (1, 1, channels), qx) for i in range(steps)]
        axis = g.add_tensor(Tensor("split_axis", (), "int32", data=np.array(0, np.int32)))
        g.add_op("SPLIT", [axis, tm], parts, num_splits=steps)
        xs = []
        for i, part in enumerate(parts):
            xs.append(act_tensor(g, f"x_t{i}", (1, channels), qx))
            shape = g.add_tensor(Tensor(f"s{i}", (2,), "int32",
                                        data=np.array([1, channels], np.int32)))
            g.add_op("RESHAPE", [part, shape], [xs[-1]])
    qh = Quantization.per_tensor(1.0 / 128, 0)
    h = None
    outs = []
    one = g.add_tensor(Tensor("one", (), "int8", Quantization.per_tensor(1.0 / 255, -128),
                              np.array(127, np.int8)))
    fused_gates = str(rng.choice(["apart", "int8 split", "float split"]))
    for i, x_t in enumerate(xs):
        if fused_gates == "apart":
            z = _gate(g, rng, x_t, hidden, "LOGISTIC")
            cand = _gate(g, rng, x_t, hidden, "NONE")
        else:  # one FULLY_CONNECTED for both gates, SPLIT in two as Keras' cells do
            z_pre, cand = _split_gates(g, rng, _gate(g, rng, x_t, 2 * hidden, "NONE"),
                                       fused_gates == "float split")
            z = act_tensor(g, f"z{i}", (1, hidden), Quantization.per_tensor(1.0 / 256, -128))
            g.add_op("LOGISTIC", [z_pre], [z])
        if h is not None:
            rec = _gate(g, rng, h, hidden, "NONE")
            total = act_tensor(g, f"sum{i}", (1, hidden), Quantization.per_tensor(
                g.tensors[cand].quant.s + g.tensors[rec].quant.s, int(rng.integers(-20, 21))))
            g.add_op("ADD", [cand, rec], [total])
            cand = total
        c = act_tensor(g, f"cand{i}", (1, hidden), qh)
        g.add_op("TANH", [cand], [c])
        keep = act_tensor(g, f"keep{i}", (1, hidden), act_quant(rng))
        g.add_op("SUB", [one, z], [keep])  # 1 - z
        new = act_tensor(g, f"new{i}", (1, hidden), Quantization.per_tensor(
            1.0 / 128, int(rng.integers(-10, 11))))
        g.add_op("MUL", [keep, c], [new])
        if h is not None:
            old = act_tensor(g, f"old{i}", (1, hidden), Quantization.per_tensor(1.0 / 128, 0))
            g.add_op("MUL", [z, h], [old])
            both = act_tensor(g, f"h{i}", (1, hidden), Quantization.per_tensor(1.0 / 96, 0))
            g.add_op("ADD", [new, old], [both])
            new = both
        # every step's state in one quantization, so PACK / CONCATENATION can copy them
        h = act_tensor(g, f"state{i}", (1, hidden), qh)
        g.add_op("QUANTIZE", [new], [h])
        outs.append(h)
    if rng.random() < 0.5:
        seq = act_tensor(g, "sequence", (steps, 1, hidden), qh)
        g.add_op("PACK", outs, [seq], values_count=steps, axis=0)
    else:
        seq = act_tensor(g, "sequence", (steps, hidden), qh)
        g.add_op("CONCATENATION", outs, [seq], axis=0)
    rank = len(g.tensors[seq].shape)
    tail = str(rng.choice(["MEAN", "REDUCE_MAX", "RESHAPE"]))
    if tail == "RESHAPE":
        y = act_tensor(g, "y", (1, steps * hidden), qh)
        shape = g.add_tensor(Tensor("flat", (2,), "int32",
                                    data=np.array([1, steps * hidden], np.int32)))
        g.add_op("RESHAPE", [seq, shape], [y])
    else:
        keep_dims = bool(rng.random() < 0.5)
        out_shape = (1, *g.tensors[seq].shape[1:]) if keep_dims else g.tensors[seq].shape[1:]
        y = act_tensor(g, "y", out_shape, qh if tail == "REDUCE_MAX" else act_quant(rng))
        axes = g.add_tensor(Tensor("time_axis", (1,), "int32",
                                   data=np.array([0 if rng.random() < 0.7 else -rank], np.int32)))
        g.add_op(tail, [seq, axes], [y], keep_dims=keep_dims)
    g.outputs = [y]
    return g, [_int8(rng, (1, steps, channels))]
