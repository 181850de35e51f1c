"""Validation of a loaded graph: what the interpreter, the C generator and TFLM assume.

Run once when a model is loaded (``kiloml.nn.load.load_model``), so a model that is
well-formed as a file but cannot be a valid network fails there with one line
instead of later with a wrong result or a traceback. In order:

1. structure: operator kinds, operand counts, tensor indices, ranks, element counts;
2. dtypes: each operator's float32 or int8 signature (int32 biases; uint8 / int16
   only into QUANTIZE or out of DEQUANTIZE at the model's edge);
3. quantization: every quantized tensor has parameters; scales finite, positive
   and in [2^-60, 2^60] (zero, negative, denormal, NaN, inf and absurd scales
   refused); zero points in the dtype's range, 0 for weights, int32 biases and
   int16; per-channel only on weights and biases, one scale per output channel
   along the layout's channel axis;
4. options and parameter tensors: strides, dilations, filter sizes, depth
   multipliers >= 1; softmax beta finite in (0, 1e6]; axes inside the rank;
   integer parameter tensors; bias and weight shapes; PAD values;
5. constants: float weights, biases and operands finite (no NaN / inf);
6. shapes and TFLM's Prepare: ``analysis.validate`` (shape inference, the
   int8 output constraints of SOFTMAX / LOGISTIC / TANH), then the integer
   parameters Prepare derives: every requantization shift in [-31, 30] (a larger
   left shift overflows TFLM's int32 arithmetic), softmax's beta x scale x 2^26 in
   (1, 2^31), LOGISTIC / TANH input scales in [2^-28, 2^3) (TFLM's input shift
   must be 0..30), and input/output quantization equal where TFLM's kernels copy
   int8 values (pooling, reshapes, slicing, concatenation, PAD, REDUCE_MAX).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kiloml.nn.analysis import GraphError
from kiloml.nn.analysis import validate as validate_shapes
from kiloml.nn.graph import FUSED_ACTIVATIONS, SUPPORTED_OPS, Graph, Op, Tensor
from kiloml.nn.op_params import OpParams, prepare

__all__ = ["MAX_GRAPH_ACTIVATION_ELEMENTS", "MAX_RANK", "MAX_TENSOR_ELEMENTS", "ModelError",
           "validate_graph"]

MAX_RANK = 8
MAX_TENSOR_ELEMENTS = 1 << 24
MAX_GRAPH_ACTIVATION_ELEMENTS = 1 << 26
MIN_SCALE, MAX_SCALE = 2.0 ** -60, 2.0 ** 60
MAX_SOFTMAX_BETA = 1e6
MAX_OPS = 10_000

_WEIGHTED = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
# (min inputs, max inputs, min outputs, max outputs; None = any). Others: 1 in, 1 out.
_ARITY: dict[str, tuple[int, int | None, int, int | None]] = {
    "FULLY_CONNECTED": (2, 3, 1, 1), "CONV_2D": (2, 3, 1, 1), "DEPTHWISE_CONV_2D": (2, 3, 1, 1),
    "MEAN": (2, 2, 1, 1), "REDUCE_MAX": (2, 2, 1, 1), "ADD": (2, 2, 1, 1), "MUL": (2, 2, 1, 1),
    "SUB": (2, 2, 1, 1), "PACK": (1, None, 1, 1),
    "CONCATENATION": (1, None, 1, 1), "PAD": (2, 3, 1, 1), "RESHAPE": (1, 2, 1, 1),
    "EXPAND_DIMS": (1, 2, 1, 1), "SPLIT": (2, 2, 1, None), "UNPACK": (1, 1, 1, None),
    "STRIDED_SLICE": (4, 4, 1, 1), "SLICE": (3, 3, 1, 1), "TRANSPOSE": (2, 2, 1, 1),
}
# Inputs that are parameters (constant tensors), by position; the rest are data.
_PARAMETERS: dict[str, tuple[int, ...]] = {
    "FULLY_CONNECTED": (1, 2), "CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2),
    "MEAN": (1,), "REDUCE_MAX": (1,), "PAD": (1, 2), "RESHAPE": (1,), "EXPAND_DIMS": (1,),
    "SPLIT": (0,), "STRIDED_SLICE": (1, 2, 3), "SLICE": (1, 2), "TRANSPOSE": (1,),
}
# Integer parameter tensors (axes, paddings, shapes, slice bounds, permutations).
_INTEGER_PARAMETERS: dict[str, tuple[int, ...]] = {
    "MEAN": (1,), "REDUCE_MAX": (1,), "PAD": (1,), "RESHAPE": (1,), "EXPAND_DIMS": (1,),
    "SPLIT": (0,), "STRIDED_SLICE": (1, 2, 3), "SLICE": (1, 2), "TRANSPOSE": (1,),
}
# int8 kernels that copy values: input and output quantization must be equal.
_SAME_QUANTIZATION = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "REDUCE_MAX", "RESHAPE", "SQUEEZE",
                      "EXPAND_DIMS", "CONCATENATION", "PAD", "SPLIT", "UNPACK", "PACK",
                      "STRIDED_SLICE", "SLICE", "TRANSPOSE")
_QUANTIZED_DTYPES = ("int8", "uint8", "int16")
_ZERO_POINT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (0, 0), "int32": (0, 0),
                     "int64": (0, 0)}
_POSITIVE_OPTIONS = ("stride_h", "stride_w", "dilation_h", "dilation_w", "filter_h",
                     "filter_w", "depth_multiplier", "num_splits")


class ModelError(ValueError):
    """A loaded graph no valid network can be: ``where`` names the operator or tensor."""

    def __init__(self, where: str | None, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


@dataclass
class _Context:
    graph: Graph
    index: int
    op: Op

    @property
    def where(self) -> str:
        op = self.op
        out = self.graph.tensors[op.outputs[0]].name if op.outputs else "?"
        return f"operator {self.index} {op.kind} (output '{out}')"

    def error(self, message: str) -> ModelError:
        return ModelError(self.where, message)

    def tensor(self, k: int) -> Tensor:
        return self.graph.tensors[self.op.inputs[k]]

    def has(self, k: int) -> bool:
        return len(self.op.inputs) > k and self.op.inputs[k] >= 0


def validate_graph(graph: Graph) -> None:
    """Raise ModelError (one line, naming the place) when the graph cannot be valid."""
    _check_graph(graph)
    contexts = [_Context(graph, i, op) for i, op in enumerate(graph.ops)]
    for c in contexts:
        _check_structure(c)
    _check_tensors(graph)
    for c in contexts:
        _check_dtypes(c)
        _check_quantization(c)
        _check_options(c)
        _check_int8_constraints(c)
    try:
        validate_shapes(graph)
    except GraphError as exc:
        raise ModelError(None, str(exc)) from None
    for c in contexts:
        _check_shifts(c)


# ---- 1. structure --------------------------------------------------------------------

def _check_graph(graph: Graph) -> None:
    n = len(graph.tensors)
    if not graph.ops:
        raise ModelError(None, "the model has no operators")
    if len(graph.ops) > MAX_OPS:
        raise ModelError(None, f"the model has {len(graph.ops):,} operators; kiloml supports "
                         f"at most {MAX_OPS:,}")
    if not graph.inputs or not graph.outputs:
        raise ModelError(None, f"the model has {len(graph.inputs)} inputs and "
                         f"{len(graph.outputs)} outputs; it needs at least one of each")
    for what, indices in (("input", graph.inputs), ("output", graph.outputs)):
        for k, i in enumerate(indices):
            if not 0 <= i < n:
                raise ModelError(None, f"graph {what} {k} is tensor {i}; the graph has {n}")
    for k, i in enumerate(graph.inputs):
        if graph.tensors[i].is_constant:
            raise ModelError(None, f"graph input {k} ('{graph.tensors[i].name}') is a constant")
    written = {t for op in graph.ops for t in op.outputs}
    for k, i in enumerate(graph.outputs):
        if i not in written:
            what = "a constant" if graph.tensors[i].is_constant else (
                "a graph input" if i in graph.inputs else "written by no operator")
            raise ModelError(None, f"graph output {k} ('{graph.tensors[i].name}') is {what}; "
                             "outputs must be computed by an operator")


def _check_structure(c: _Context) -> None:
    op, n = c.op, len(c.graph.tensors)
    if op.kind not in SUPPORTED_OPS:
        raise c.error(f"unsupported operator {op.kind} (supported: {', '.join(SUPPORTED_OPS)})")
    if not op.outputs:
        raise ModelError(f"operator {c.index} {op.kind}", "the operator has no output")
    for k, t in enumerate(op.outputs):
        if not 0 <= t < n:
            raise ModelError(f"operator {c.index} {op.kind}", f"output {k} is tensor {t}; the "
                             f"graph has {n}")
    lo_in, hi_in, lo_out, hi_out = _ARITY.get(op.kind, (1, 1, 1, 1))
    n_in, n_out = len(op.inputs), len(op.outputs)
    if not lo_in <= n_in <= (hi_in if hi_in is not None else n_in) or not (
            lo_out <= n_out <= (hi_out if hi_out is not None else n_out)):
        raise c.error(f"{n_in} inputs and {n_out} outputs: not a valid {op.kind}")
    optional = {2} if op.kind in (*_WEIGHTED, "PAD") else set()
    if op.kind in ("RESHAPE", "EXPAND_DIMS"):
        optional = {1}
    for k, t in enumerate(op.inputs):
        if t == -1 and k in optional:
            continue
        if not 0 <= t < n:
            raise c.error(f"input {k} is tensor {t}; the graph has {n}"
                          if t != -1 else f"required input {k} is missing (-1)")
    for k in _PARAMETERS.get(op.kind, ()):
        if c.has(k) and not c.tensor(k).is_constant:
            raise c.error(f"input {k} ('{c.tensor(k).name}') must be a constant tensor")
    for k, t in enumerate(op.outputs):
        if c.graph.tensors[t].is_constant:
            raise c.error(f"output {k} ('{c.graph.tensors[t].name}') is a constant tensor")


def _check_tensors(graph: Graph) -> None:
    used: set[int] = set(graph.inputs) | set(graph.outputs)
    for op in graph.ops:
        used.update(t for t in op.inputs if t >= 0)
        used.update(op.outputs)
    total = 0
    for i in sorted(used):
        t = graph.tensors[i]
        where = f"tensor {i} '{t.name}'"
        if len(t.shape) > MAX_RANK:
            raise ModelError(where, f"shape {list(t.shape)} has rank {len(t.shape)}; kiloml "
                             f"supports at most {MAX_RANK}")
        if any(d < 0 for d in t.shape):
            raise ModelError(where, f"shape {list(t.shape)} has a negative dimension")
        size = math.prod(t.shape)
        if size > MAX_TENSOR_ELEMENTS:
            raise ModelError(where, f"shape {list(t.shape)} has {size:,} elements; kiloml "
                             f"supports at most {MAX_TENSOR_ELEMENTS:,} per tensor")
        if not t.is_constant:
            if not t.shape or 0 in t.shape:
                raise ModelError(where, f"activation of shape {list(t.shape)}: activations "
                                 "need a rank of at least 1 and no empty dimension")
            total += size
        elif t.dtype == "float32" and not np.isfinite(t.data).all():
            bad = np.argwhere(~np.isfinite(t.data))[0]
            value = t.data[tuple(bad)]
            raise ModelError(where, f"constant holds {value} at index {bad.tolist()}; weights "
                             "and constants must be finite")
    if total > MAX_GRAPH_ACTIVATION_ELEMENTS:
        raise ModelError(None, f"the activations hold {total:,} elements in all; kiloml "
                         f"supports at most {MAX_GRAPH_ACTIVATION_ELEMENTS:,}")


# ---- 2. dtypes -----------------------------------------------------------------------

def _check_dtypes(c: _Context) -> None:
    op = c.op
    data = [k for k in range(len(op.inputs)) if c.has(k)
            and k not in _PARAMETERS.get(op.kind, ())]
    ins = [c.tensor(k).dtype for k in data]
    outs = [c.graph.tensors[t].dtype for t in op.outputs]
    kind = op.kind
    if kind == "QUANTIZE":
        ok = ins[0] in ("float32", "int8", "uint8", "int16") and outs[0] == "int8"
        expect = "float32, int8, uint8 or int16 in and int8 out"
    elif kind == "DEQUANTIZE":
        ok = ins[0] in _QUANTIZED_DTYPES and outs[0] == "float32"
        expect = "int8, uint8 or int16 in and float32 out"
    else:
        dtype = outs[0]
        ok = dtype in ("float32", "int8") and all(d == dtype for d in [*ins, *outs])
        expect = "float32 or int8 throughout"
        if ok and kind in _WEIGHTED:
            w = c.tensor(1).dtype
            b = c.tensor(2).dtype if c.has(2) else None
            want_b = "int32" if dtype == "int8" else "float32"
            ok = w == dtype and b in (None, want_b)
            expect = (f"{dtype} input and output with {dtype} weights and a {want_b} bias"
                      if w == dtype else f"{dtype} weights with {dtype} activations")
    if not ok:
        got = ", ".join(f"{c.graph.tensors[t].name}: {c.graph.tensors[t].dtype}"
                        for t in [*op.inputs, *op.outputs] if t >= 0)
        raise c.error(f"tensor dtypes ({got}) do not fit {kind}: expected {expect}")
    for k in _INTEGER_PARAMETERS.get(kind, ()):
        if c.has(k) and c.tensor(k).dtype not in ("int32", "int64"):
            raise c.error(f"input {k} ('{c.tensor(k).name}') is {c.tensor(k).dtype}; it must "
                          "be an int32 tensor")
    if kind == "PAD" and c.has(2):
        value = c.tensor(2)
        if value.dtype != ins[0] or value.data.size != 1:
            raise c.error(f"the pad value '{value.name}' must be one {ins[0]} element, got "
                          f"{value.data.size} of {value.dtype}")


# ---- 3. quantization -------------------------------------------------------------------

def _quant_problem(t: Tensor) -> str | None:
    q = t.quant
    if q is None:
        return "has no quantization parameters" if t.dtype in _QUANTIZED_DTYPES else None
    scale = np.asarray(q.scale, np.float64)
    bad = ~(np.isfinite(scale) & (scale >= MIN_SCALE) & (scale <= MAX_SCALE))
    if bad.any():
        i = int(np.argmax(bad))
        what = f"scale {scale[i]:g}" + (f" (channel {i})" if scale.size > 1 else "")
        return (f"has {what}; scales must be finite and in [{MIN_SCALE:.3g}, {MAX_SCALE:.3g}] "
                "(zero, negative, denormal, NaN, inf and huge scales are not a quantization)")
    lo, hi = _ZERO_POINT_RANGE.get(t.dtype, (None, None))
    zp = np.asarray(q.zero_point, np.int64)
    if lo is not None and ((zp < lo) | (zp > hi)).any():
        i = int(np.argmax((zp < lo) | (zp > hi)))
        rng = f"in [{lo}, {hi}]" if lo != hi else f"{lo}"
        return f"has zero point {int(zp[i])}; {t.dtype} zero points must be {rng}"
    if q.per_channel and not 0 <= q.axis < len(t.shape):
        return f"has quantized dimension {q.axis}, outside its rank {len(t.shape)}"
    return None


def _check_quantization(c: _Context) -> None:
    op, g = c.op, c.graph
    bias = op.inputs[2] if op.kind in _WEIGHTED and c.has(2) else None
    for t in [*op.inputs, *op.outputs]:
        # TFLM reads the parameters of quantized tensors and int32 biases; those of other
        # tensors (float, int32 shapes and axes) are ignored, and so are they here.
        if t < 0 or (g.tensors[t].dtype not in _QUANTIZED_DTYPES and t != bias):
            continue
        problem = _quant_problem(g.tensors[t])
        if problem:
            raise c.error(f"tensor '{g.tensors[t].name}' {problem}")
    if op.kind in _WEIGHTED and c.tensor(1).dtype == "int8":
        _check_weight_quantization(c)
    for k, t in enumerate([*op.inputs, *op.outputs]):
        tensor = g.tensors[t] if t >= 0 else None
        weight = op.kind in _WEIGHTED and k in (1, 2)
        if tensor is not None and tensor.quant is not None and tensor.quant.per_channel \
                and not weight:
            raise c.error(f"tensor '{tensor.name}' is quantized per channel; only weights and "
                          "biases may be")


def _check_weight_quantization(c: _Context) -> None:
    w = c.tensor(1)
    shape = w.shape
    wanted_rank = 2 if c.op.kind == "FULLY_CONNECTED" else 4
    if len(shape) != wanted_rank or (c.op.kind == "DEPTHWISE_CONV_2D" and shape[0] != 1):
        return  # the shape check below names it
    axis = 3 if c.op.kind == "DEPTHWISE_CONV_2D" else 0
    channels = shape[axis]
    q = w.quant
    assert q is not None
    if np.any(q.zero_point != 0):
        zp = int(q.zero_point[q.zero_point != 0][0])
        raise c.error(f"weights '{w.name}' have zero point {zp}; int8 weights are symmetric "
                      "(zero point 0)")
    if q.per_channel and (q.axis != axis or q.scale.size != channels):
        raise c.error(f"weights '{w.name}' have {q.scale.size} scales along dimension {q.axis}; "
                      f"per-channel {c.op.kind} weights need {channels} along dimension {axis}")
    if c.has(2):
        b = c.tensor(2)
        bq = b.quant
        if bq is not None and bq.per_channel and bq.scale.size != channels:
            raise c.error(f"bias '{b.name}' has {bq.scale.size} scales for {channels} channels")


# ---- 4. options and parameters -----------------------------------------------------------

def _axis_in_rank(c: _Context, axis: object, rank: int, what: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise c.error(f"{what} {axis!r} is not an integer")
    a = int(axis)
    if not -rank <= a < rank:
        raise c.error(f"{what} {a} is outside the input's rank {rank} (valid: {-rank}..{rank - 1})")
    return a % rank


def _check_options(c: _Context) -> None:
    op, o = c.op, c.op.options
    for key in _POSITIVE_OPTIONS:
        if key in o:
            v = o[key]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise c.error(f"{key} = {v!r}; it must be an integer of at least 1")
    if "padding" in o and o["padding"] not in ("SAME", "VALID"):
        raise c.error(f"padding {o['padding']!r} (expected SAME or VALID)")
    if "fused_activation" in o and o["fused_activation"] not in FUSED_ACTIVATIONS:
        raise c.error(f"fused activation {o['fused_activation']!r} is not supported "
                      f"(supported: {', '.join(FUSED_ACTIVATIONS)})")
    x = c.tensor(1 if op.kind == "SPLIT" else 0)
    rank = len(x.shape)
    kind = op.kind
    if kind == "SOFTMAX":
        beta = o.get("beta", 1.0)
        if not isinstance(beta, (int, float, np.floating)) or not (
                math.isfinite(float(beta)) and 0 < float(beta) <= MAX_SOFTMAX_BETA):
            raise c.error(f"softmax beta = {beta}; it must be finite and in (0, "
                          f"{MAX_SOFTMAX_BETA:g}] (converters write 1.0)")
    elif kind in ("CONCATENATION", "UNPACK"):
        axis = _axis_in_rank(c, o.get("axis", 0), rank, "axis")
        if kind == "UNPACK" and len(op.outputs) != x.shape[axis]:
            raise c.error(f"unpacks axis {axis} of size {x.shape[axis]} into "
                          f"{len(op.outputs)} outputs")
        if kind == "UNPACK" and int(o.get("num", 0)) != len(op.outputs):  # type: ignore[call-overload]
            raise c.error(f"num = {o.get('num')} for {len(op.outputs)} outputs (TFLM writes "
                          "num outputs)")
        if kind == "CONCATENATION" and o.get("fused_activation", "NONE") != "NONE" and \
                x.dtype == "int8":
            raise c.error(f"fused activation {o['fused_activation']} on an int8 "
                          "CONCATENATION (TFLM supports none)")
        if kind == "CONCATENATION":
            for k in range(len(op.inputs)):
                if len(c.tensor(k).shape) != rank:
                    raise c.error(f"input {k} has rank {len(c.tensor(k).shape)}, input 0 "
                                  f"has {rank}")
    elif kind == "PACK":
        _axis_in_rank(c, o.get("axis", 0), rank + 1, "axis")
        if int(o.get("values_count", 0)) != len(op.inputs):  # type: ignore[call-overload]
            raise c.error(f"values_count = {o.get('values_count')} for {len(op.inputs)} "
                          "inputs (TFLM reads values_count inputs)")
        for k in range(len(op.inputs)):
            if c.tensor(k).shape != x.shape:
                raise c.error(f"input {k} has shape {list(c.tensor(k).shape)}, input 0 has "
                              f"{list(x.shape)}; PACK stacks equal shapes")
    elif kind in ("MEAN", "REDUCE_MAX"):
        for a in np.atleast_1d(c.tensor(1).data).tolist():
            _axis_in_rank(c, a, rank, "reduction axis")
    elif kind == "SPLIT":
        axis = np.atleast_1d(c.tensor(0).data)
        if axis.size != 1:
            raise c.error(f"the split axis tensor has {axis.size} elements; one is needed")
        _axis_in_rank(c, int(axis[0]), rank, "split axis")
    elif kind == "SQUEEZE":
        dims = o.get("squeeze_dims", ())
        for a in dims:  # type: ignore[attr-defined]
            axis = _axis_in_rank(c, a, rank, "squeeze dimension")
            if x.shape[axis] != 1:
                raise c.error(f"squeezes dimension {axis} of size {x.shape[axis]}")
    elif kind == "PAD":
        pads = c.tensor(1).data
        if pads.size != 2 * rank:
            raise c.error(f"paddings {pads.tolist()} do not fit an input of rank {rank} "
                          f"({rank} x 2 values needed)")
        if np.any(pads < 0):
            raise c.error(f"paddings {pads.reshape(-1, 2).tolist()} are negative")
        if np.any(pads > MAX_TENSOR_ELEMENTS):
            raise c.error(f"paddings {pads.reshape(-1, 2).tolist()} are too large")
    elif kind == "EXPAND_DIMS" and c.has(1):
        axis = np.ravel(c.tensor(1).data)
        if axis.size != 1:
            raise c.error(f"the axis tensor has {axis.size} elements; one is needed")
        a = _axis_in_rank(c, int(axis[0]), rank + 1, "axis")
        y = c.graph.tensors[op.outputs[0]].shape
        if y != (*x.shape[:a], 1, *x.shape[a:]):
            raise c.error(f"inserting an axis at {a} into {list(x.shape)} gives "
                          f"{[*x.shape[:a], 1, *x.shape[a:]]}, the output is {list(y)}")
    elif kind == "TRANSPOSE":
        perm = np.atleast_1d(c.tensor(1).data).tolist()
        if sorted(perm) != list(range(rank)):
            raise c.error(f"perm {perm} is not a permutation of the input's {rank} axes")
    elif kind in _WEIGHTED:
        _check_weight_shapes(c, x)
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"):
        _check_window(c, x)
    elif kind in ("STRIDED_SLICE", "SLICE"):
        for k in range(1, len(op.inputs)):
            values = np.atleast_1d(c.tensor(k).data)
            if values.size != rank:
                raise c.error(f"input {k} ('{c.tensor(k).name}') has {values.size} values for "
                              f"an input of rank {rank}")
            if np.any(np.abs(values.astype(np.int64)) > np.int64(1) << 31):
                raise c.error(f"input {k} ('{c.tensor(k).name}') holds values beyond int32")
        for mask in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
                     "shrink_axis_mask"):
            v = o.get(mask, 0)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not (
                    -(1 << 31) <= v < 1 << 31):
                raise c.error(f"{mask} = {v!r}; it must be an int32 bit mask")
    if kind in ("FULLY_CONNECTED",) and not isinstance(o.get("keep_num_dims", False), bool):
        raise c.error(f"keep_num_dims = {o['keep_num_dims']!r} is not a boolean")
    if kind in ("MEAN", "REDUCE_MAX") and not isinstance(o.get("keep_dims", False), bool):
        raise c.error(f"keep_dims = {o['keep_dims']!r} is not a boolean")


def _check_window(c: _Context, x: Tensor) -> None:
    """The filter, dilated, must overlap the input: a window spanning more than twice the
    input (plus one) reads nothing but padding at most positions (a corrupt filter size or
    dilation; the reference would also allocate the whole padded extent)."""
    o = c.op.options
    if len(x.shape) != 4:
        raise c.error(f"input '{x.name}' has shape {list(x.shape)}; 4-D NHWC is needed")
    if c.op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kh, kw = c.tensor(1).shape[1:3]
    else:
        kh, kw = int(o["filter_h"]), int(o["filter_w"])  # type: ignore[call-overload]
    for axis, k, d in ((1, kh, o.get("dilation_h", 1)), (2, kw, o.get("dilation_w", 1))):
        span = (k - 1) * int(d) + 1  # type: ignore[call-overload]
        if span > 2 * x.shape[axis] + 1:
            raise c.error(f"the filter spans {span} (size {k}, dilation {d}) along "
                          f"{'height' if axis == 1 else 'width'}, more than twice the "
                          f"input's {x.shape[axis]}: a corrupt filter size or dilation")


def _check_weight_shapes(c: _Context, x: Tensor) -> None:
    kind, w = c.op.kind, c.tensor(1)
    if kind == "FULLY_CONNECTED":
        if len(w.shape) != 2:
            raise c.error(f"weights '{w.name}' have shape {list(w.shape)}; [outputs, inputs] "
                          "is needed")
        channels = w.shape[0]
    else:
        if len(w.shape) != 4 or (kind == "DEPTHWISE_CONV_2D" and w.shape[0] != 1):
            layout = "[1, kh, kw, channels]" if kind == "DEPTHWISE_CONV_2D" else \
                "[out, kh, kw, in]"
            raise c.error(f"weights '{w.name}' have shape {list(w.shape)}; {layout} is needed")
        if len(x.shape) != 4:
            raise c.error(f"input '{x.name}' has shape {list(x.shape)}; 4-D NHWC is needed")
        channels = w.shape[3] if kind == "DEPTHWISE_CONV_2D" else w.shape[0]
        if kind == "CONV_2D" and x.shape[3] % w.shape[3]:
            raise c.error(f"input channels {x.shape[3]} are not a multiple of the filter's "
                          f"{w.shape[3]}")
        if kind == "CONV_2D" and channels % (x.shape[3] // w.shape[3]):
            raise c.error(f"{channels} output channels do not split into "
                          f"{x.shape[3] // w.shape[3]} groups")
        if kind == "DEPTHWISE_CONV_2D" and channels % x.shape[3]:
            raise c.error(f"filter channels {channels} are not a multiple of the input's "
                          f"{x.shape[3]}")
        dm = c.op.options.get("depth_multiplier", 1)
        if kind == "DEPTHWISE_CONV_2D" and dm != channels // x.shape[3]:
            raise c.error(f"depth_multiplier = {dm}, but {channels} filter channels over "
                          f"{x.shape[3]} input channels make {channels // x.shape[3]} (TFLM "
                          "loops over depth_multiplier)")
    if 0 in w.shape:
        raise c.error(f"weights '{w.name}' have an empty dimension: {list(w.shape)}")
    if c.has(2):
        b = c.tensor(2)
        if b.data.size != channels or len(b.shape) != 1:
            raise c.error(f"bias '{b.name}' has shape {list(b.shape)}; [{channels}] is needed")


# ---- 6. TFLM's Prepare ---------------------------------------------------------------------

def _same_quantization(a: Tensor, b: Tensor) -> bool:
    qa, qb = a.quant, b.quant
    if qa is None or qb is None:
        return qa is qb
    return (qa.zp == qb.zp and abs(qa.s - qb.s) <= 1e-6 * max(qa.s, qb.s))


def _quantized(c: _Context) -> bool:
    x = c.tensor(1 if c.op.kind == "SPLIT" else 0)
    return x.dtype == "int8" or c.graph.tensors[c.op.outputs[0]].dtype == "int8"


def _check_int8_constraints(c: _Context) -> None:
    """What TFLM's int8 kernels require of the quantization (checked before Prepare runs)."""
    if not _quantized(c):
        return
    op, g = c.op, c.graph
    y = g.tensors[op.outputs[0]]
    x = c.tensor(1 if op.kind == "SPLIT" else 0)
    kind = op.kind
    if kind in _SAME_QUANTIZATION:
        data = [c.tensor(k) for k in range(len(op.inputs)) if c.has(k)
                and k not in _PARAMETERS.get(kind, ())]
        for t in [*data, *(g.tensors[i] for i in op.outputs)]:
            if not _same_quantization(t, x):
                raise c.error(f"'{t.name}' is quantized as {t.quant.s:g} @ {t.quant.zp}, "
                              f"'{x.name}' as {x.quant.s:g} @ {x.quant.zp}; TFLM's int8 "
                              f"{kind} needs the same scale and zero point")
        if kind == "PAD" and c.has(2) and not _same_quantization(c.tensor(2), y):
            raise c.error("the pad value's quantization differs from the output's")
    if kind == "SOFTMAX":
        beta = float(np.float32(op.options.get("beta", 1.0)))
        real = beta * float(x.quant.scale[0]) * (1 << 26)
        if not 1.0 < real < float(1 << 31):
            raise c.error(f"beta x input scale x 2^26 = {real:.3g}; TFLM's int8 softmax needs "
                          "it in (1, 2^31) (the input scale and beta are out of range)")
    if kind in ("LOGISTIC", "TANH") and not 2.0 ** -28 <= x.quant.s < 8.0:
        raise c.error(f"input scale {x.quant.s:g}; TFLM's int8 {kind} needs an input scale in "
                      "[2^-28, 8) (its input shift must be 0..30)")


def _check_shifts(c: _Context) -> None:
    if not _quantized(c):
        return
    kind = c.op.kind
    p = _prepare(c)
    shifts = [int(s) for s in np.atleast_1d(p.shift)]
    for key in ("input1_multiplier", "input2_multiplier"):
        if key in p.extra:
            shifts.append(int(p.extra[key][1]))  # type: ignore[index]
    if kind not in ("LOGISTIC", "TANH", "SOFTMAX") and any(not -31 <= s <= 30 for s in shifts):
        raise c.error(f"the requantization multiplier needs a shift of {max(shifts)}: the "
                      "scales of the input, weights and output are inconsistent (TFLM's int32 "
                      "arithmetic allows a left shift of at most 30)")


def _prepare(c: _Context) -> OpParams:
    try:
        return prepare(c.graph, c.op)
    except (ValueError, OverflowError, ZeroDivisionError) as exc:
        raise c.error(f"cannot compute the integer parameters: {exc}") from None
