"""IR operator -> the kml_nn kernel call that computes it (kiloml/runtime/kml_nn.h).

One description per operator, used by the C generator (which prints it) and by
the kernel tests (which pass it through ctypes). Every number comes from
``kiloml.nn.op_params.prepare``, the same parameters the reference interpreter
uses, so C and Python cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kiloml.nn.c_scratch import conv_scratch_bytes, dwconv_scratch_bytes, fc_scratch_bytes
from kiloml.nn.graph import Graph, Op
from kiloml.nn.op_params import OpParams
from kiloml.nn.reference import slice_plan


class CodegenError(ValueError):
    """The graph uses something the C generator does not support."""


@dataclass
class Arg:
    """One C argument.

    kind: ``i32`` / ``u32`` / ``f32`` / ``i8`` (value: a number), ``in`` / ``out``
    (value: a tensor index; a pointer to its data), ``const`` (value: a numpy array
    stored as a ``static const`` table), ``null``, ``struct`` (value: the field
    values in declaration order, ints or lists of 4 ints; ``ctype`` names the struct),
    ``ins`` / ``outs`` (value: tensor indices; an array of pointers), ``scratch``
    (value: bytes of int16 scratch), ``acc`` (value: number of int32 accumulators).
    """

    kind: str
    value: object = None
    ctype: str = ""
    name: str = ""


@dataclass
class KernelCall:
    kernel: str
    args: list[Arg] = field(default_factory=list)
    scratch_bytes: int = 0  # int16 scratch (fast paths) + int32 accumulators
    # The output may share the input's memory (same bytes, element-wise or a copy).
    in_place: bool = False
    no_op: bool = False  # a reshape: the output is the input's memory
    # Why the DSP fast path does not cover this call of a fast-path kernel ("" if it does).
    portable_reason: str = ""
    # Windowed ops (conv, depthwise, pooling) visit output pixels in order and never read
    # an input pixel again once past it, so the output may overlap the input: the largest
    # allowed (output start - input start) in bytes, or None where no overlap is legal.
    overlap_shift: int | None = None

    def add(self, kind: str, value: object = None, ctype: str = "", name: str = "") -> None:
        self.args.append(Arg(kind, value, ctype, name))


def _dims4(shape: tuple[int, ...], what: str) -> list[int]:
    if len(shape) > 4:
        raise CodegenError(f"{what}: rank {len(shape)} > 4 is not supported by the C kernels")
    return [1] * (4 - len(shape)) + [int(d) for d in shape]


def _i32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).astype(np.int32).reshape(-1)


def _strides(dims: list[int]) -> list[int]:
    out, step = [0, 0, 0, 0], 1
    for i in range(3, -1, -1):
        out[i] = step
        step *= dims[i]
    return out


def _broadcast(graph: Graph, op: Op) -> list[object]:
    t = graph.tensors
    out = _dims4(t[op.outputs[0]].shape, op.name)
    fields: list[object] = [out]
    for i in op.inputs[:2]:
        dims = _dims4(t[i].shape, op.name)
        st = _strides(dims)
        fields.append([0 if dims[k] == 1 and out[k] != 1 else st[k] for k in range(4)])
    return fields


def _conv_struct(graph: Graph, op: Op, p: OpParams) -> list[object]:
    t = graph.tensors
    x, w, y = t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]]
    o = op.options
    depthwise = op.kind == "DEPTHWISE_CONV_2D"
    return [x.shape[0], x.shape[1], x.shape[2], x.shape[3], y.shape[1], y.shape[2], y.shape[3],
            w.shape[1], w.shape[2], int(o["stride_h"]), int(o["stride_w"]),
            int(o["dilation_h"]), int(o["dilation_w"]), p.pad_h, p.pad_w,
            1 if depthwise else w.shape[3],
            y.shape[3] // x.shape[3] if depthwise else 1,
            p.input_offset, p.output_offset, p.act_min, p.act_max]


# Elements from which LOGISTIC / TANH use a 256-entry table instead of computing.
LUT_MIN_ELEMENTS = 64


def overlap_shift(x_shape: tuple[int, ...], y_shape: tuple[int, ...], k_h: int,
                  stride_h: int, pad_h: int, stride_w: int, pad_w: int) -> int:
    """The largest d such that an output placed d bytes after the input (d < 0: before)
    never overwrites input bytes still to be read. The kernels write output pixel q (all
    its channels; int8) only after reading what pixel q needs, and later pixels read
    nothing before the first input pixel of their window, clipped to the image (a
    conservative bound when dilation skips rows). So d <= first_needed(q') - end(q) for
    every q' >= q."""
    b, h, w, c = x_shape
    _, oh, ow, oc = y_shape
    del k_h  # windows start at (oy*stride - pad) whatever their size
    oy = np.arange(oh)[:, None]
    ox = np.arange(ow)[None, :]
    first = (np.maximum(oy * stride_h - pad_h, 0) * w + np.maximum(ox * stride_w - pad_w, 0))
    first = (first.reshape(1, -1) * c + (np.arange(b) * h * w * c)[:, None]).reshape(-1)
    needed_later = np.minimum.accumulate(first[::-1])[::-1]  # min over q' >= q
    end = (np.arange(len(first)) + 1) * oc
    return int((needed_later - end).min())


def _weights_and_requant(call: KernelCall, graph: Graph, op: Op, p: OpParams) -> None:
    w = graph.tensors[op.inputs[1]]
    call.add("const", w.data, name=w.name)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = graph.tensors[op.inputs[2]]
        call.add("const", _i32(b.data), name=b.name)
    else:
        call.add("null")


# Operators that only move values. TensorFlow's converter sometimes leaves one in float32
# between a DEQUANTIZE and QUANTIZEs (an unrolled LSTM's gate SPLIT whose outputs need
# different scales); the int8 kernel then moves 4-byte elements.
BYTE_COPY_OPS = ("SPLIT", "UNPACK", "PACK", "CONCATENATION", "RESHAPE", "SQUEEZE",
                 "EXPAND_DIMS")


def is_float_copy(graph: Graph, op: Op) -> bool:
    """A float32 operator the C runs as a copy of bytes (no arithmetic)."""
    t = graph.tensors
    data = [t[i] for i in (op.inputs[1:] if op.kind == "SPLIT" else op.inputs[:1]
                           if op.kind not in ("PACK", "CONCATENATION") else op.inputs)]
    return (op.kind in BYTE_COPY_OPS
            and all(v.dtype == "float32" for v in [*data, *(t[i] for i in op.outputs)])
            and op.options.get("fused_activation", "NONE") == "NONE")


def kernel_call(graph: Graph, op: Op, p: OpParams) -> KernelCall:
    """The kml_nn call for an int8 operator (float data only at QUANTIZE/DEQUANTIZE, and
    float32 operators that only move values, ``is_float_copy``)."""
    t = graph.tensors
    kind = op.kind
    x = t[op.inputs[1] if kind == "SPLIT" else op.inputs[0]]
    y = t[op.outputs[0]]
    width = 1  # bytes per element of the data a copy kernel moves
    if is_float_copy(graph, op):
        width = 4
    elif kind not in ("QUANTIZE", "DEQUANTIZE") and (x.dtype != "int8" or y.dtype != "int8"):
        raise CodegenError(f"operator {op.name} ({kind}): the C kernels compute int8; "
                           f"got {x.dtype} -> {y.dtype} (quantize the model first)")
    n = x.size
    call = KernelCall("")
    if kind == "FULLY_CONNECTED":
        w = t[op.inputs[1]]
        depth, out_features = w.shape[1], w.shape[0]
        call.kernel = "kml_fc_s8"
        call.add("i32", n // depth)
        call.add("i32", depth)
        call.add("i32", out_features)
        call.add("in", op.inputs[0])
        _weights_and_requant(call, graph, op, p)
        for v in (p.input_offset, p.filter_offset, p.output_offset):
            call.add("i32", v)
        call.add("const", _i32(p.multiplier), name=f"{op.name}_mult")
        call.add("const", _i32(p.shift), name=f"{op.name}_shift")
        call.add("i32", 1 if p.multiplier.size > 1 else 0)
        call.add("i32", p.act_min)
        call.add("i32", p.act_max)
        call.add("out", op.outputs[0])
        call.scratch_bytes = fc_scratch_bytes(depth)
        call.add("scratch", call.scratch_bytes)
        if p.filter_offset != 0:
            call.portable_reason = "weights with a nonzero zero point"
        return call
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = t[op.inputs[1]]
        depthwise = kind == "DEPTHWISE_CONV_2D"
        if p.filter_offset != 0:
            # TFLM's per-channel conv kernels assume symmetric filters (zero point 0) too.
            raise CodegenError(f"operator {op.name} ({kind}): filter zero point "
                               f"{-p.filter_offset} is not supported; int8 conv filters must "
                               f"be symmetric (zero point 0), as in the TFLite spec")
        call.kernel = "kml_dwconv2d_s8" if depthwise else "kml_conv2d_s8"
        call.add("struct", _conv_struct(graph, op, p), ctype="kml_conv_params")
        call.add("in", op.inputs[0])
        _weights_and_requant(call, graph, op, p)
        channels = y.shape[3]
        call.add("const", _i32(np.broadcast_to(p.multiplier, (channels,))),
                 name=f"{op.name}_mult")
        call.add("const", _i32(np.broadcast_to(p.shift, (channels,))), name=f"{op.name}_shift")
        call.add("out", op.outputs[0])
        call.scratch_bytes = (dwconv_scratch_bytes(w.shape[1], w.shape[2], channels) if depthwise
                              else conv_scratch_bytes(w.shape[1], w.shape[2], w.shape[3]))
        call.add("scratch", call.scratch_bytes)
        call.overlap_shift = overlap_shift(x.shape, y.shape, w.shape[1], int(op.options[
            "stride_h"]), p.pad_h, int(op.options["stride_w"]), p.pad_w)
        if depthwise and channels != x.shape[3]:
            call.portable_reason = f"depth multiplier {channels // x.shape[3]} (not 1)"
        elif not depthwise and w.shape[3] != x.shape[3]:
            call.portable_reason = f"grouped convolution ({x.shape[3] // w.shape[3]} groups)"
        return call
    if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = op.options
        call.kernel = "kml_avgpool_s8" if kind == "AVERAGE_POOL_2D" else "kml_maxpool_s8"
        call.add("struct", [x.shape[0], x.shape[1], x.shape[2], x.shape[3], y.shape[1],
                            y.shape[2], int(o["filter_h"]), int(o["filter_w"]),
                            int(o["stride_h"]), int(o["stride_w"]), p.pad_h, p.pad_w,
                            p.act_min, p.act_max], ctype="kml_pool_params")
        call.add("in", op.inputs[0])
        call.add("out", op.outputs[0])
        call.overlap_shift = overlap_shift(x.shape, y.shape, int(o["filter_h"]),
                                           int(o["stride_h"]), p.pad_h, int(o["stride_w"]),
                                           p.pad_w)
        return call
    if kind in ("MEAN", "REDUCE_MAX"):
        dims = _dims4(x.shape, op.name)
        lead = 4 - len(x.shape)
        axes = {int(a) % len(x.shape) for a in np.atleast_1d(t[op.inputs[1]].data)}
        mask = sum(1 << (a + lead) for a in axes)
        call.add("in", op.inputs[0])
        call.add("const", _i32(dims), name=f"{op.name}_dims")
        call.add("u32", mask)
        if kind == "REDUCE_MAX":
            call.kernel = "kml_reduce_max_s8"
            call.add("out", op.outputs[0])
            return call
        call.kernel = "kml_mean_s8"
        count = int(np.prod([x.shape[a] for a in axes]))
        mult, shift = int(p.multiplier[0]), int(p.shift[0])
        bits = min(count.bit_length() - 1, 32, 31 + shift)  # TFLM QuantizedMeanOrSum
        mult = int(np.int64((mult << bits) // count).astype(np.int32))
        call.add("i32", x.quant.zp)
        call.add("i32", count)
        call.add("i32", mult)
        call.add("i32", shift - bits)
        call.add("i32", p.output_offset)
        call.add("out", op.outputs[0])
        call.add("acc", y.size)
        call.scratch_bytes = 4 * y.size
        return call
    if kind in ("ADD", "SUB", "MUL"):
        call.kernel = {"ADD": "kml_add_s8", "SUB": "kml_sub_s8", "MUL": "kml_mul_s8"}[kind]
        call.add("struct", _broadcast(graph, op), ctype="kml_broadcast4")
        for i in op.inputs[:2]:
            if t[i].is_constant:
                call.add("const", t[i].data.astype(np.int8).reshape(-1), name=t[i].name)
            else:
                call.add("in", i)
        call.add("i32", p.input_offset)
        call.add("i32", int(p.extra["input2_offset"]))
        if kind in ("ADD", "SUB"):
            (m1, s1), (m2, s2) = p.extra["input1_multiplier"], p.extra["input2_multiplier"]
            for v in (int(p.extra["left_shift"]), m1, s1, m2, s2):
                call.add("i32", v)
        for v in (int(p.multiplier[0]), int(p.shift[0]), p.output_offset, p.act_min,
                  p.act_max):
            call.add("i32", v)
        call.add("out", op.outputs[0])
        call.in_place = (not t[op.inputs[0]].is_constant
                         and t[op.inputs[0]].shape == y.shape)
        return call
    if kind == "SOFTMAX":
        depth = x.shape[-1]
        call.kernel = "kml_softmax_s8"
        call.add("in", op.inputs[0])
        for v in (n // depth, depth, int(p.multiplier[0]), int(p.shift[0]),
                  int(p.extra["diff_min"])):
            call.add("i32", v)
        call.add("out", op.outputs[0])
        return call
    if kind in ("LOGISTIC", "TANH") and n >= LUT_MIN_ELEMENTS:
        # An int8 -> int8 function of 256 possible inputs: its table, computed by the
        # reference interpreter (bit-exact with TFLM), replaces the gemmlowp exp and
        # reciprocal per element at the cost of 256 bytes of flash.
        from kiloml.nn.reference import logistic, tanh

        fn = logistic if kind == "LOGISTIC" else tanh
        table = fn(graph, op, p, [np.arange(-128, 128, dtype=np.int8)])[0].astype(np.int8)
        call.kernel = "kml_lut_s8"
        call.add("in", op.inputs[0])
        call.add("i32", n)
        call.add("const", table.reshape(-1), name=f"{op.name}_table")
        call.add("out", op.outputs[0])
        call.in_place = True
        return call
    if kind in ("LOGISTIC", "TANH"):
        call.kernel = "kml_logistic_s8" if kind == "LOGISTIC" else "kml_tanh_s8"
        call.add("in", op.inputs[0])
        for v in (n, x.quant.zp, int(p.extra["input_range_radius"]), int(p.multiplier[0]),
                  int(p.shift[0])):
            call.add("i32", v)
        call.add("out", op.outputs[0])
        call.in_place = True
        return call
    if kind == "RELU":
        call.kernel = "kml_relu_s8"
        call.add("in", op.inputs[0])
        for v in (n, x.quant.zp, int(p.multiplier[0]), int(p.shift[0]), y.quant.zp,
                  p.act_min, p.act_max):
            call.add("i32", v)
        call.add("out", op.outputs[0])
        call.in_place = True
        return call
    if kind == "RELU6":
        call.kernel = "kml_clamp_s8"
        call.add("in", op.inputs[0])
        for v in (n, p.act_min, p.act_max):
            call.add("i32", v)
        call.add("out", op.outputs[0])
        call.in_place = True
        return call
    if kind == "QUANTIZE":
        call.add("in", op.inputs[0])
        call.add("i32", n)
        if x.dtype == "float32":
            call.kernel = "kml_quantize_f32_s8"
            call.add("f32", np.float32(y.quant.scale[0]))
            call.add("i32", y.quant.zp)
        else:
            call.kernel = "kml_requantize_s8"
            for v in (x.quant.zp, int(p.multiplier[0]), int(p.shift[0]), y.quant.zp):
                call.add("i32", v)
            call.in_place = True
        call.add("out", op.outputs[0])
        return call
    if kind == "DEQUANTIZE":
        call.kernel = "kml_dequantize_s8_f32"
        call.add("in", op.inputs[0])
        call.add("i32", n)
        call.add("f32", np.float32(x.quant.scale[0]))
        call.add("i32", x.quant.zp)
        call.add("out", op.outputs[0])
        return call
    if kind in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        call.kernel = "kml_copy_s8"
        call.add("in", op.inputs[0], ctype="int8_t")
        call.add("i32", n * width)
        call.add("out", op.outputs[0], ctype="int8_t")
        call.in_place = True
        call.no_op = True
        return call
    if kind == "PAD":
        pads = t[op.inputs[1]].data.astype(int).reshape(-1, 2)
        lead = 4 - len(x.shape)
        before = [0] * lead + [int(a) for a in pads[:, 0]]
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            value = int(np.asarray(t[op.inputs[2]].data).reshape(-1)[0])
        else:
            value = y.quant.zp
        call.kernel = "kml_pad_s8"
        call.add("in", op.inputs[0])
        call.add("const", _i32(_dims4(x.shape, op.name)), name=f"{op.name}_in_dims")
        call.add("const", _i32(before), name=f"{op.name}_before")
        call.add("const", _i32(_dims4(y.shape, op.name)), name=f"{op.name}_out_dims")
        call.add("i8", value)
        call.add("out", op.outputs[0])
        return call
    if kind == "CONCATENATION":
        axis = int(op.options["axis"]) % len(y.shape)
        call.kernel = "kml_concat_s8"
        call.add("i32", len(op.inputs))
        call.add("ins", list(op.inputs))
        call.add("const", _i32([t[i].shape[axis] for i in op.inputs]),
                 name=f"{op.name}_sizes")
        call.add("i32", int(np.prod(y.shape[:axis])))
        call.add("i32", int(np.prod(y.shape[axis + 1:])) * width)
        call.add("out", op.outputs[0], ctype="int8_t")
        return call
    if kind == "PACK":
        # [outer][value][inner]: a concatenation of blocks one element deep on the new axis
        axis = int(op.options["axis"]) % len(y.shape)
        call.kernel = "kml_concat_s8"
        call.add("i32", len(op.inputs))
        call.add("ins", list(op.inputs))
        call.add("const", _i32([1] * len(op.inputs)), name=f"{op.name}_sizes")
        call.add("i32", int(np.prod(y.shape[:axis])))
        call.add("i32", int(np.prod(y.shape[axis + 1:])) * width)
        call.add("out", op.outputs[0], ctype="int8_t")
        return call
    if kind in ("SPLIT", "UNPACK"):
        if kind == "SPLIT":
            axis = int(np.atleast_1d(t[op.inputs[0]].data)[0]) % len(x.shape)
        else:
            axis = int(op.options["axis"]) % len(x.shape)
        call.kernel = "kml_split_s8"
        call.add("in", op.inputs[1] if kind == "SPLIT" else op.inputs[0], ctype="int8_t")
        call.add("i32", int(np.prod(x.shape[:axis])))
        call.add("i32", x.shape[axis])
        call.add("i32", int(np.prod(x.shape[axis + 1:])) * width)
        call.add("i32", len(op.outputs))
        call.add("outs", list(op.outputs))
        return call
    if kind in ("STRIDED_SLICE", "SLICE"):
        axes = slice_plan(graph, op, x.shape)
        begin = [a.start for a in axes]
        step = [a.step for a in axes]
        out_dims = [a.count for a in axes]  # 1 on shrunk axes: the same bytes
        lead = 4 - len(x.shape)
        call.kernel = "kml_slice4_s8"
        call.add("in", op.inputs[0])
        call.add("const", _i32(_dims4(x.shape, op.name)), name=f"{op.name}_in_dims")
        call.add("const", _i32([0] * lead + begin), name=f"{op.name}_begin")
        call.add("const", _i32([1] * lead + step), name=f"{op.name}_step")
        call.add("const", _i32([1] * lead + out_dims), name=f"{op.name}_out_dims")
        call.add("out", op.outputs[0])
        return call
    if kind == "TRANSPOSE":
        perm = [int(v) for v in np.atleast_1d(t[op.inputs[1]].data)]
        lead = 4 - len(x.shape)
        call.kernel = "kml_transpose4_s8"
        call.add("in", op.inputs[0])
        call.add("const", _i32(_dims4(x.shape, op.name)), name=f"{op.name}_in_dims")
        call.add("const", _i32(list(range(lead)) + [v + lead for v in perm]),
                 name=f"{op.name}_perm")
        call.add("out", op.outputs[0])
        return call
    raise CodegenError(f"operator {op.name}: no C kernel for {kind}")
