"""Shape inference, validation and cost figures (MACs, weight bytes) for IR graphs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiloml.nn.graph import SUPPORTED_OPS, Graph, Op
from kiloml.nn.op_params import (
    QuantizationSpecError,
    SliceSpecError,
    out_size,
    prepare,
    slice_axes,
    slice_out_shape,
    strided_slice_axes,
)


class GraphError(ValueError):
    """The graph is inconsistent: wrong shapes, dtypes or missing constants."""


def _const(graph: Graph, op: Op, k: int) -> np.ndarray:
    t = graph.tensors[op.inputs[k]]
    if t.data is None:
        raise GraphError(f"operator {op.name} ({op.kind}): input {k} ({t.name!r}) must be "
                         "a constant tensor")
    return t.data


def infer_output_shapes(graph: Graph, op: Op) -> list[tuple[int, ...]]:
    """The output shapes TFLite's kernels would compute from the input shapes."""
    t = graph.tensors
    x = t[op.inputs[0]].shape if op.kind != "SPLIT" else t[op.inputs[1]].shape
    o = op.options
    kind = op.kind
    if kind == "FULLY_CONNECTED":
        w = t[op.inputs[1]].shape
        if int(np.prod(x)) % w[1]:
            raise GraphError(f"operator {op.name} (FULLY_CONNECTED): input {x} is not a "
                             f"multiple of the weights' {w[1]} input features")
        if o.get("keep_num_dims"):
            return [(*x[:-1], w[0])]
        return [(int(np.prod(x)) // w[1], w[0])]
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"):
        if len(x) != 4:
            raise GraphError(f"operator {op.name} ({kind}): input must be 4-D NHWC, got {x}")
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = t[op.inputs[1]].shape
            kh, kw = w[1], w[2]
            if kind == "CONV_2D":
                if x[3] % w[3]:
                    raise GraphError(f"operator {op.name} (CONV_2D): input channels {x[3]} "
                                     f"are not a multiple of the filter's {w[3]}")
                channels = w[0]
            else:
                if w[3] != x[3] * int(o["depth_multiplier"]) and w[3] % x[3]:
                    raise GraphError(f"operator {op.name} (DEPTHWISE_CONV_2D): filter channels "
                                     f"{w[3]} do not match input channels {x[3]}")
                channels = w[3]
            dh, dw = int(o["dilation_h"]), int(o["dilation_w"])
        else:
            kh, kw, channels, dh, dw = int(o["filter_h"]), int(o["filter_w"]), x[3], 1, 1
        oh = out_size(str(o["padding"]), x[1], kh, int(o["stride_h"]), dh)
        ow = out_size(str(o["padding"]), x[2], kw, int(o["stride_w"]), dw)
        if oh <= 0 or ow <= 0:
            raise GraphError(f"operator {op.name} ({kind}): the {kh}x{kw} window does not fit "
                             f"the {x[1]}x{x[2]} input")
        return [(x[0], oh, ow, channels)]
    if kind in ("MEAN", "REDUCE_MAX"):
        axes = {int(a) % len(x) for a in np.atleast_1d(_const(graph, op, 1))}
        if o.get("keep_dims"):
            return [tuple(1 if i in axes else d for i, d in enumerate(x))]
        return [tuple(d for i, d in enumerate(x) if i not in axes)]
    if kind in ("ADD", "SUB", "MUL"):
        b = t[op.inputs[1]].shape
        try:
            return [tuple(np.broadcast_shapes(x, b))]
        except ValueError:
            raise GraphError(f"operator {op.name} ({kind}): shapes {x} and {b} do not "
                             "broadcast") from None
    if kind == "CONCATENATION":
        shapes = [t[i].shape for i in op.inputs]
        axis = int(o["axis"]) % len(x)
        for s in shapes:
            if len(s) != len(x) or any(a != b for i, (a, b) in enumerate(zip(s, x, strict=True))
                                       if i != axis):
                raise GraphError(f"operator {op.name} (CONCATENATION): shapes {shapes} differ "
                                 f"outside axis {axis}")
        return [tuple(sum(s[axis] for s in shapes) if i == axis else d
                      for i, d in enumerate(x))]
    if kind == "PAD":
        pads = _const(graph, op, 1).reshape(-1, 2)
        if len(pads) != len(x) or np.any(pads < 0):
            raise GraphError(f"operator {op.name} (PAD): paddings {pads.tolist()} do not fit "
                             f"an input of rank {len(x)}")
        return [tuple(int(d + a + b) for d, (a, b) in zip(x, pads, strict=True))]
    if kind in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        y = t[op.outputs[0]].shape
        if int(np.prod(y)) != int(np.prod(x)):
            raise GraphError(f"operator {op.name} ({kind}): cannot reshape {x} to {y}")
        return [y]
    if kind == "SPLIT":
        n = len(op.outputs)
        axis = int(np.atleast_1d(_const(graph, op, 0))[0]) % len(x)
        if x[axis] % n:
            raise GraphError(f"operator {op.name} (SPLIT): axis {axis} of size {x[axis]} "
                             f"does not split into {n}")
        return [tuple(d // n if i == axis else d for i, d in enumerate(x))] * n
    if kind == "PACK":
        shapes = [t[i].shape for i in op.inputs]
        if int(o["values_count"]) != len(shapes) or any(s != x for s in shapes):
            raise GraphError(f"operator {op.name} (PACK): values_count {o['values_count']} for "
                             f"{len(shapes)} inputs of shapes {shapes} (TFLM packs "
                             "values_count inputs of one shape)")
        if not -len(x) - 1 <= int(o["axis"]) <= len(x):
            raise GraphError(f"operator {op.name} (PACK): axis {o['axis']} for inputs of rank "
                             f"{len(x)}")
        axis = int(o["axis"]) % (len(x) + 1)
        return [(*x[:axis], len(shapes), *x[axis:])]
    if kind == "UNPACK":
        axis = int(o["axis"]) % len(x)
        return [tuple(d for i, d in enumerate(x) if i != axis)] * x[axis]
    if kind == "TRANSPOSE":
        perm = [int(v) for v in np.atleast_1d(_const(graph, op, 1))]
        if sorted(perm) != list(range(len(x))):
            raise GraphError(f"operator {op.name} (TRANSPOSE): perm {perm} is not a "
                             f"permutation of {len(x)} axes")
        return [tuple(x[p] for p in perm)]
    if kind in ("STRIDED_SLICE", "SLICE"):
        if kind == "STRIDED_SLICE" and len(x) > 4:
            raise GraphError(f"operator {op.name} (STRIDED_SLICE): input rank {len(x)}; TFLM "
                             "slices up to 4 dimensions")
        params = [np.atleast_1d(_const(graph, op, k)).astype(np.int64).tolist()
                  for k in range(1, len(op.inputs))]
        try:
            if kind == "SLICE":
                axes = slice_axes(x, params[0], params[1])
            else:
                axes = strided_slice_axes(x, params[0], params[1], params[2], o)
        except SliceSpecError as exc:
            raise GraphError(f"operator {op.name} ({kind}): {exc}") from None
        shape = slice_out_shape(axes)
        if any(a.count == 0 for a in axes):
            raise GraphError(f"operator {op.name} ({kind}): the slice of {x} is empty")
        return [shape]
    return [x]  # element-wise: SOFTMAX, LOGISTIC, TANH, RELU, RELU6, QUANTIZE, DEQUANTIZE


def validate(graph: Graph) -> None:
    """Raise GraphError when an operator's tensors are inconsistent."""
    if not graph.ops:
        raise GraphError("the model has no operators")
    known = set(graph.inputs)
    known.update(i for i, t in enumerate(graph.tensors) if t.is_constant)
    for op in graph.ops:
        if op.kind not in SUPPORTED_OPS:
            raise GraphError(f"operator {op.name}: unsupported operator {op.kind}")
        for i in op.inputs:
            if i >= 0 and i not in known:
                raise GraphError(f"operator {op.name} ({op.kind}): input "
                                 f"{graph.tensors[i].name!r} is computed by no earlier operator")
        expected = infer_output_shapes(graph, op)
        for index, shape in zip(op.outputs, expected, strict=False):
            declared = graph.tensors[index].shape
            if tuple(declared) != tuple(shape):
                raise GraphError(f"operator {op.name} ({op.kind}): output "
                                 f"{graph.tensors[index].name!r} has shape {declared}, the "
                                 f"inputs give {shape}")
        if len(expected) != len(op.outputs):
            raise GraphError(f"operator {op.name} ({op.kind}): {len(op.outputs)} outputs, "
                             f"expected {len(expected)}")
        try:
            prepare(graph, op)
        except QuantizationSpecError as exc:
            raise GraphError(str(exc)) from None
        known.update(op.outputs)
    for i in graph.outputs:
        if i not in known:
            raise GraphError(f"output {graph.tensors[i].name!r} is computed by no operator")


def op_macs(graph: Graph, op: Op) -> int:
    """Multiply-accumulates of one inference (batch 1)."""
    t = graph.tensors
    y = t[op.outputs[0]].shape
    if op.kind == "FULLY_CONNECTED":
        w = t[op.inputs[1]].shape
        rows = int(np.prod(t[op.inputs[0]].shape)) // w[1]
        return rows * w[0] * w[1]
    if op.kind == "CONV_2D":
        w = t[op.inputs[1]].shape
        return int(y[1] * y[2] * w[0] * w[1] * w[2] * w[3])
    if op.kind == "DEPTHWISE_CONV_2D":
        w = t[op.inputs[1]].shape
        return int(y[1] * y[2] * w[3] * w[1] * w[2])
    return 0


@dataclass
class OpSummary:
    index: int
    kind: str
    name: str
    inputs: list[str]
    output: str
    output_shape: tuple[int, ...]
    macs: int
    weight_bytes: int


def summarize(graph: Graph) -> list[OpSummary]:
    rows = []
    for i, op in enumerate(graph.ops):
        weights = sum(graph.tensors[k].nbytes for k in op.inputs
                      if k >= 0 and graph.tensors[k].is_constant)
        rows.append(OpSummary(
            i, op.kind, op.name,
            [graph.tensors[k].name for k in op.inputs if k >= 0],
            graph.tensors[op.outputs[0]].name, graph.tensors[op.outputs[0]].shape,
            op_macs(graph, op), weights))
    return rows
