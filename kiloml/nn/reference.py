"""The reference interpreter: runs an IR graph in numpy.

int8 operators are bit-exact with TFLM's reference kernels (the arbiter for
kiloml's C code); float32 operators compute the same maths in float32 (used
for calibration and for float models). Batches run vectorized when no
operator touches the batch axis, else one sample at a time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from kiloml.nn import fixedpoint as fp
from kiloml.nn.graph import Graph, Op, Tensor
from kiloml.nn.op_params import (
    OpParams,
    SliceAxis,
    prepare,
    slice_axes,
    strided_slice_axes,
)

Kernel = Callable[[Graph, Op, OpParams, list[np.ndarray]], list[np.ndarray]]


def _clamp_i8(acc: np.ndarray, lo: int = -128, hi: int = 127) -> np.ndarray:
    return np.clip(acc, lo, hi).astype(np.int8)


def _float_activation(y: np.ndarray, activation: str) -> np.ndarray:
    if activation == "RELU":
        return np.maximum(y, 0.0)
    if activation == "RELU6":
        return np.clip(y, 0.0, 6.0)
    if activation == "RELU_N1_TO_1":
        return np.clip(y, -1.0, 1.0)
    return y


def _requantize(acc: np.ndarray, p: OpParams) -> np.ndarray:
    out = fp.multiply_by_quantized_multiplier(acc, p.multiplier, p.shift) + p.output_offset
    return _clamp_i8(out, p.act_min, p.act_max)


def _const(graph: Graph, index: int) -> np.ndarray:
    data = graph.tensors[index].data
    if data is None:
        raise ValueError(f"tensor {graph.tensors[index].name!r} must be constant")
    return data


def batched_shape(t: Tensor, batch: int) -> tuple[int, ...]:
    """The shape of tensor ``t``'s value when ``batch`` samples run at once.

    Batched runs only happen when every tensor's leading axis is 1 (the batch axis), so
    the leading axis scales; one sample at a time (batch 1) the value has exactly the
    declared shape, whatever its leading axis means (a time-major [20, 1, 3] is fine).
    """
    return (batch * t.shape[0], *t.shape[1:]) if t.shape else t.shape


# ---- matrix and convolution kernels ---------------------------------------

def fully_connected(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    w = graph.tensors[op.inputs[1]]
    y = graph.tensors[op.outputs[0]]
    bias = _const(graph, op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    rows = x.reshape(-1, w.shape[1])
    if op.options.get("keep_num_dims"):
        out_shape: tuple[int, ...] = (*x.shape[:-1], w.shape[0])
    else:
        out_shape = (rows.shape[0], w.shape[0])
    if y.dtype == "float32":
        acc = rows.astype(np.float32) @ w.data.astype(np.float32).T
        if bias is not None:
            acc = acc + bias.astype(np.float32)
        acc = _float_activation(acc, str(op.options["fused_activation"]))
        return [acc.astype(np.float32).reshape(out_shape)]
    # Sums of int8 x (int8 + offset) products are exact in float64, so BLAS can do them.
    acc = (rows.astype(np.float64) + p.input_offset) @ (
        w.data.astype(np.float64) + p.filter_offset).T
    acc = fp.wrap32(acc.astype(np.int64))
    if bias is not None:
        acc = fp.wrap32(acc + bias.astype(np.int64))
    return [_requantize(acc, p).reshape(out_shape)]


def _padded_windows(x: np.ndarray, p: OpParams, kh: int, kw: int, sh: int, sw: int,
                    dh: int, dw: int, oh: int, ow: int, fill: float):
    """Yields (fy, fx, window) with window[n, oy, ox, c] = x[n, oy*sh+fy*dh-pad, ...]."""
    h, w = x.shape[1], x.shape[2]
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    after_h = max(0, need_h - h - p.pad_h)
    after_w = max(0, need_w - w - p.pad_w)
    xp = np.pad(x, ((0, 0), (p.pad_h, after_h), (p.pad_w, after_w), (0, 0)),
                constant_values=fill)
    for fy in range(kh):
        for fx in range(kw):
            y0, x0 = fy * dh, fx * dw
            yield fy, fx, xp[:, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw, :]


def conv_2d(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    w = graph.tensors[op.inputs[1]]
    y = graph.tensors[op.outputs[0]]
    o = op.options
    bias = _const(graph, op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    cout, kh, kw, cg = w.shape
    groups = x.shape[3] // cg
    per_group = cout // groups
    oh, ow = y.shape[1], y.shape[2]
    quantized = y.dtype == "int8"
    xo = x.astype(np.float64) + (p.input_offset if quantized else 0.0)
    wd = w.data.astype(np.float64) + (p.filter_offset if quantized else 0.0)
    acc = np.zeros((x.shape[0], oh, ow, cout), np.float64)
    windows = _padded_windows(xo, p, kh, kw, int(o["stride_h"]), int(o["stride_w"]),
                              int(o["dilation_h"]), int(o["dilation_w"]), oh, ow, 0.0)
    for fy, fx, win in windows:
        for g in range(groups):
            oc = slice(g * per_group, (g + 1) * per_group)
            acc[..., oc] += win[..., g * cg:(g + 1) * cg] @ wd[oc, fy, fx, :].T
    return [_finish_conv(acc, bias, y, op, p)]


def depthwise_conv_2d(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    w = graph.tensors[op.inputs[1]]
    y = graph.tensors[op.outputs[0]]
    o = op.options
    bias = _const(graph, op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    _, kh, kw, cout = w.shape
    multiplier = cout // x.shape[3]
    oh, ow = y.shape[1], y.shape[2]
    quantized = y.dtype == "int8"
    xo = x.astype(np.float64) + (p.input_offset if quantized else 0.0)
    wd = w.data.astype(np.float64) + (p.filter_offset if quantized else 0.0)
    acc = np.zeros((x.shape[0], oh, ow, cout), np.float64)
    windows = _padded_windows(xo, p, kh, kw, int(o["stride_h"]), int(o["stride_w"]),
                              int(o["dilation_h"]), int(o["dilation_w"]), oh, ow, 0.0)
    for fy, fx, win in windows:
        acc += np.repeat(win, multiplier, axis=-1) * wd[0, fy, fx, :]
    return [_finish_conv(acc, bias, y, op, p)]


def _finish_conv(acc: np.ndarray, bias: np.ndarray | None, y: Tensor, op: Op,
                 p: OpParams) -> np.ndarray:
    if y.dtype == "float32":
        if bias is not None:
            acc = acc + bias.astype(np.float64)
        return _float_activation(acc, str(op.options["fused_activation"])).astype(np.float32)
    acc = fp.wrap32(acc.astype(np.int64))
    if bias is not None:
        acc = fp.wrap32(acc + bias.astype(np.int64))
    return _requantize(acc, p)


# ---- pooling and reductions -------------------------------------------------

def _pool(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray], average: bool) -> np.ndarray:
    x = xs[0]
    y = graph.tensors[op.outputs[0]]
    o = op.options
    kh, kw = int(o["filter_h"]), int(o["filter_w"])
    oh, ow = y.shape[1], y.shape[2]
    args = (kh, kw, int(o["stride_h"]), int(o["stride_w"]), 1, 1, oh, ow)
    quantized = y.dtype == "int8"
    if average:
        total = np.zeros((x.shape[0], oh, ow, x.shape[3]), np.float64)
        count = np.zeros((1, oh, ow, 1), np.int64)
        ones = np.ones((1, *x.shape[1:3], 1), np.float64)
        for (_, _, win), (_, _, one) in zip(_padded_windows(x.astype(np.float64), p, *args, 0.0),
                                            _padded_windows(ones, p, *args, 0.0), strict=True):
            total += win
            count += one.astype(np.int64)
        if not quantized:
            out = total / np.maximum(count, 1)
            return _float_activation(out, str(o["fused_activation"])).astype(np.float32)
        acc = total.astype(np.int64)
        half = count // 2
        rounded = np.where(acc > 0, (acc + half) // count, -((-acc + half) // count))
        return _clamp_i8(rounded, p.act_min, p.act_max)
    fill = -np.inf if not quantized else -1e9
    best = np.full((x.shape[0], oh, ow, x.shape[3]), -np.inf)
    for _, _, win in _padded_windows(x.astype(np.float64), p, *args, fill):
        best = np.maximum(best, win)
    if not quantized:
        return _float_activation(best, str(o["fused_activation"])).astype(np.float32)
    return _clamp_i8(best.astype(np.int64), p.act_min, p.act_max)


def average_pool_2d(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_pool(graph, op, p, xs, average=True)]


def max_pool_2d(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_pool(graph, op, p, xs, average=False)]


def _axes(graph: Graph, op: Op, rank: int) -> tuple[int, ...]:
    axes = np.atleast_1d(_const(graph, op.inputs[1])).astype(int)
    return tuple(sorted({int(a) % rank for a in axes}))


def _reshape_to_output(value: np.ndarray, graph: Graph, op: Op) -> np.ndarray:
    """``value`` in the output tensor's shape, for however many samples it holds.

    The sample count comes from the element count, never from the value's leading
    axis: a RESHAPE [1, 20, 3] -> [20, 1, 3] (how the converter makes an input
    time-major) has a leading axis of 1 in and 20 out.
    """
    out = graph.tensors[op.outputs[0]]
    batch, rest = divmod(value.size, max(out.size, 1))
    if rest or batch < 1:
        raise ValueError(f"operator {op.name} ({op.kind}): {value.size} elements cannot "
                         f"fill output {list(out.shape)}")
    return value.reshape(batched_shape(out, batch))


def mean(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    axes = _axes(graph, op, x.ndim)
    y = graph.tensors[op.outputs[0]]
    count = int(np.prod([x.shape[a] for a in axes]))
    if y.dtype == "float32":
        out = x.astype(np.float32).sum(axis=axes, dtype=np.float32) / np.float32(count)
        return [_reshape_to_output(out.astype(np.float32), graph, op)]
    # QuantizedMeanOrSum (TFLM reference): the 1/count factor is folded into the
    # multiplier, then one MultiplyByQuantizedMultiplier on the zero-point-corrected sum.
    sums = fp.wrap32(x.astype(np.int64).sum(axis=axes))
    zp_in = graph.tensors[op.inputs[0]].quant.zp
    multiplier, shift = int(p.multiplier[0]), int(p.shift[0])
    bits = count.bit_length() - 1  # 63 - CountLeadingZeros(count)
    bits = min(bits, 32, 31 + shift)
    multiplier = int(np.int32((multiplier << bits) // count))
    shift -= bits
    shifted = fp.wrap32(sums - zp_in * count)
    out = fp.multiply_by_quantized_multiplier(shifted, multiplier, shift) + p.output_offset
    return [_reshape_to_output(_clamp_i8(out), graph, op)]


def reduce_max(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    out = x.max(axis=_axes(graph, op, x.ndim))
    return [_reshape_to_output(out, graph, op)]


# ---- element-wise -----------------------------------------------------------

def _add_or_sub(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray], sign: int
                ) -> list[np.ndarray]:
    """ADD (sign 1) and SUB (sign -1): TFLM's AddElementwise / SubElementwise (int8, both
    inputs rescaled to a common scale after a left shift) or float32 arithmetic."""
    a, b = xs
    y = graph.tensors[op.outputs[0]]
    if y.dtype == "float32":
        out = a.astype(np.float32) + b.astype(np.float32) if sign > 0 else \
            a.astype(np.float32) - b.astype(np.float32)
        return [_float_activation(out, str(op.options["fused_activation"])).astype(np.float32)]
    ls = int(p.extra["left_shift"])
    (m1, s1), (m2, s2) = p.extra["input1_multiplier"], p.extra["input2_multiplier"]
    v1 = fp.wrap32((a.astype(np.int64) + p.input_offset) * (1 << ls))
    v2 = fp.wrap32((b.astype(np.int64) + int(p.extra["input2_offset"])) * (1 << ls))
    raw = fp.wrap32(fp.multiply_by_quantized_multiplier(v1, m1, s1)
                    + sign * fp.multiply_by_quantized_multiplier(v2, m2, s2))
    return [_requantize(raw, p)]


def add(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    return _add_or_sub(graph, op, p, xs, 1)


def sub(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    """TFLM reference_ops::SubElementwise / BroadcastQuantSubSlow (int8)."""
    return _add_or_sub(graph, op, p, xs, -1)


def mul(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    a, b = xs
    y = graph.tensors[op.outputs[0]]
    if y.dtype == "float32":
        out = a.astype(np.float32) * b.astype(np.float32)
        return [_float_activation(out, str(op.options["fused_activation"])).astype(np.float32)]
    prod = ((a.astype(np.int64) + p.input_offset)
            * (b.astype(np.int64) + int(p.extra["input2_offset"])))
    return [_requantize(fp.wrap32(prod), p)]


def softmax(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    if x.dtype != np.int8:
        z = x.astype(np.float64) * float(op.options["beta"])
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return [(e / e.sum(axis=-1, keepdims=True)).astype(np.float32)]
    diff = x.astype(np.int64) - x.max(axis=-1, keepdims=True).astype(np.int64)
    valid = diff >= int(p.extra["diff_min"])
    rescaled = fp.multiply_by_quantized_multiplier_greater_than_one(
        diff, int(p.multiplier[0]), int(p.shift[0]))
    exp_q0 = fp.exp_on_negative_values(rescaled, 5)
    terms = np.where(valid, fp.rescale(exp_q0, 0, 12), 0)
    sum_of_exps = fp.wrap32(terms.sum(axis=-1, keepdims=True))
    shifted_scale, bits_over_unit = fp.get_reciprocal(sum_of_exps, 12)
    unsat = fp.rounding_divide_by_pot(
        fp.saturating_rounding_doubling_high_mul(shifted_scale, exp_q0), bits_over_unit + 31 - 8)
    out = np.clip(unsat - 128, -128, 127)
    return [np.where(valid, out, -128).astype(np.int8)]


@functools.lru_cache(maxsize=4096)
def _activation_table(kind: str, zp: int, multiplier: int, shift: int,
                      radius: int) -> np.ndarray:
    """LOGISTIC / TANH on all 256 int8 inputs in TFLM's gemmlowp fixed point: the op is a
    function of the int8 value alone, so looking it up is the same computation."""
    fn, out_shift, out_offset = ((fp.logistic, 31 - 8, -128) if kind == "LOGISTIC"
                                 else (fp.tanh, 31 - 7, 0))
    v = np.arange(-128, 128, dtype=np.int64) - zp
    q4 = fp.multiply_by_quantized_multiplier(v, multiplier, shift)
    inner = np.clip(fp.rounding_divide_by_pot(fn(q4, 4), out_shift) + out_offset, -128, 127)
    out = np.where(v <= -radius, -128, np.where(v >= radius, 127, inner)).astype(np.int8)
    out.flags.writeable = False
    return out


def _gemmlowp_activation(x: np.ndarray, graph: Graph, op: Op, p: OpParams) -> np.ndarray:
    table = _activation_table(op.kind, graph.tensors[op.inputs[0]].quant.zp,
                              int(p.multiplier[0]), int(p.shift[0]),
                              int(p.extra["input_range_radius"]))
    return table[x.astype(np.int16) + 128]


def logistic(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    if x.dtype != np.int8:
        return [(1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)]
    return [_gemmlowp_activation(x, graph, op, p)]


def tanh(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    if x.dtype != np.int8:
        return [np.tanh(x.astype(np.float32))]
    return [_gemmlowp_activation(x, graph, op, p)]


def relu(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    if x.dtype != np.int8:
        return [np.maximum(x, 0).astype(np.float32)]
    v = x.astype(np.int64) + p.input_offset
    return [_requantize(v, p)]


def relu6(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    if x.dtype != np.int8:
        return [np.clip(x, 0, 6).astype(np.float32)]
    return [_clamp_i8(x.astype(np.int64), p.act_min, p.act_max)]


def quantize(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    y = graph.tensors[op.outputs[0]]
    if x.dtype == np.float32 or graph.tensors[op.inputs[0]].dtype == "float32":
        with np.errstate(invalid="ignore", over="ignore"):
            r = fp.round_f32(x.astype(np.float32) / np.float32(y.quant.s))
        # limited to +-256 before the integer conversion, NaN to -256, as
        # kml_quantize_f32_s8 (a cast of inf or NaN has no defined value)
        r = np.where(r > 256, 256, np.where(r >= -256, r, -256))
        return [_clamp_i8(r.astype(np.int64) + y.quant.zp)]
    v = x.astype(np.int64) + p.input_offset
    out = fp.multiply_by_quantized_multiplier(v, p.multiplier, p.shift) + p.output_offset
    return [_clamp_i8(out)]


def dequantize(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    q = graph.tensors[op.inputs[0]].quant
    return [(float(q.scale[0]) * (x.astype(np.float64) - q.zp)).astype(np.float32)]


# ---- data movement ----------------------------------------------------------

def reshape(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_reshape_to_output(xs[0], graph, op)]


def concatenation(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    axis = int(op.options["axis"]) % xs[0].ndim
    out = np.concatenate(xs, axis=axis)
    if out.dtype == np.float32:
        out = _float_activation(out, str(op.options["fused_activation"])).astype(np.float32)
    return [out]


def pad(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    paddings = _const(graph, op.inputs[1]).astype(int).reshape(-1, 2)
    y = graph.tensors[op.outputs[0]]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = _const(graph, op.inputs[2]).reshape(-1)[0]
    else:
        value = y.quant.zp if y.dtype == "int8" else 0.0
    return [np.pad(x, [tuple(r) for r in paddings], constant_values=value)]


def split(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[1]
    axis = int(np.atleast_1d(_const(graph, op.inputs[0]))[0]) % x.ndim
    return list(np.split(x, len(op.outputs), axis=axis))


def pack(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    """TFLM PackImpl: the inputs' bytes side by side along a new axis (no requantization)."""
    axis = int(op.options["axis"]) % (xs[0].ndim + 1)
    return [np.stack(xs, axis=axis)]


def unpack(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    axis = int(op.options["axis"]) % x.ndim
    return [np.take(x, i, axis=axis) for i in range(x.shape[axis])]


def slice_plan(graph: Graph, op: Op, shape: tuple[int, ...]) -> list[SliceAxis]:
    """Per input axis, what a STRIDED_SLICE or SLICE of an input of ``shape`` takes
    (TFLM's semantics: op_params.strided_slice_axes / slice_axes)."""
    params = [np.atleast_1d(_const(graph, op.inputs[k])).astype(np.int64).tolist()
              for k in range(1, len(op.inputs))]
    if op.kind == "SLICE":
        return slice_axes(shape, params[0], params[1])
    return strided_slice_axes(shape, params[0], params[1], params[2], op.options)


def strided_slice(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    axes = slice_plan(graph, op, graph.tensors[op.inputs[0]].shape)
    picks = [a.indices for a in axes]
    if x.shape[0] != graph.tensors[op.inputs[0]].shape[0]:  # a batch: axis 0 untouched
        picks[0] = np.arange(x.shape[0])
    out = x[np.ix_(*picks)] if picks else x
    return [_reshape_to_output(out, graph, op).copy()]  # drops shrunk axes


def transpose(graph: Graph, op: Op, p: OpParams, xs: list[np.ndarray]) -> list[np.ndarray]:
    perm = np.atleast_1d(_const(graph, op.inputs[1])).astype(int)
    return [np.ascontiguousarray(np.transpose(xs[0], perm))]


KERNELS: dict[str, Kernel] = {
    "FULLY_CONNECTED": fully_connected,
    "CONV_2D": conv_2d,
    "DEPTHWISE_CONV_2D": depthwise_conv_2d,
    "AVERAGE_POOL_2D": average_pool_2d,
    "MAX_POOL_2D": max_pool_2d,
    "MEAN": mean,
    "REDUCE_MAX": reduce_max,
    "ADD": add,
    "SUB": sub,
    "MUL": mul,
    "CONCATENATION": concatenation,
    "PAD": pad,
    "RESHAPE": reshape,
    "SQUEEZE": reshape,
    "EXPAND_DIMS": reshape,
    "SOFTMAX": softmax,
    "LOGISTIC": logistic,
    "TANH": tanh,
    "RELU": relu,
    "RELU6": relu6,
    "QUANTIZE": quantize,
    "DEQUANTIZE": dequantize,
    "SPLIT": split,
    "UNPACK": unpack,
    "PACK": pack,
    "STRIDED_SLICE": strided_slice,
    "SLICE": strided_slice,
    "TRANSPOSE": transpose,
}


def _touches_batch_axis(graph: Graph, op: Op) -> bool:
    """True when an op reads or writes along axis 0, so batching samples would be wrong."""
    t = graph.tensors
    ranks = [len(t[i].shape) for i in op.inputs if i >= 0 and not t[i].is_constant]
    if not ranks:
        # on constants alone (a folded zero state, or a hostile file): its value has one
        # sample whatever the batch, so samples run one at a time
        return True
    rank = ranks[0]
    if any(t[i].shape[:1] != (1,) for i in op.outputs) or any(
            t[i].shape[:1] != (1,) for i in op.inputs if i >= 0 and not t[i].is_constant):
        return True
    kind = op.kind
    if kind == "CONCATENATION" or kind == "UNPACK":
        return int(op.options["axis"]) % rank == 0
    if kind == "PACK":
        return int(op.options["axis"]) % (rank + 1) == 0
    if kind in ("MEAN", "REDUCE_MAX"):
        return 0 in _axes(graph, op, rank)
    if kind == "SPLIT":
        return int(np.atleast_1d(_const(graph, op.inputs[0]))[0]) % rank == 0
    if kind == "PAD":
        return bool(np.any(_const(graph, op.inputs[1]).reshape(-1, 2)[0] != 0))
    if kind == "TRANSPOSE":
        return int(np.atleast_1d(_const(graph, op.inputs[1]))[0]) != 0
    if kind in ("STRIDED_SLICE", "SLICE"):
        axes = slice_plan(graph, op, t[op.inputs[0]].shape)
        return not axes or axes[0] != SliceAxis(0, 1, 1)
    if kind in ("ADD", "SUB", "MUL"):
        return any(t[i].is_constant and len(t[i].shape) == rank and t[i].shape[0] != 1
                   for i in op.inputs)
    return False


_FIRST_INPUT_ONLY = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "REDUCE_MAX",
                     "PAD", "RESHAPE", "EXPAND_DIMS", "STRIDED_SLICE", "SLICE", "TRANSPOSE"}


class Interpreter:
    """Prepares every operator once; ``run`` then evaluates batches."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.params = [prepare(graph, op) for op in graph.ops]
        self.batchable = not any(_touches_batch_axis(graph, op) for op in graph.ops)

    def run(self, inputs: Sequence[np.ndarray],
            trace: dict[int, np.ndarray] | None = None) -> list[np.ndarray]:
        """inputs[i] holds N samples: shape [N * L, *input_shape[1:]] for an input of
        declared shape [L, ...] (L is 1, the batch axis, in converter-made models), or
        exactly the input shape (one sample)."""
        g = self.graph
        arrays, leads = [], []
        for index, value in zip(g.inputs, inputs, strict=True):
            t = g.tensors[index]
            value = np.asarray(value)
            if value.dtype != np.dtype(t.dtype):
                raise ValueError(f"input {t.name!r} must be {t.dtype}, got {value.dtype}")
            lead = t.shape[0] if t.shape else 1
            if (value.shape[1:] if t.shape else value.shape) != t.shape[1:] or (
                    t.shape and (not value.shape or value.shape[0] % max(lead, 1))):
                raise ValueError(f"input {t.name!r} must have shape [N x {lead}, "
                                 f"{t.shape[1:]}], got {value.shape}")
            arrays.append(value)
            leads.append(max(lead, 1))
        counts = {a.shape[0] // n if a.ndim else 1 for a, n in zip(arrays, leads, strict=True)}
        if len(counts) > 1:
            raise ValueError(f"inputs hold different numbers of samples: {sorted(counts)}")
        samples = counts.pop() if counts else 1
        if self.batchable or samples == 1:
            return self._run_batch(arrays, trace)
        per_sample = []
        traces: list[dict[int, np.ndarray]] = []
        for i in range(samples):
            traces.append({})
            one = [a[i * n:(i + 1) * n] if a.ndim else a
                   for a, n in zip(arrays, leads, strict=True)]
            per_sample.append(self._run_batch(one, traces[-1]))
        if trace is not None:
            for key in traces[0]:
                trace[key] = np.concatenate([tr[key] for tr in traces])
        return [np.concatenate([s[k] for s in per_sample]) for k in range(len(g.outputs))]

    def _run_batch(self, arrays: list[np.ndarray],
                   trace: dict[int, np.ndarray] | None = None) -> list[np.ndarray]:
        g = self.graph
        values: dict[int, np.ndarray] = dict(zip(g.inputs, arrays, strict=True))
        lead = g.tensors[g.inputs[0]].shape[:1] if g.inputs else ()
        batch = arrays[0].shape[0] // lead[0] if lead and lead[0] else 1
        for op, params in zip(g.ops, self.params, strict=True):
            xs = [values[i] if i in values else _const(g, i) for i in op.inputs if i >= 0]
            if op.kind in _FIRST_INPUT_ONLY:  # the rest are weights or parameters
                xs = xs[:1]
            outs = KERNELS[op.kind](g, op, params, xs)
            for index, value in zip(op.outputs, outs, strict=True):
                # Every value must have its tensor's shape: a kernel that loses or moves
                # an axis would otherwise surface ops later as an unrelated reshape error.
                want = batched_shape(g.tensors[index], batch)
                if value.shape != want:
                    raise RuntimeError(f"operator {op.name} ({op.kind}) computed shape "
                                       f"{list(value.shape)} for {g.tensors[index].name!r}, "
                                       f"expected {list(want)}")
                values[index] = value
        if trace is not None:
            trace.update(values)
        return [values[i] for i in g.outputs]


def run_graph(graph: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    return Interpreter(graph).run(inputs)
