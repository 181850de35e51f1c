"""Per-operator integer parameters, computed exactly as TFLM's Prepare() does.

The reference interpreter and the C code generator both take their
multipliers, shifts, offsets and clamping ranges from here, so there is one
definition of every rounding decision. Comments name the TFLM source each
formula follows; where TFLM widens float32 to double (or does not), so do we.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kiloml.nn.fixedpoint import (
    calculate_input_radius,
    quantize_multiplier,
    quantize_multiplier_greater_than_one,
    tflite_round,
)
from kiloml.nn.graph import Graph, Op, Tensor

INT8_MIN, INT8_MAX = -128, 127


class QuantizationSpecError(ValueError):
    """A quantized operator violates a TFLite int8 constraint (e.g. softmax output scale)."""


def f32(x: float) -> float:
    return float(np.float32(x))


def activation_range(activation: str, out: Tensor) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: quantize(0/6/±1) with float division and std::round."""
    scale = np.float32(out.quant.s)
    zp = out.quant.zp

    def quantize(v: float) -> int:
        return zp + tflite_round(float(np.float32(v) / scale))

    if activation == "NONE":
        return INT8_MIN, INT8_MAX
    if activation == "RELU":
        return max(INT8_MIN, quantize(0.0)), INT8_MAX
    if activation == "RELU6":
        return max(INT8_MIN, quantize(0.0)), min(INT8_MAX, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(INT8_MIN, quantize(-1.0)), min(INT8_MAX, quantize(1.0))
    raise QuantizationSpecError(f"unsupported fused activation {activation}")


def out_size(padding: str, size: int, filter_size: int, stride: int, dilation: int = 1) -> int:
    effective = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size + stride - effective) // stride


def padding_before(stride: int, dilation: int, in_size: int, filter_size: int,
                   out: int) -> int:
    """ComputePaddingWithOffset: the padding before (TFLite puts the odd pixel after)."""
    effective = (filter_size - 1) * dilation + 1
    total = max((out - 1) * stride + effective - in_size, 0)
    return total // 2


@dataclass
class OpParams:
    """Everything a kernel needs besides the tensors themselves."""

    input_offset: int = 0
    filter_offset: int = 0
    output_offset: int = 0
    multiplier: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    act_min: int = INT8_MIN
    act_max: int = INT8_MAX
    pad_h: int = 0
    pad_w: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def _conv_geometry(op: Op, x: Tensor, kh: int, kw: int, y: Tensor, p: OpParams) -> None:
    o = op.options
    p.pad_h = padding_before(int(o["stride_h"]), int(o.get("dilation_h", 1)), x.shape[1], kh,
                             y.shape[1])
    p.pad_w = padding_before(int(o["stride_w"]), int(o.get("dilation_w", 1)), x.shape[2], kw,
                             y.shape[2])


def prepare(graph: Graph, op: Op) -> OpParams:
    """Integer parameters for an int8 operator (float operators need only geometry)."""
    t = graph.tensors
    x = t[op.inputs[0]] if op.kind != "SPLIT" else t[op.inputs[1]]
    y = t[op.outputs[0]]
    p = OpParams()
    kind = op.kind
    quantized = y.dtype == "int8" or x.dtype == "int8"

    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = t[op.inputs[1]]
        _conv_geometry(op, x, w.shape[1], w.shape[2], y, p)
    elif kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        _conv_geometry(op, x, int(op.options["filter_h"]), int(op.options["filter_w"]), y, p)
    if not quantized:
        return p
    if kind == "QUANTIZE" and x.dtype == "float32":
        p.output_offset = y.quant.zp
        return p
    if kind == "DEQUANTIZE":
        p.input_offset = x.quant.zp
        return p

    p.input_offset = -x.quant.zp
    p.output_offset = y.quant.zp
    activation = str(op.options.get("fused_activation", "NONE"))
    if kind in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
        w = t[op.inputs[1]]
        p.filter_offset = -int(w.quant.zero_point[0])
        p.act_min, p.act_max = activation_range(activation, y)
        if kind == "FULLY_CONNECTED" and not w.quant.per_channel:
            # GetQuantizedConvolutionMultipler: float32 product, then double.
            product = float(np.float32(x.quant.scale[0]) * np.float32(w.quant.scale[0]))
            m, s = quantize_multiplier(product / float(y.quant.scale[0]))
            p.multiplier, p.shift = np.array([m], np.int64), np.array([s], np.int64)
        else:
            # PopulateConvolutionQuantizationParams: double products per channel.
            channels = y.shape[-1]
            scales = np.broadcast_to(w.quant.scale, (channels,))
            ms = [quantize_multiplier(float(x.quant.scale[0]) * float(sc)
                                      / float(y.quant.scale[0])) for sc in scales]
            p.multiplier = np.array([m for m, _ in ms], np.int64)
            p.shift = np.array([s for _, s in ms], np.int64)
    elif kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        p.act_min, p.act_max = activation_range(activation, y)
    elif kind == "ADD":
        x2 = t[op.inputs[1]]
        left_shift = 20
        s1, s2, so = (float(x.quant.scale[0]), float(x2.quant.scale[0]), float(y.quant.scale[0]))
        twice_max = 2.0 * float(max(np.float32(s1), np.float32(s2)))
        m1 = quantize_multiplier(s1 / twice_max)
        m2 = quantize_multiplier(s2 / twice_max)
        mo = quantize_multiplier(twice_max / ((1 << left_shift) * so))
        p.extra.update(left_shift=left_shift, input2_offset=-x2.quant.zp,
                       input1_multiplier=m1, input2_multiplier=m2)
        p.multiplier, p.shift = np.array([mo[0]], np.int64), np.array([mo[1]], np.int64)
        p.act_min, p.act_max = activation_range(activation, y)
    elif kind == "SUB":
        # CalculateOpDataSub (sub_common.cc): unlike ADD, the ratios are float32 and only
        # then widened to double.
        x2 = t[op.inputs[1]]
        left_shift = 20
        s1, s2, so = (np.float32(x.quant.scale[0]), np.float32(x2.quant.scale[0]),
                      np.float32(y.quant.scale[0]))
        twice_max = np.float32(2.0) * max(s1, s2)
        m1 = quantize_multiplier(float(np.float32(s1 / twice_max)))
        m2 = quantize_multiplier(float(np.float32(s2 / twice_max)))
        mo = quantize_multiplier(float(np.float32(twice_max / (np.float32(1 << left_shift) * so))))
        p.extra.update(left_shift=left_shift, input2_offset=-x2.quant.zp,
                       input1_multiplier=m1, input2_multiplier=m2)
        p.multiplier, p.shift = np.array([mo[0]], np.int64), np.array([mo[1]], np.int64)
        p.act_min, p.act_max = activation_range(activation, y)
    elif kind == "MUL":
        x2 = t[op.inputs[1]]
        m, s = quantize_multiplier(float(x.quant.scale[0]) * float(x2.quant.scale[0])
                                   / float(y.quant.scale[0]))
        p.multiplier, p.shift = np.array([m], np.int64), np.array([s], np.int64)
        p.extra["input2_offset"] = -x2.quant.zp
        p.act_min, p.act_max = activation_range(activation, y)
    elif kind == "SOFTMAX":
        if y.quant.zp != -128 or abs(y.quant.s - 1.0 / 256) > 1e-9:
            raise QuantizationSpecError(
                f"softmax {op.name!r}: int8 output must have scale 1/256 and zero point -128")
        beta = float(np.float32(op.options.get("beta", 1.0)))
        scaled_diff_integer_bits = 5
        real = min(beta * float(x.quant.scale[0]) * (1 << (31 - scaled_diff_integer_bits)),
                   float((1 << 31) - 1))
        m, s = quantize_multiplier_greater_than_one(real)
        p.multiplier, p.shift = np.array([m], np.int64), np.array([s], np.int64)
        p.extra["diff_min"] = -calculate_input_radius(scaled_diff_integer_bits, s)
    elif kind in ("LOGISTIC", "TANH"):
        if kind == "LOGISTIC" and (y.quant.zp != -128 or abs(y.quant.s - 1.0 / 256) > 1e-9):
            raise QuantizationSpecError(
                f"logistic {op.name!r}: int8 output must have scale 1/256 and zero point -128")
        if kind == "TANH" and (y.quant.zp != 0 or abs(y.quant.s - 1.0 / 128) > 1e-9):
            raise QuantizationSpecError(
                f"tanh {op.name!r}: int8 output must have scale 1/128 and zero point 0")
        input_integer_bits = 4
        real = float(x.quant.scale[0]) * float(1 << (31 - input_integer_bits))
        q, left_shift = math.frexp(real)
        p.multiplier = np.array([tflite_round(q * (1 << 31))], np.int64)
        p.shift = np.array([left_shift], np.int64)
        p.extra["input_range_radius"] = calculate_input_radius(input_integer_bits, left_shift)
    elif kind == "RELU":
        m, s = quantize_multiplier(float(x.quant.scale[0]) / float(y.quant.scale[0]))
        p.multiplier, p.shift = np.array([m], np.int64), np.array([s], np.int64)
        scale = np.float32(y.quant.s)
        p.act_min = max(INT8_MIN, y.quant.zp + tflite_round(float(np.float32(0.0) / scale)))
        p.act_max = INT8_MAX
    elif kind == "RELU6":
        # Relu6: clamps in the input's quantization (input and output share it).
        scale = np.float32(x.quant.s)
        p.act_min = x.quant.zp
        six = x.quant.zp + tflite_round(float(np.float32(6.0) / scale))
        p.act_max = int(min(max(six, INT8_MIN), INT8_MAX))
    elif kind == "QUANTIZE" or kind == "MEAN":  # int8 -> int8 requantization
        m, s = quantize_multiplier(float(x.quant.scale[0]) / float(y.quant.scale[0]))
        p.multiplier, p.shift = np.array([m], np.int64), np.array([s], np.int64)
    return p


# ---- slicing ------------------------------------------------------------------------

class SliceSpecError(ValueError):
    """STRIDED_SLICE / SLICE parameters TFLM would reject or compute garbage from."""


@dataclass(frozen=True)
class SliceAxis:
    """What a slice takes along one input axis: ``count`` elements from ``start`` every
    ``step`` (step < 0 walks backwards); ``keep`` is False on a shrunk axis."""

    start: int
    step: int
    count: int
    keep: bool = True

    @property
    def indices(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.count)


def slice_out_shape(axes: list[SliceAxis]) -> tuple[int, ...]:
    return tuple(a.count for a in axes if a.keep)


def _clamp(v: int, lo: int, hi: int) -> int:
    return hi if v > hi else lo if v < lo else v


def strided_slice_axes(shape: tuple[int, ...], begin: list[int], end: list[int],
                       strides: list[int], options: dict[str, object]) -> list[SliceAxis]:
    """TFLM's StridedSlicePrepare / StridedSliceStartForAxis / EndForAxis, per axis.

    TFLM reads one begin/end/stride per input dimension, ignores ellipsis_mask,
    new_axis_mask and offset (it computes as if they were 0), and leaves the output
    unwritten for a shrunk axis whose index is out of range or whose stride is negative.
    Those cases are errors here rather than silently different results.
    """
    rank = len(shape)
    if not len(begin) == len(end) == len(strides) == rank:
        raise SliceSpecError(f"begin, end and strides have {len(begin)}, {len(end)} and "
                             f"{len(strides)} entries; TFLM needs one per input dimension "
                             f"({rank})")
    for mask in ("ellipsis_mask", "new_axis_mask"):
        if int(options.get(mask, 0)):  # type: ignore[call-overload]
            raise SliceSpecError(f"{mask} = {options[mask]} is not supported (TFLM ignores "
                                 "it, so its result would differ from TensorFlow's)")
    if options.get("offset"):
        raise SliceSpecError("offset = true is not supported (TFLM ignores it, so its "
                             "result would differ from TensorFlow's)")
    begin_mask = int(options.get("begin_mask", 0))  # type: ignore[call-overload]
    end_mask = int(options.get("end_mask", 0))  # type: ignore[call-overload]
    shrink_mask = int(options.get("shrink_axis_mask", 0))  # type: ignore[call-overload]
    axes = []
    for d, (n, b, e, s) in enumerate(zip(shape, begin, end, strides, strict=True)):
        b, e, s = int(b), int(e), int(s)
        if s == 0:
            raise SliceSpecError(f"axis {d}: stride 0")
        if shrink_mask >> d & 1:
            if s < 0:
                raise SliceSpecError(f"axis {d}: a shrunk axis with stride {s} (TFLM "
                                     "writes no output for it)")
            if begin_mask >> d & 1:  # TFLM: the begin mask wins over the index
                axes.append(SliceAxis(0, 1, 1, keep=False))
                continue
            if not -n <= b < n:
                raise SliceSpecError(f"axis {d}: index {b} out of range for a dimension "
                                     f"of {n}")
            axes.append(SliceAxis(b % n, 1, 1, keep=False))
            continue
        start = b + n if b < 0 else b
        start = _clamp(start, 0, n) if s > 0 else _clamp(start, -1, n - 1)
        if begin_mask >> d & 1:
            start = 0 if s > 0 else n - 1
        stop = e + n if e < 0 else e
        stop = _clamp(stop, 0, n) if s > 0 else _clamp(stop, -1, n - 1)
        if end_mask >> d & 1:
            stop = n if s > 0 else -1
        count = max(0, -(-(stop - start) // s)) if s > 0 else max(0, -((start - stop) // s))
        axes.append(SliceAxis(start, s, count))
    return axes


def slice_axes(shape: tuple[int, ...], begin: list[int], size: list[int]) -> list[SliceAxis]:
    """TFLM's SLICE: ``size`` -1 takes the rest of the axis; everything must lie inside."""
    if not len(begin) == len(size) == len(shape):
        raise SliceSpecError(f"begin and size have {len(begin)} and {len(size)} entries; "
                             f"TFLM needs one per input dimension ({len(shape)})")
    axes = []
    for d, (n, b, k) in enumerate(zip(shape, begin, size, strict=True)):
        b, k = int(b), int(k)
        k = n - b if k == -1 else k
        if not 0 <= b < n or k < 1 or b + k > n:
            raise SliceSpecError(f"axis {d}: begin {b}, size {k} do not lie inside a "
                                 f"dimension of {n}")
        axes.append(SliceAxis(b, 1, k))
    return axes
