"""Constant folding for imported TFLite graphs.

The TensorFlow converter and litert-torch wrap Flatten and Conv1D in small
shape computations (``SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE``, ``GATHER`` /
``CAST`` / ``CONCATENATION`` of constant shape vectors) whenever the batch size
is dynamic; recurrent layers make their zero initial state with
``SHAPE -> STRIDED_SLICE -> PACK -> FILL``. kiloml's shapes are static (batch
1), so these ops are evaluated here with numpy and removed; the RESHAPE they fed
is left with a constant shape.

Only unquantized operands are folded: quantized constants are weights, and
re-expressing them is the quantizer's business, not the importer's. FILL is the
exception: it copies its scalar's bytes, so a quantized zero state folds to the
same integers TFLM would write.
"""

from __future__ import annotations

import numpy as np

from kiloml.nn.graph import Graph, Op, Tensor
from kiloml.nn.op_params import slice_out_shape, strided_slice_axes

# Ops evaluated when their inputs are known. SHAPE only needs its input's
# static shape; the others need constant data.
FOLDABLE = frozenset({
    "SHAPE", "STRIDED_SLICE", "PACK", "CONCATENATION", "GATHER", "CAST",
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "FILL",
})
MAX_FOLD_ELEMENTS = 1 << 20  # a FILL bigger than this is no initial state of a small model


class FoldError(Exception):
    """An op that looked foldable cannot be evaluated (bad constant values)."""

    def __init__(self, op_index: int, op: Op, output: str, message: str) -> None:
        super().__init__(message)
        self.op_index = op_index  # position in the op list given to fold_constants
        self.kind = op.kind
        self.output = output
        self.message = message


def fold_constants(graph: Graph) -> list[int]:
    """Evaluate foldable ops in place and drop them.

    Returns the positions (in the op list as given) of the ops that remain, so
    the caller can still name operators by their index in the file. Dead
    tensors are left for ``graph.prune()``.
    """
    graph_outputs = set(graph.outputs)
    kept: list[int] = []
    computed: set[int] = set()  # tensors whose value was produced by folding
    for i, op in enumerate(graph.ops):
        if not _foldable(graph, op, graph_outputs):
            kept.append(i)
            continue
        try:
            value = _evaluate(graph, op)
            _store(graph.tensors[op.outputs[0]], value)
        except Exception as exc:  # the constants come from a user's file: anything can fail
            raise FoldError(i, op, graph.tensors[op.outputs[0]].name,
                            f"cannot evaluate constant {op.kind}: {exc}") from None
        computed.add(op.outputs[0])
    graph.ops = [graph.ops[i] for i in kept]
    for pos, op in zip(kept, graph.ops, strict=True):
        if op.kind == "RESHAPE" and len(op.inputs) == 2 and op.inputs[1] in computed:
            try:
                _settle_reshape(graph, op)
            except ValueError as exc:
                raise FoldError(pos, op, graph.tensors[op.outputs[0]].name, str(exc)) from None
    return kept


def _foldable(graph: Graph, op: Op, graph_outputs: set[int]) -> bool:
    if op.kind not in FOLDABLE or len(op.outputs) != 1 or op.outputs[0] in graph_outputs:
        return False
    out = graph.tensors[op.outputs[0]]
    ins = [graph.tensors[t] for t in op.inputs if t >= 0]
    if out.quant is not None and op.kind != "FILL":
        return False
    if not ins:
        return False
    if op.kind == "SHAPE":
        return True
    if op.kind == "CONCATENATION" and op.options.get("fused_activation", "NONE") != "NONE":
        return False
    if op.kind == "FILL":
        # An RNN's zero initial state: FILL(SHAPE-derived dims, quantized scalar). It only
        # copies bytes, so a quantized value (and output) is folded as its integer.
        dims, value = ins[0], graph.tensors[op.inputs[1]] if len(op.inputs) > 1 else None
        return (len(ins) == 2 and dims.is_constant and dims.quant is None
                and value is not None and value.is_constant and value.dtype == out.dtype)
    return all(t.is_constant and t.quant is None for t in ins)


def _evaluate(graph: Graph, op: Op) -> np.ndarray:
    t = graph.tensors
    values = [t[i].data for i in op.inputs if i >= 0]
    out = t[op.outputs[0]]
    kind, opts = op.kind, op.options
    if kind == "SHAPE":
        if out.dtype not in ("int32", "int64"):
            raise ValueError(f"output type {out.dtype}; SHAPE writes int32 (or int64)")
        return np.array(t[op.inputs[0]].shape, dtype=np.int64)
    if kind == "STRIDED_SLICE":
        if len(values) != 4:
            raise ValueError("needs input, begin, end and strides")
        return _strided_slice(*values, opts)
    if kind == "PACK":
        if int(opts.get("values_count", len(values))) != len(values):  # TFLM trusts it
            raise ValueError(f"values_count {opts['values_count']} for {len(values)} inputs")
        return np.stack(values, axis=int(opts.get("axis", 0)))
    if kind == "CONCATENATION":
        return np.concatenate([np.atleast_1d(v) for v in values], axis=int(opts.get("axis", 0)))
    if kind == "GATHER":
        if int(opts.get("batch_dims", 0)) != 0:
            raise ValueError("batch_dims is not supported")
        params, indices = values[0], values[1]
        axis = int(opts.get("axis", 0))
        dim = params.shape[axis]
        if np.any((indices < 0) | (indices >= dim)):
            raise ValueError(f"index out of range for a dimension of {dim}")
        return np.take(params, indices, axis=axis)
    if kind == "FILL":
        if len(values) != 2:
            raise ValueError("needs dims and value")
        return _fill(*values)
    if kind == "CAST":
        return values[0].astype(out.dtype)
    # RESHAPE / SQUEEZE / EXPAND_DIMS of a constant: the output tensor has the shape.
    if values[0].size != out.size:
        raise ValueError(f"{values[0].size} elements cannot become shape {list(out.shape)}")
    if kind == "EXPAND_DIMS":  # TFLM inserts the axis it is given: it must give that shape
        axis, shape = np.ravel(values[1]), list(values[0].shape)
        if axis.size != 1 or not -len(shape) - 1 <= int(axis[0]) <= len(shape):
            raise ValueError(f"axis {axis.tolist()} for an input of rank {len(shape)}")
        a = int(axis[0]) % (len(shape) + 1)
        if [*shape[:a], 1, *shape[a:]] != list(out.shape):
            raise ValueError(f"axis {a} of {shape} gives {[*shape[:a], 1, *shape[a:]]}, not "
                             f"{list(out.shape)}")
    if kind == "SQUEEZE":
        shape, dims = list(values[0].shape), [int(d) for d in opts.get("squeeze_dims", ())]
        rank = len(shape)
        if any(not -rank <= d < rank for d in dims):
            raise ValueError(f"squeeze_dims {dims} outside the rank {rank}")
        gone = {d % rank for d in dims} if dims else {i for i, d in enumerate(shape) if d == 1}
        if [d for i, d in enumerate(shape) if i not in gone] != list(out.shape):
            raise ValueError(f"squeezing {sorted(gone)} of {shape} does not give "
                             f"{list(out.shape)}")
    return values[0].reshape(out.shape)


def _strided_slice(data: np.ndarray, begin: np.ndarray, end: np.ndarray, strides: np.ndarray,
                   opts: dict[str, object]) -> np.ndarray:
    """TFLM's STRIDED_SLICE (the one definition: op_params.strided_slice_axes)."""
    begin, end, strides = (np.atleast_1d(v).astype(np.int64).tolist()
                           for v in (begin, end, strides))
    axes = strided_slice_axes(data.shape, begin, end, strides, opts)
    taken = data[np.ix_(*[a.indices for a in axes])] if axes else data
    return taken.reshape(slice_out_shape(axes))


def _fill(dims: np.ndarray, value: np.ndarray) -> np.ndarray:
    """FILL copies the scalar's raw value (a quantized one keeps its integer)."""
    shape = [int(d) for d in np.atleast_1d(dims)]
    if any(d < 0 for d in shape) or int(np.prod(shape, dtype=object)) > MAX_FOLD_ELEMENTS:
        raise ValueError(f"dims {shape} are negative or too large")
    if np.asarray(value).size != 1:
        raise ValueError(f"the value has {np.asarray(value).size} elements, not 1")
    return np.full(shape, np.asarray(value).reshape(-1)[0])


def _store(out: Tensor, value: np.ndarray) -> None:
    value = np.asarray(value).astype(out.dtype)
    # A tensor without a shape (a converter's unknown rank) takes the value's; a declared
    # shape must be what TFLM computes (it refuses the model otherwise).
    if out.shape and tuple(value.shape) != tuple(out.shape):
        raise ValueError(f"the result has shape {list(value.shape)}, the file declares "
                         f"{list(out.shape)}")
    out.shape = tuple(value.shape)
    out.data = value


def _settle_reshape(graph: Graph, op: Op) -> None:
    """Give a RESHAPE whose shape was computed the explicit (static) output shape."""
    shape_t = graph.tensors[op.inputs[1]]
    src, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    shape = [int(v) for v in np.ravel(shape_t.data)]
    if shape.count(-1) > 1 or any(v < -1 for v in shape):
        raise ValueError(f"RESHAPE to {shape}: invalid shape")
    if -1 in shape:
        known = int(np.prod([v for v in shape if v != -1], dtype=np.int64))
        if known == 0 or src.size % known:
            raise ValueError(f"RESHAPE of {src.size} elements to {shape}: does not divide")
        shape[shape.index(-1)] = src.size // known
    if int(np.prod(shape, dtype=np.int64)) != src.size or tuple(shape) != out.shape:
        raise ValueError(f"RESHAPE of {list(src.shape)} to {shape} does not match its "
                         f"output tensor shape {list(out.shape)}")
    op.inputs[1] = graph.add_tensor(Tensor(shape_t.name, (len(shape),), "int32",
                                           data=np.array(shape, np.int32)))
